#!/usr/bin/env python3
"""Screenshot an HTML file (e.g. dvc_plots/index.html) with headless Chromium, network off.

    python scripts/screenshot_plots.py dvc_plots/index.html docs/plots_offline.png \
        --width 1400 --height 3000

Any network fetch the page attempts fails: all requests go to a dead proxy
(127.0.0.1:9, loopback included), DNS resolution is disabled, and, where
`unshare -n` is permitted (root / user namespaces), Chromium runs in an empty
network namespace. This shows what the page looks like on an offline machine.

Needs Debian's `chromium` (apt-get install chromium). Stdlib only; if Pillow is
importable it also reports how much of the image is not background, and
--fail-if-blank turns an (almost) empty page into exit status 3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NETWORK_OFF_FLAGS = [
    "--proxy-server=127.0.0.1:9",  # discard port: every request fails at once
    "--proxy-bypass-list=<-loopback>",  # ...loopback too (no implicit bypass)
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
]


def find_chromium(explicit: str | None) -> str:
    for cand in (explicit, os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if cand and (path := shutil.which(cand)):
            return path
    sys.exit("error: chromium not found (apt-get install -y chromium, or pass --chromium)")


def can_unshare_net() -> bool:
    unshare = shutil.which("unshare")
    if not unshare:
        return False
    try:
        res = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def ink_fraction(png: Path) -> float | None:
    """Fraction of pixels that differ from the most common (background) colour."""
    try:
        from PIL import Image, ImageChops
    except ImportError:
        return None
    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colors = rgb.getcolors(maxcolors=rgb.size[0] * rgb.size[1])
        bg = Image.new("RGB", rgb.size, max(colors)[1])
        diff = ImageChops.difference(rgb, bg).convert("L").point(lambda v: 255 if v > 16 else 0)
        hist = diff.histogram()
        return hist[255] / (rgb.size[0] * rgb.size[1])


def screenshot(
    html: Path,
    out: Path,
    width: int,
    height: int,
    budget_ms: int,
    chromium: str,
    netns: str,
    timeout: float,
    verbose: bool,
) -> None:
    if not html.is_file():
        sys.exit(f"error: {html} not found")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()

    use_netns = netns == "on" or (netns == "auto" and can_unshare_net())
    if netns == "on" and not can_unshare_net():
        sys.exit("error: --netns on, but `unshare -n` is not permitted here")

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            *NETWORK_OFF_FLAGS,
        ]
        if verbose:
            cmd += ["--enable-logging=stderr", "--v=0"]
        cmd.append(html.resolve().as_uri())
        if use_netns:
            cmd = ["unshare", "-n", *cmd]
        if verbose:
            print("+", " ".join(cmd), file=sys.stderr)
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            sys.exit(f"error: chromium did not finish within {timeout:.0f}s")
    if verbose or res.returncode != 0 or not out.is_file():
        sys.stderr.write(res.stdout + res.stderr)
    if res.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        sys.exit(f"error: chromium exited {res.returncode} without writing {out}")
    net = "empty netns + dead proxy" if use_netns else "dead proxy"
    print(f"wrote {out} ({width}x{height}, network off: {net})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("html", type=Path, help="HTML file to open, e.g. dvc_plots/index.html")
    p.add_argument("out", type=Path, help="PNG to write, e.g. docs/plots_offline.png")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument(
        "--budget-ms",
        type=int,
        default=10000,
        help="virtual time the page gets to load/render (default 10000)",
    )
    p.add_argument("--chromium", help="browser binary (default: $CHROMIUM or chromium)")
    p.add_argument(
        "--netns",
        choices=("auto", "on", "off"),
        default="auto",
        help="run in an empty network namespace via `unshare -n` (auto: when permitted)",
    )
    p.add_argument("--timeout", type=float, default=120, help="wall-clock limit, seconds")
    p.add_argument(
        "--fail-if-blank",
        type=float,
        nargs="?",
        const=0.01,
        default=None,
        metavar="FRACTION",
        help="exit 3 if less than FRACTION (default 0.01) of pixels differ from background "
        "(needs Pillow)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show chromium's command/log")
    args = p.parse_args(argv)

    screenshot(
        args.html,
        args.out,
        args.width,
        args.height,
        args.budget_ms,
        find_chromium(args.chromium),
        args.netns,
        args.timeout,
        args.verbose,
    )
    ink = ink_fraction(args.out)
    if ink is not None:
        print(f"non-background pixels: {ink:.2%}")
    if args.fail_if_blank is not None:
        if ink is None:
            print("error: --fail-if-blank needs Pillow", file=sys.stderr)
            return 2
        if ink < args.fail_if_blank:
            msg = f"error: page looks blank ({ink:.2%} < {args.fail_if_blank:.2%})"
            print(msg, file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
