"""Tests of the Gradio demo (wafer.demo): example choice, figures from the metrics files,
uploads, the process-mode text against docs/process_modes.md, and the app in headless Chromium.

The browser test needs gradio and selenium (pip: the `demo` extra and selenium) and Debian's
chromium + chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver); it skips without them.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from wafer import ragged
from wafer.classes import CLASS_NAMES
from wafer.ingest import Ingested
from wafer.io import WaferInputError, save_npz, write_json
from wafer.predict import Predictor, encode_png
from wafer.process_modes import CAVEAT, PROCESS_MODES

from conftest import ROOT, wafer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

# test maps: (true class, served class, confidence); Donut has no correct prediction, Near-full
# no test map at all
TEST_ROWS = [
    ("Center", "Center", 0.70),
    ("Center", "Center", 0.90),  # <- most confident correct Center
    ("Center", "Loc", 0.95),  # a more confident mistake does not count
    ("Donut", "none", 0.60),  # <- no correct Donut: the first Donut
    ("Donut", "Loc", 0.80),
    ("Edge-Loc", "Edge-Loc", 0.50),
    ("Edge-Ring", "Edge-Ring", 0.40),
    ("Edge-Ring", "Edge-Ring", 0.40),  # tie: the earlier one
    ("Loc", "Loc", 0.55),
    ("Random", "Random", 0.65),
    ("Scratch", "Scratch", 0.75),
    ("none", "none", 0.99),
]
ROW_OFFSET = 3  # ingested rows 0..2 are train/val maps, not in predictions.csv


@pytest.fixture
def demo_files(tmp_path, tiny_pipeline) -> dict[str, Path]:
    """A miniature of the pipeline outputs the demo reads: data/predictions.csv,
    data/ingested.npz, metrics/evaluate.json, metrics/calibrate.json (+ the tiny model)."""
    n = ROW_OFFSET + len(TEST_ROWS)
    maps = [wafer(18 + i % 5, 20, (2 + i % 12, 9)) for i in range(n)]
    labels = np.zeros(n, dtype=np.int8)
    for i, (cls, _, _) in enumerate(TEST_ROWS):
        labels[ROW_OFFSET + i] = CLASS_NAMES.index(cls)
    flat, shapes, offsets = ragged.pack(maps)
    ing = Ingested(
        flat=flat,
        shapes=shapes,
        offsets=offsets,
        labels=labels,
        source_row=np.arange(n, dtype=np.int64),
        orig_split=np.array([""] * n, dtype="<U16"),
        lot=np.array([""] * n),
        wafer_index=np.full(n, np.nan),
        mask_flat=np.zeros(0, dtype=np.uint8),
    )
    save_npz(tmp_path / "data" / "ingested.npz", **ing.arrays())
    with open(tmp_path / "data" / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "actual", "predicted", "confidence", "defect"])
        for i, (cls, pred, conf) in enumerate(TEST_ROWS):
            w.writerow([ROW_OFFSET + i, cls, pred, conf, int(pred != "none")])
    write_json(
        tmp_path / "metrics" / "evaluate.json",
        {
            "objective": "cost",
            "temperature": 1.3,
            "tta": True,
            "test": {
                "cost": {
                    "macro_f1": 0.81234,
                    "macro_f1_ci95": {"low": 0.7001, "high": 0.9002},
                    "balanced_accuracy": 0.85678,
                    "prevalence_corrected": {"macro_f1": 0.76543},
                    "n": len(TEST_ROWS),
                    "operating_point": {"tau": 0.5},
                },
            },
        },
    )
    write_json(
        tmp_path / "metrics" / "calibrate.json",
        {
            "temperature": 1.3,
            "tta": True,
            "test": {"before": {"ece": 0.1111}, "after": {"ece": 0.0345}},
        },
    )
    return {
        **tiny_pipeline,
        "evaluate_json": tmp_path / "metrics" / "evaluate.json",
        "calibrate_json": tmp_path / "metrics" / "calibrate.json",
        "predictions_csv": tmp_path / "data" / "predictions.csv",
        "ingested_npz": tmp_path / "data" / "ingested.npz",
        "maps": maps,
    }


def assets_of(files: dict):
    from wafer.demo import load_assets

    keys = ("model", "calibration", "thresholds", "evaluate_json", "calibrate_json")
    keys += ("predictions_csv", "ingested_npz")
    return load_assets(*(files[k] for k in keys), device="cpu")


# --------------------------------------------------------------------------- without a browser


def test_examples_one_per_class(demo_files):
    from wafer.demo import load_examples

    ex = load_examples(demo_files["predictions_csv"], demo_files["ingested_npz"])
    got = {e.cls: (e.row - ROW_OFFSET, e.predicted, e.confidence, e.correct) for e in ex}
    assert list(got) == [c for c in CLASS_NAMES if c != "Near-full"]
    assert got["Center"] == (1, "Center", 0.90, True)
    assert got["Donut"] == (3, "none", 0.60, False)
    assert got["Edge-Ring"][0] == 6
    for e in ex:
        np.testing.assert_array_equal(e.map, demo_files["maps"][e.row])


def test_figures_come_from_the_metrics_files(demo_files, tmp_path):
    from wafer.demo import header_markdown, model_figures

    assets = assets_of(demo_files)
    f = assets.figures
    assert f["macro_f1"] == 0.81234 and f["balanced_accuracy"] == 0.85678
    assert f["ece_after"] == 0.0345 and f["temperature"] == 1.3 and f["tau"] == 0.5
    md = header_markdown(assets)
    for text in (
        "0.812",
        "0.700–0.900",
        "0.857",
        "0.035",
        "1.300",
        "τ = 0.50",
        "12 test maps",
        "prevalence-corrected 0.765",
        "Serving the `cost` operating point",
    ):
        assert text in md
    assert assets.notes == [] and "Stale" not in md

    ev = json.loads(demo_files["evaluate_json"].read_text())
    ev["test"]["cost"]["macro_f1"], ev["test"]["cost"]["operating_point"]["tau"] = 0.5, 0.3
    write_json(tmp_path / "other.json", ev)
    assert model_figures(tmp_path / "other.json", demo_files["calibrate_json"])["macro_f1"] == 0.5
    stale = assets_of({**demo_files, "evaluate_json": tmp_path / "other.json"})
    assert stale.notes == ["metrics were computed at tau 0.3, served tau is 0.5"]
    assert "Stale metrics" in header_markdown(stale)

    with pytest.raises(WaferInputError, match="no such file"):
        model_figures(tmp_path / "missing.json", demo_files["calibrate_json"])


def test_analyse_uploads(demo_files, tmp_path):
    from PIL import Image

    from wafer.demo import analyse, analyse_file

    p = Predictor.load(
        demo_files["model"], demo_files["calibration"], demo_files["thresholds"], "cpu"
    )
    m = wafer(22, 22, (7, 8))
    row = p.predict([m], ["x"])[0]
    a = analyse(p, m, "x", cam=False)
    assert (
        f"Predicted: {row['predicted']} — calibrated confidence {row['confidence']:.3f}"
        in a.result_md
    )
    assert ("DEFECT" if row["defect"] else "no defect") in a.result_md
    assert list(a.top3) == [c for c, _ in row["top3"]]
    assert PROCESS_MODES[row["predicted"]]["signature"] in a.mode_md and a.warning_md == ""

    (tmp_path / "m.png").write_bytes(encode_png(m))
    a = analyse_file(p, tmp_path / "m.png")
    assert a.row["probabilities"] == row["probabilities"] and a.warning_md == ""
    assert a.cam_png.startswith(b"\x89PNG")
    np.save(tmp_path / "m.npy", np.stack([m, m]))
    a = analyse_file(p, tmp_path / "m.npy", "upload.npy")
    assert a.row["probabilities"] == row["probabilities"]
    assert "a stack of 2 maps: showing the first" in a.warning_md

    photo = np.random.default_rng(0).integers(0, 256, (50, 60, 3)).astype(np.uint8)
    Image.fromarray(photo, mode="RGB").save(tmp_path / "photo.png")
    a = analyse_file(p, tmp_path / "photo.png")
    assert a.row is not None and "does not look like a wafer map" in a.warning_md
    ragged_maps = np.empty(2, dtype=object)
    ragged_maps[0], ragged_maps[1] = m, m[:9]
    np.save(tmp_path / "obj.npy", ragged_maps, allow_pickle=True)
    a = analyse_file(p, tmp_path / "obj.npy")
    assert a.row is None and "object array" in a.warning_md
    a = analyse_file(p, tmp_path / "notes.txt")
    assert a.row is None and "upload a .png or a .npy" in a.warning_md


def test_process_modes_match_the_doc():
    doc = re.sub(r"\s+", " ", (ROOT / "docs" / "process_modes.md").read_text())
    assert "not verified root causes" in doc
    assert list(PROCESS_MODES) == list(CLASS_NAMES)
    for cls, mode in PROCESS_MODES.items():
        assert f"## {cls} " in doc
        assert mode["signature"] in doc, cls
        for cause in mode["causes"]:
            assert re.sub(r"\s+", " ", cause) in doc, (cls, cause)
    assert "not a verified root cause" in CAVEAT


def test_demo_imports_and_fails_clearly_without_gradio(monkeypatch, demo_files):
    import wafer.demo as demo

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    with pytest.raises(SystemExit) as info:
        demo.main(model=demo_files["model"])
    msg = str(info.value)
    assert msg.startswith("error: the demo needs gradio") and "\n" not in msg


# --------------------------------------------------------------------------- in a browser


def _screenshot_script():
    """scripts/demo_screenshot.py, whose Chromium flags and free_port the browser test reuses."""
    spec = importlib.util.spec_from_file_location(
        "demo_screenshot", ROOT / "scripts" / "demo_screenshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    return _screenshot_script().free_port()


def _browser():
    for mod in ("gradio", "selenium"):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            pytest.skip(f"{mod} not importable ({exc}); pip install -e '.[dev,demo]'")
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).is_file():
            pytest.skip(f"{exe} missing (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        *_screenshot_script().CHROMIUM_FLAGS,
        "--window-size=1400,1700",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    # An explicit driver path: Selenium Manager (which would download one) is not run.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    return driver, profile


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'", "ignore:The copy keyword")
def test_demo_in_headless_chromium(demo_files, tmp_path):
    driver, profile = _browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from wafer.demo import analyse, build_app, launch

    assets = assets_of(demo_files)
    app = build_app(assets)
    port = free_port()
    try:
        launch(app, "127.0.0.1", port, block=False, quiet=True)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        thumbs = wait.until(
            EC.presence_of_all_elements_located((By.CSS_SELECTOR, "#examples .thumbnail-item"))
        )
        assert len(thumbs) == len(assets.examples) == 8
        header = driver.find_element(By.ID, "header").text
        assert "Test macro-F1 0.812" in header and "ECE after calibration 0.035" in header
        flat = " ".join(header.split())  # code spans render on lines of their own
        assert "Serving the cost operating point" in flat  # which point is served

        thumbs[0].click()  # Center, ingested row ROW_OFFSET + 1
        wait.until(EC.text_to_be_present_in_element((By.ID, "prediction"), "Predicted:"))
        text = driver.find_element(By.ID, "prediction").text
        ex = assets.examples[0]
        want = analyse(assets.predictor, ex.map, "x", cam=False).row
        assert f"Predicted: {want['predicted']} — calibrated confidence" in text
        assert f"{want['confidence']:.3f}" in text
        assert "at the cost operating point" in " ".join(text.split())
        assert f"true class {ex.cls}" in text and f"row {ex.row}" in text
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#cam img")))
        mode = driver.find_element(By.ID, "process-mode").text
        assert PROCESS_MODES[want["predicted"]]["signature"] in mode
        driver.save_screenshot(str(tmp_path / "demo.png"))

        photo = np.random.default_rng(2).integers(0, 256, (40, 40)).astype(np.uint8)
        from PIL import Image

        Image.fromarray(photo, mode="L").save(tmp_path / "photo.png")
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(
            str(tmp_path / "photo.png")
        )
        wait.until(EC.text_to_be_present_in_element((By.ID, "warning"), "does not look like"))
        assert "photo.png" in driver.find_element(By.ID, "warning").text
        assert (tmp_path / "demo.png").stat().st_size > 10_000
    finally:
        driver.quit()
        app.close()
        shutil.rmtree(profile, ignore_errors=True)
