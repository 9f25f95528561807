"""Tests of the Gradio demo (wafer.apps.demo): example choice, figures from the metrics files,
uploads, the novelty flag and the nearest training maps, the process-mode text against
docs/process_modes.md, and the app in headless Chromium.

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
from types import SimpleNamespace

import numpy as np
import pytest

from wafer.apps.process_modes import CAVEAT, PROCESS_MODES
from wafer.core import ragged
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.core.io import save_npz, sha256_file, write_json
from wafer.data.files import Ingested
from wafer.inputs.png import encode_png
from wafer.serving.predictor import Predictor

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
N_TRAIN = 18  # training maps after the test rows, 2 per class: with rows 0..2 the index
K = 6  # neighbours shown by the demo (its default)


def _random_wafer(rng: np.random.Generator, i: int) -> np.ndarray:
    m = wafer(16 + i % 7, 18 + i % 5, None)
    fails = (rng.random(m.shape) < 0.05 + 0.03 * (i % 9)) & (m == 1)
    m[fails] = 2
    return m


def _write_index(files: dict, ing: Ingested, rows: np.ndarray, out: Path) -> tuple[Path, Path]:
    """models/index.npz of the ingested ``rows`` (labels from ``ing``) and models/novelty.json
    (knn, k = 3), the threshold halfway between the 4th and 5th lowest score of the 8 example
    maps: about half of the examples are flagged, half are not."""
    from wafer.apps.demo.assets import load_examples
    from wafer.model.checkpoint import load_model
    from wafer.model.forward import predict_outputs
    from wafer.serving.files import Novelty
    from wafer.serving.novelty import METHODS, FeatureIndex, knn_score

    p = Predictor.load(files["model"], files["calibration"], files["thresholds"], "cpu")
    net, _ = load_model(files["model"])

    def feats(maps):
        return predict_outputs(net, p.prepare(maps), 64, "cpu", features="first").features

    sha = sha256_file(files["model"])
    idx = FeatureIndex.build(
        feats([ing.map(r) for r in rows]), rows, ing.labels[rows], views=1, model_sha256=sha
    )
    out.mkdir(parents=True, exist_ok=True)
    idx.save(out / "index.npz")
    examples = load_examples(files["predictions_csv"], files["ingested_npz"])
    s = np.sort(knn_score(idx, feats([e.map for e in examples]), 3))
    assert s[3] < s[4], s
    threshold = float((s[3] + s[4]) / 2)
    Novelty(
        method="knn",
        threshold=threshold,
        thresholds={m: threshold for m in METHODS},
        k=3,
        false_flag_rate=0.05,
        temperature=p.serving.temperature,
        views=1,
        model_sha256=sha,
        index_sha256=sha256_file(out / "index.npz"),
    ).save(out / "novelty.json")
    return out / "index.npz", out / "novelty.json"


@pytest.fixture
def demo_files(tmp_path, tiny_pipeline) -> dict[str, Path]:
    """A miniature of the pipeline outputs the demo reads: data/predictions.csv,
    data/ingested.npz (rows 0..2 train/val maps, the test maps, then N_TRAIN training maps),
    metrics/evaluate.json, metrics/calibrate.json, models/index.npz and models/novelty.json of
    the train/val + training rows (+ the tiny model)."""
    n_test = ROW_OFFSET + len(TEST_ROWS)
    n = n_test + N_TRAIN
    rng = np.random.default_rng(7)
    maps = [wafer(18 + i % 5, 20, (2 + i % 12, 9)) for i in range(n_test)]
    maps += [_random_wafer(rng, i) for i in range(N_TRAIN)]
    labels = np.zeros(n, dtype=np.int8)
    for i, (cls, _, _) in enumerate(TEST_ROWS):
        labels[ROW_OFFSET + i] = CLASS_NAMES.index(cls)
    labels[n_test:] = np.arange(N_TRAIN) % len(CLASS_NAMES)
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
            "views": 8,
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
            "views": 8,
            "test": {"before": {"ece": 0.1111}, "after": {"ece": 0.0345}},
        },
    )
    files = {
        **tiny_pipeline,
        "evaluate_json": tmp_path / "metrics" / "evaluate.json",
        "calibrate_json": tmp_path / "metrics" / "calibrate.json",
        "predictions_csv": tmp_path / "data" / "predictions.csv",
        "ingested_npz": tmp_path / "data" / "ingested.npz",
        "maps": maps,
    }
    index_rows = np.r_[np.arange(ROW_OFFSET), np.arange(n_test, n)]
    files["index"], files["novelty"] = _write_index(files, ing, index_rows, tmp_path / "models")
    return files


def assets_of(files: dict):
    from wafer.apps.demo.assets import load_assets

    keys = ("model", "calibration", "thresholds", "evaluate_json", "calibrate_json")
    keys += ("predictions_csv", "ingested_npz")
    return load_assets(
        *(files[k] for k in keys), device="cpu", index=files["index"], novelty=files["novelty"]
    )


def flagged(assets) -> tuple[int, int]:
    """Positions in assets.examples of a map the demo flags as novel and of one it does not."""
    novel = [assets.predictor.predict([ex.map], ["x"])[0]["novel"] for ex in assets.examples]
    assert True in novel and False in novel, novel
    return novel.index(True), novel.index(False)


# --------------------------------------------------------------------------- without a browser


def test_examples_one_per_class(demo_files):
    from wafer.apps.demo.assets import load_examples

    ex = load_examples(demo_files["predictions_csv"], demo_files["ingested_npz"])
    got = {e.cls: (e.row - ROW_OFFSET, e.predicted, e.confidence, e.correct) for e in ex}
    assert list(got) == [c for c in CLASS_NAMES if c != "Near-full"]
    assert got["Center"] == (1, "Center", 0.90, True)
    assert got["Donut"] == (3, "none", 0.60, False)
    assert got["Edge-Ring"][0] == 6
    for e in ex:
        np.testing.assert_array_equal(e.map, demo_files["maps"][e.row])


def test_figures_come_from_the_metrics_files(demo_files, tmp_path):
    from wafer.apps.demo.analysis import header_markdown
    from wafer.apps.demo.assets import model_figures

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

    from wafer.apps.demo.analysis import analyse, analyse_file

    p = Predictor.load(
        demo_files["model"],
        demo_files["calibration"],
        demo_files["thresholds"],
        "cpu",
        cam_layer="auto",
        cam_method="gradcam++",
    )
    m = wafer(22, 22, (7, 8))
    row = p.predict([m], ["x"])[0]
    a = analyse(p, m, "x", cam=False)
    assert (
        f"Predicted: {row['predicted']} — calibrated confidence {row['confidence']:.3f}"
        in a.result_md
    )
    assert ("DEFECT" if row["defect"] else "no defect") in a.result_md
    assert f"**Prediction set** (90% coverage, aps): {', '.join(row['prediction_set'])}" in (
        a.result_md
    )
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


def test_novelty_flag_and_nearest_maps(demo_files, tmp_path):
    from wafer.apps.demo.analysis import analyse_in, handle_upload, header_markdown
    from wafer.model.checkpoint import load_model
    from wafer.model.forward import predict_outputs
    from wafer.serving.novelty import normalise

    assets = assets_of(demo_files)
    nov = assets.predictor.novelty
    assert nov is not None and assets.neighbours == K and assets.novelty_note == ""
    t = nov.config.threshold
    md = header_markdown(assets)
    assert f"**Novelty check:** knn, k = 3 score; a map above {t:.4g} is flagged" in md
    assert "index of 21 training maps" in md

    labels = Ingested.load(demo_files["ingested_npz"]).labels
    net, _ = load_model(demo_files["model"])
    seen = set()
    for ex in assets.examples:
        a = analyse_in(assets, ex.map, "x", example=ex, cam=False)
        score = a.row["novelty_score"]
        # independently: cosine distances of the served (first-view) features to the index
        x = assets.predictor.prepare([ex.map])
        f = predict_outputs(net, x, 64, "cpu", features="first").features
        d = np.linalg.norm(nov.index.features - normalise(f), axis=1)
        order = np.argsort(d)
        assert score == pytest.approx(d[order[2]], abs=1e-5)  # knn: the 3rd nearest
        assert a.novel is a.row["novel"] is (score > t)
        seen.add(a.novel)
        if a.novel:
            assert a.novelty_md.startswith("### ⚠ Unlike every known pattern — review\n")
            assert f"Novelty score {score:.4g} > threshold {t:.4g} (knn, k = 3)" in a.novelty_md
        else:
            assert a.novelty_md == (
                f"Known pattern: novelty score {score:.4g} ≤ threshold {t:.4g} (knn, k = 3)"
            )
        # the gallery: the K nearest training maps, their ingested maps and labels
        rows = nov.index.rows[order[:K]]
        assert [n["row"] for n in a.row["neighbours"]] == rows.tolist()
        assert len(a.neighbours) == K
        for (m, caption), r, dist in zip(a.neighbours, rows, d[order[:K]], strict=True):
            assert caption == f"{CLASS_NAMES[labels[r]]} · row {r} · d={dist:.3f}"
            np.testing.assert_array_equal(m, demo_files["maps"][r])
        assert {c.split(" · ")[0] for _, c in a.neighbours} <= set(CLASS_NAMES)
    assert seen == {True, False}  # the fixture's threshold flags some examples, not all

    np.save(tmp_path / "up.npy", assets.examples[0].map)
    a = handle_upload(assets, str(tmp_path / "up.npy"))
    assert len(a.neighbours) == K and "novelty score" in a.novelty_md.lower()
    assert a.cam_png.startswith(b"\x89PNG")


def test_novelty_index_default_explicit_and_mismatched(
    demo_files, tiny_pipeline, tmp_path, monkeypatch
):
    from dataclasses import replace

    from wafer.apps.demo.analysis import analyse_in, header_markdown
    from wafer.apps.demo.assets import load_assets
    from wafer.config.pipeline import pipeline_paths
    from wafer.serving.files import Novelty
    from wafer.serving.novelty import FeatureIndex

    keys = ("model", "calibration", "thresholds", "evaluate_json", "calibrate_json")
    args = [demo_files[k] for k in (*keys, "predictions_csv", "ingested_npz")]
    here = tmp_path / "cwd"
    here.mkdir()
    shutil.copy(ROOT / "dvc.yaml", here)  # the pipeline's paths, but no index here yet
    monkeypatch.chdir(here)  # no index here: the demo runs without novelty
    default_index = pipeline_paths()["index"]
    assets = load_assets(*args, device="cpu")
    assert assets.predictor.novelty is None
    assert assets.novelty_note.startswith(f"no {default_index} (index stage)")
    assert f"*No novelty check: no {default_index}" in header_markdown(assets)
    a = analyse_in(assets, assets.examples[0].map, "x", cam=False)
    assert a.novelty_md == "" and a.novel is None and a.neighbours == ()
    assert "novelty_score" not in a.row

    with pytest.raises(WaferInputError, match="missing.npz: no such file"):
        load_assets(*args, device="cpu", index=here / "missing.npz", novelty=demo_files["novelty"])
    default_index.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(demo_files["index"], default_index)  # default index, no novelty.json
    with pytest.raises(WaferInputError, match="novelty.json: no such file"):
        load_assets(*args, device="cpu")
    shutil.copy(demo_files["novelty"], pipeline_paths()["novelty"])
    assert load_assets(*args, device="cpu").predictor.novelty is not None  # the defaults

    # an index of other ingested rows / labels: files from different runs
    with pytest.raises(WaferInputError, match="row 1000 is not in .*ingested.npz"):
        load_assets(
            *args, device="cpu", index=tiny_pipeline["index"], novelty=tiny_pipeline["novelty"]
        )
    idx = FeatureIndex.load(demo_files["index"])
    idx.labels[0] = (idx.labels[0] + 1) % len(CLASS_NAMES)
    idx.save(tmp_path / "relabelled.npz")
    cfg = replace(
        Novelty.load(demo_files["novelty"]), index_sha256=sha256_file(tmp_path / "relabelled.npz")
    )
    cfg.save(tmp_path / "relabelled.json")
    with pytest.raises(WaferInputError, match="files from different runs"):
        load_assets(
            *args,
            device="cpu",
            index=tmp_path / "relabelled.npz",
            novelty=tmp_path / "relabelled.json",
        )


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
    import wafer.apps.demo.app as demo

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


def _need_browser() -> None:
    """Skip unless gradio, selenium, Chromium and its driver are all there."""
    for mod in ("gradio", "selenium"):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            pytest.skip(f"{mod} not importable ({exc}); pip install -e '.[dev,demo]'")
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).is_file():
            pytest.skip(f"{exe} missing (apt-get install chromium chromium-driver)")


def _browser():
    _need_browser()
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

    from wafer.apps.demo.analysis import analyse, analyse_in, read_upload
    from wafer.apps.demo.app import build_app, launch

    assets = assets_of(demo_files)
    i_novel, i_known = flagged(assets)
    app = build_app(assets)
    port = free_port()

    def neighbour_captions(ex) -> list[str]:
        return [c for _, c in analyse_in(assets, ex.map, "x", cam=False).neighbours]

    def gallery_shows(captions: list[str]):
        """Wait condition: the neighbour gallery shows exactly these K captions, in order."""

        def check(drv):
            items = drv.find_elements(By.CSS_SELECTOR, "#neighbours .thumbnail-item")
            got = [" ".join(it.text.split()) for it in items]
            return got == captions and all(it.find_elements(By.TAG_NAME, "img") for it in items)

        return check

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

        assert "Novelty check: knn, k = 3 score" in header
        assert not driver.find_elements(By.CSS_SELECTOR, "#neighbours .thumbnail-item")

        thumbs[i_novel].click()  # an example the fixture's threshold flags
        wait.until(EC.text_to_be_present_in_element((By.ID, "prediction"), "Predicted:"))
        text = driver.find_element(By.ID, "prediction").text
        ex = assets.examples[i_novel]
        want = analyse(assets.predictor, ex.map, "x", cam=False).row
        # the flag, prominently: the first block of the result, styled as a warning
        wait.until(
            EC.text_to_be_present_in_element(
                (By.ID, "novelty"), "Unlike every known pattern — review"
            )
        )
        flag = driver.find_element(By.CSS_SELECTOR, "#novelty.novel")
        assert f"Novelty score {want['novelty_score']:.4g} > threshold" in flag.text
        assert "(knn, k = 3)" in flag.text
        assert flag.value_of_css_property("border-top-color") == "rgba(185, 28, 28, 1)"
        assert flag.location["y"] < driver.find_element(By.ID, "prediction").location["y"]
        # the K nearest training maps, with their labels
        want_captions = neighbour_captions(ex)
        assert len(want_captions) == K
        wait.until(gallery_shows(want_captions))
        idx = assets.predictor.novelty.index
        rows = [int(c.split(" · ")[1].removeprefix("row ")) for c in want_captions]
        labels = {int(r): CLASS_NAMES[lab] for r, lab in zip(idx.rows, idx.labels, strict=True)}
        assert [c.split(" · ")[0] for c in want_captions] == [labels[r] for r in rows]
        assert f"Predicted: {want['predicted']} — calibrated confidence" in text
        assert f"{want['confidence']:.3f}" in text
        assert "at the cost operating point" in " ".join(text.split())
        assert f"true class {ex.cls}" in text and f"row {ex.row}" in text
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#cam img")))
        mode = driver.find_element(By.ID, "process-mode").text
        assert PROCESS_MODES[want["predicted"]]["signature"] in mode
        driver.save_screenshot(str(tmp_path / "demo.png"))

        thumbs[i_known].click()  # an example the threshold does not flag: a quiet line
        ex = assets.examples[i_known]
        wait.until(EC.text_to_be_present_in_element((By.ID, "novelty"), "Known pattern"))
        assert not driver.find_elements(By.CSS_SELECTOR, "#novelty.novel")
        known = driver.find_element(By.CSS_SELECTOR, "#novelty.known").text
        score = analyse(assets.predictor, ex.map, "x", cam=False).row["novelty_score"]
        assert f"Known pattern: novelty score {score:.4g} ≤ threshold" in known
        wait.until(gallery_shows(neighbour_captions(ex)))

        photo = np.random.default_rng(2).integers(0, 256, (40, 40)).astype(np.uint8)
        from PIL import Image

        Image.fromarray(photo, mode="L").save(tmp_path / "photo.png")
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(
            str(tmp_path / "photo.png")
        )
        wait.until(EC.text_to_be_present_in_element((By.ID, "warning"), "does not look like"))
        assert "photo.png" in driver.find_element(By.ID, "warning").text
        # an upload gets the novelty verdict and its neighbours too
        photo_map = read_upload(tmp_path / "photo.png")[0]
        verdict = analyse(assets.predictor, photo_map, "x", cam=False).row
        text = driver.find_element(By.ID, "novelty").text
        assert f"ovelty score {verdict['novelty_score']:.4g}" in text
        wait.until(gallery_shows(neighbour_captions(SimpleNamespace(map=photo_map))))
        assert (tmp_path / "demo.png").stat().st_size > 10_000
    finally:
        driver.quit()
        app.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'", "ignore:The copy keyword")
def test_screenshot_script_shows_a_flagged_map(demo_files, tmp_path, capsys):
    """scripts/demo_screenshot.py on the fixture: the first flagged example, and an upload of
    an ingested row, each with its novelty verdict and neighbours in the page."""
    _need_browser()
    files = [
        *("--model", demo_files["model"], "--calibration", demo_files["calibration"]),
        *("--thresholds", demo_files["thresholds"], "--ingested", demo_files["ingested_npz"]),
        *("--evaluate-metrics", demo_files["evaluate_json"]),
        *("--calibrate-metrics", demo_files["calibrate_json"]),
        *("--predictions", demo_files["predictions_csv"], "--index", demo_files["index"]),
        *("--novelty", demo_files["novelty"], "--chromium", CHROMIUM),
        *("--chromedriver", CHROMEDRIVER, "--timeout", "60"),
    ]
    script = _screenshot_script()
    # the fixture's predictions.csv is made up: the check against it must fail...
    assert script.main([*map(str, files), "--out", str(tmp_path / "x.png")]) == 3
    assert "error: mismatch" in capsys.readouterr().err
    # ...and is skipped here
    out = tmp_path / "novel.png"
    assert (
        script.main([*map(str, files), "--no-verify", "--example", "novel", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "the first example flagged as novel" in printed
    assert "Unlike every known pattern — review" in printed
    assert out.stat().st_size > 10_000
    row = ROW_OFFSET + 4  # a Donut test map, uploaded as row7.npy
    out = tmp_path / "row.png"
    args = [*map(str, files), "--no-verify", "--row", str(row), "--out", str(out)]
    assert script.main(args) == 0
    printed = capsys.readouterr().out
    assert "ovelty score" in printed and f"Source: row{row}.npy" in printed
    assert out.stat().st_size > 10_000
