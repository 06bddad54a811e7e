#!/usr/bin/env python
"""Open a gradleak report.html in headless Chromium, screenshot it, and fail on console errors.

    python scripts/screenshot_report.py runs/audit/report.html --out runs/audit/report.png

Exit status 0: rendered, no console message, nothing loaded from outside the file;
1: it rendered but the page is not clean (the problems are listed); 2: bad input or no browser.
The screenshot is cropped at the end of the page content (trailing white removed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _crop_trailing_white(path: Path) -> tuple[int, int]:
    from PIL import Image, ImageChops

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, (255, 255, 255))).getbbox()
    if box is not None and box[3] + 24 < rgb.height:
        rgb = rgb.crop((0, 0, rgb.width, box[3] + 24))
        rgb.save(path)
    return rgb.size


def main(argv: list[str] | None = None) -> int:
    from gradleak.errors import GradleakError
    from gradleak.report.browser import check_report

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", type=Path, help="the report.html to open")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default: next to the report, report.png)")
    p.add_argument("--width", type=int, default=1200, help="window width in pixels (default 1200)")
    p.add_argument("--height", type=int, default=12000, help="window height: the page is cropped to its content")
    args = p.parse_args(argv)
    out = args.out or args.report.with_suffix(".png")
    try:
        check = check_report(args.report, out, width=args.width, height=args.height)
    except GradleakError as exc:
        print(f"screenshot_report: error: {exc}", file=sys.stderr)
        return 2
    width, height = _crop_trailing_white(out)
    print(f"screenshot {out} ({width}x{height})")
    for problem in check.console_errors + check.external:
        print(f"  problem: {problem}")
    print("clean: no console messages, no external references" if check.ok else "NOT clean")
    return 0 if check.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
