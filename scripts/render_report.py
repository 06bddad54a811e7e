#!/usr/bin/env python
"""Redraw report.html of a finished audit from its results.json (seconds, not the audit's minutes).

    python scripts/render_report.py runs/audit
    python scripts/screenshot_report.py runs/audit/report.html --width 420 --out /tmp/phone.png

Needs ``report_inputs.safetensors`` beside ``results.json`` (audits write it since the page learnt
to re-render). The numbers are those of the run; the page's wording and layout are today's.
Exit status 2 with one line when the directory lacks either file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from gradleak.audit.page import rerender
    from gradleak.audit.page_inputs import FILE

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", type=Path, help="an audit's --out directory")
    args = p.parse_args(argv)
    missing = [n for n in ("results.json", FILE) if not (args.directory / n).is_file()]
    if missing:
        print(f"render_report: error: {args.directory} has no {' and no '.join(missing)} (re-run the audit)",
              file=sys.stderr)
        return 2
    print(f"report: {rerender(args.directory)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
