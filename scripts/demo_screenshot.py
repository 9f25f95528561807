#!/usr/bin/env python3
"""Screenshot the Gradio demo on the real pipeline outputs: docs/demo.png.

    python scripts/demo_screenshot.py                      # after `dvc repro`
    python scripts/demo_screenshot.py --example Scratch --out /tmp/demo.png
    python scripts/demo_screenshot.py --example novel      # the first example flagged as novel
    python scripts/demo_screenshot.py --row 12345          # upload ingested row 12345's map
    python scripts/demo_screenshot.py --upload map.npy     # upload a .npy / .png die map

Starts the demo (wafer.apps.demo) on 127.0.0.1 and a free port in this process, drives Debian's
headless Chromium through Selenium with Debian's chromedriver (no driver download), clicks one
example (or uploads a map), waits for its prediction (and, with the novelty index, its novelty
verdict and nearest training maps) and saves the page. Before that it checks that the demo
serves exactly the evaluated pipeline: for every example it re-predicts the die map from
the ingested maps and compares class and confidence with the evaluate stage's predictions
file (exit 3 on a mismatch).

Needs: pip install -e '.[demo]' selenium; apt-get install chromium chromium-driver.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verify_examples(assets, atol: float = 1e-4) -> list[str]:
    """Mismatches between the demo's prediction of each example and predictions.csv."""
    bad = []
    for ex in assets.examples:
        row = assets.predictor.predict([ex.map], [f"row {ex.row}"])[0]
        same_class = row["predicted"] == ex.predicted
        if not same_class or abs(row["confidence"] - ex.confidence) > atol:
            bad.append(
                f"{ex.cls} (row {ex.row}): demo {row['predicted']} {row['confidence']:.6f}, "
                f"predictions.csv {ex.predicted} {ex.confidence:.6f}"
            )
        else:
            novelty = (
                f" (novelty {row['novelty_score']:.4g}{', flagged' if row['novel'] else ''})"
                if "novelty_score" in row
                else ""
            )
            print(
                f"  {ex.cls:9s} row {ex.row:6d}: {row['predicted']} {row['confidence']:.6f} = csv"
                f"{novelty}"
            )
    return bad


def novel_examples(assets) -> list[str]:
    """Classes of the examples the demo flags as unlike every known pattern."""
    if assets.predictor.novelty is None:
        return []
    return [
        ex.cls
        for ex in assets.examples
        if assets.predictor.predict([ex.map], [f"row {ex.row}"])[0]["novel"]
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--example",
        default="Center",
        help="class of the example to click, or 'novel': the first example flagged as novel",
    )
    what.add_argument("--upload", type=Path, help="upload this .npy or .png die map instead")
    what.add_argument("--row", type=int, help="upload the map of this row of --ingested instead")
    # every file: default the pipeline's own (dvc.yaml's paths), as the demo's
    for name in ("model", "calibration", "thresholds", "evaluate-metrics", "calibrate-metrics"):
        p.add_argument(f"--{name}", help="default: the pipeline's (dvc.yaml's paths)")
    p.add_argument("--predictions", help="default: the pipeline's (dvc.yaml's paths)")
    p.add_argument("--ingested", help="default: the pipeline's (dvc.yaml's paths)")
    p.add_argument("--index", help="default: the pipeline's index when present (as the demo)")
    p.add_argument("--novelty", help="default: the pipeline's novelty.json (with the index)")
    p.add_argument("--neighbours", type=int, help="nearest training maps shown (as the demo)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the check against predictions.csv (only for test fixtures: not for docs/)",
    )
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1500)
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for the page")
    args = p.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from wafer.apps.demo.app import build_app, launch
    from wafer.apps.demo.assets import load_assets

    assets = load_assets(
        args.model,
        args.calibration,
        args.thresholds,
        args.evaluate_metrics,
        args.calibrate_metrics,
        args.predictions,
        args.ingested,
        args.device,
        index=args.index,
        novelty=args.novelty,
        **({} if args.neighbours is None else {"neighbours": args.neighbours}),
    )
    for note in assets.notes:
        print(f"warning: stale metrics: {note}", file=sys.stderr)
    if assets.novelty_note:
        print(f"warning: {assets.novelty_note}", file=sys.stderr)
    if args.verify:
        print("examples, re-predicted by the demo vs the evaluate stage's predictions:")
        bad = verify_examples(assets)
    else:
        print("warning: --no-verify: examples not checked against predictions.csv", file=sys.stderr)
        bad = []
    for line in bad:
        print(f"error: mismatch: {line}", file=sys.stderr)
    if bad:
        return 3
    classes = [ex.cls for ex in assets.examples]
    example = args.example
    if args.upload is None and args.row is None:
        if example == "novel":
            novel = novel_examples(assets)
            if not novel:
                print(
                    "error: no example is flagged as novel: try --row or --upload", file=sys.stderr
                )
                return 2
            example = novel[0]
            print(f"clicking {example}: the first example flagged as novel")
        if example not in classes:
            print(f"error: no example of class {example!r} (have {classes})", file=sys.stderr)
            return 2

    upload = args.upload
    if args.row is not None and not 0 <= args.row < len(assets.ingested.labels):
        print(f"error: --row {args.row}: not an ingested row", file=sys.stderr)
        return 2
    if upload is not None and not upload.is_file():
        print(f"error: --upload {upload}: no such file", file=sys.stderr)
        return 2

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    if args.row is not None:  # the map as a .npy upload, named after its row in the page
        upload = Path(tempfile.mkdtemp(prefix="demo-upload-", dir=profile)) / f"row{args.row}.npy"
        np.save(upload, assets.ingested.map(args.row))
    app = build_app(assets)
    port = free_port()
    opts = webdriver.ChromeOptions()
    opts.binary_location = args.chromium
    for flag in [
        *CHROMIUM_FLAGS,
        f"--window-size={args.width},{args.height}",
        f"--user-data-dir={profile}",
    ]:
        opts.add_argument(flag)
    driver = None
    try:
        launch(app, "127.0.0.1", port, block=False, quiet=True)
        driver = webdriver.Chrome(service=Service(executable_path=args.chromedriver), options=opts)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, args.timeout)
        thumbs = wait.until(
            EC.presence_of_all_elements_located((By.CSS_SELECTOR, "#examples .thumbnail-item"))
        )
        if upload is None:
            thumbs[classes.index(example)].click()
            wait.until(EC.text_to_be_present_in_element((By.ID, "prediction"), "Predicted:"))
        else:
            upload = upload.resolve()
            driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(upload))
            wait.until(
                lambda d: (
                    f"Source: {upload.name}" in d.find_element(By.ID, "prediction").text
                    or upload.name in d.find_element(By.ID, "warning").text
                )
            )
            if "Predicted:" not in driver.find_element(By.ID, "prediction").text:
                print(f"error: {driver.find_element(By.ID, 'warning').text}", file=sys.stderr)
                return 2
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#cam img")))
        if assets.predictor.novelty is not None:
            wait.until(lambda d: d.find_element(By.ID, "novelty").text.strip())
            if args.neighbours:
                wait.until(
                    lambda d: (
                        len(d.find_elements(By.CSS_SELECTOR, "#neighbours .thumbnail-item img"))
                        == min(args.neighbours, len(assets.predictor.novelty.index))
                    )
                )
            print(driver.find_element(By.ID, "novelty").text)
        driver.execute_script("window.scrollTo(0, 0)")
        print(driver.find_element(By.ID, "prediction").text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        if driver is not None:
            driver.quit()
        app.close()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
