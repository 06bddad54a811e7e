#!/usr/bin/env python
"""Open a gradleak report.html in headless Chromium, screenshot it, and fail on console errors or overflow.

    python scripts/screenshot_report.py runs/audit/report.html --out docs/report-1280.png --width 1280
    python scripts/screenshot_report.py runs/audit/report.html --out docs/report-420.png --width 420

The page's scroll width is measured at the same window width (a copy of the page with a measuring
script; the report itself has none): wider than the window means a reader scrolls sideways.
Exit status 0: rendered, no console message, nothing loaded from outside the file, no overflow;
1: it rendered but the page is not clean (the problems are listed); 2: bad input or no browser.
The screenshot covers the whole page (``--height`` 0, the default) or the top ``--height`` pixels,
and is saved with a 256-colour palette to keep ``docs/`` small. A browser: Debian's
``chromium-headless-shell`` or ``chromium`` on PATH, or ``$GRADLEAK_BROWSER``.
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
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return rgb.size


def main(argv: list[str] | None = None) -> int:
    from gradleak.errors import GradleakError
    from gradleak.report.browser import check_report, measure_layout

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", type=Path, help="the report.html to open")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default: next to the report, report.png)")
    p.add_argument("--width", type=int, default=1280, help="window width in CSS pixels (default 1280; a phone: 420)")
    p.add_argument("--height", type=int, default=0, help="window height (default 0: the whole page)")
    args = p.parse_args(argv)
    out = args.out or args.report.with_suffix(".png")
    try:
        layout = measure_layout(args.report, width=args.width)
        height = args.height or layout.scroll_height + 40
        check = check_report(args.report, out, width=args.width, height=height)
    except GradleakError as exc:
        print(f"screenshot_report: error: {exc}", file=sys.stderr)
        return 2
    width, shot_height = _crop_trailing_white(out)
    print(f"screenshot {out} ({width}x{shot_height})")
    print(f"scroll width {layout.scroll_width} px at a {layout.viewport} px window "
          + ("(fits)" if layout.fits else f"(OVERFLOWS: {', '.join(layout.overflowing) or 'unknown element'})"))
    for problem in check.console_errors + check.external:
        print(f"  problem: {problem}")
    clean = check.ok and layout.fits
    print("clean: no console messages, no external references, no overflow" if clean else "NOT clean")
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
