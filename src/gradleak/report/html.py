"""A self-contained HTML report: inline CSS, images as data URIs, no scripts, no URLs.

The report must open anywhere (an air-gapped hospital workstation included), so nothing is
fetched: :meth:`HtmlReport.image` embeds the PNG bytes themselves.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{padding:1em 1.2em;border-radius:6px;font-size:1.15em;margin:1em 0}
.verdict.high{background:#fde2e1;border:2px solid #c0392b} .verdict.medium{background:#fff4d6;border:2px solid #d68910}
.verdict.low{background:#e3f6e8;border:2px solid #1e8449} .verdict.unknown{background:#eee;border:2px solid #888}
figure{margin:1em 0} figcaption{font-size:.9em;color:#555} img{max-width:100%;image-rendering:pixelated}
.muted{color:#666;font-size:.9em} code{background:#f5f5f5;padding:0 .2em}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class HtmlReport:
    """Builder for one HTML page; every method escapes the text it is given."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, *, level: int = 2, anchor: str | None = None) -> None:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{esc(text)}</h{level}>")

    def paragraph(self, text: str, *, css: str | None = None) -> None:
        cls = f' class="{esc(css)}"' if css else ""
        self.parts.append(f"<p{cls}>{esc(text)}</p>")

    def bullets(self, items: Sequence[str]) -> None:
        self.parts.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")

    def verdict(self, level: str, headline: str, details: Sequence[str]) -> None:
        body = "".join(f"<p>{esc(d)}</p>" for d in details)
        self.parts.append(f'<div class="verdict {esc(level)}" id="verdict"><strong>{esc(headline)}</strong>{body}</div>')

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(
                f'<td class="num">{esc(c)}</td>' if isinstance(c, (int, float)) or _numeric(c) else f"<td>{esc(c)}</td>"
                for c in row) + "</tr>"
            for row in rows
        )
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def image(self, path: str | Path, *, caption: str, alt: str | None = None) -> None:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt or caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )

    def code(self, text: str) -> None:
        self.parts.append(f"<pre><code>{esc(text)}</code></pre>")

    def render(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(self.parts) + "\n</body></html>\n"
        )

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.render(), encoding="utf-8")


def _numeric(text: Any) -> bool:
    try:
        float(str(text).split(" ")[0])
        return True
    except ValueError:
        return False
