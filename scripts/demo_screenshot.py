#!/usr/bin/env python3
"""Screenshot the Gradio demo on the real pipeline outputs: docs/demo.png.

    python scripts/demo_screenshot.py                      # after `dvc repro`
    python scripts/demo_screenshot.py --example Scratch --out /tmp/demo.png

Starts the demo (wafer.demo) on 127.0.0.1 and a free port in this process, drives Debian's
headless Chromium through Selenium with Debian's chromedriver (no driver download), clicks one
example, waits for its prediction and saves the page. Before that it checks that the demo
serves exactly the evaluated pipeline: for every example it re-predicts the die map from
data/ingested.npz and compares class and confidence with the evaluate stage's
data/predictions.csv (exit 3 on a mismatch).

Needs: pip install -e '.[demo]' selenium; apt-get install chromium chromium-driver.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
from pathlib import Path

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
            print(
                f"  {ex.cls:9s} row {ex.row:6d}: {row['predicted']} {row['confidence']:.6f} = csv"
            )
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    p.add_argument("--example", default="Center", help="class of the example to click")
    p.add_argument("--model", default="models/model.pt")
    p.add_argument("--calibration", default="models/calibration.json")
    p.add_argument("--thresholds", default="models/thresholds.json")
    p.add_argument("--evaluate-metrics", default="metrics/evaluate.json")
    p.add_argument("--calibrate-metrics", default="metrics/calibrate.json")
    p.add_argument("--predictions", default="data/predictions.csv")
    p.add_argument("--ingested", default="data/ingested.npz")
    p.add_argument("--device", default="cpu")
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

    from wafer.demo import build_app, launch, load_assets

    assets = load_assets(
        args.model,
        args.calibration,
        args.thresholds,
        args.evaluate_metrics,
        args.calibrate_metrics,
        args.predictions,
        args.ingested,
        args.device,
    )
    for note in assets.notes:
        print(f"warning: stale metrics: {note}", file=sys.stderr)
    print("examples, re-predicted by the demo vs data/predictions.csv:")
    bad = verify_examples(assets)
    for line in bad:
        print(f"error: mismatch: {line}", file=sys.stderr)
    if bad:
        return 3
    classes = [ex.cls for ex in assets.examples]
    if args.example not in classes:
        print(f"error: no example of class {args.example!r} (have {classes})", file=sys.stderr)
        return 2

    app = build_app(assets)
    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
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
        thumbs[classes.index(args.example)].click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "prediction"), "Predicted:"))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#cam img")))
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
