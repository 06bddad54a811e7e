"""A self-contained HTML report: inline CSS, images as data URIs, no scripts, no URLs.

The report must open anywhere (an air-gapped hospital workstation included), so nothing is
fetched: :meth:`HtmlReport.image` embeds the PNG bytes themselves.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{padding:1em 1.2em;border-radius:6px;margin:1em 0}
.verdict.high{background:#fde2e1;border:2px solid #c0392b} .verdict.medium{background:#fff4d6;border:2px solid #d68910}
.verdict.low{background:#e3f6e8;border:2px solid #1e8449} .verdict.unknown{background:#eee;border:2px solid #888}
figure{margin:1em 0} figcaption{font-size:.9em;color:#555} img{max-width:100%}
.muted{color:#666;font-size:.9em} code{background:#f5f5f5;padding:0 .2em}
.verdict .level{font-size:.8em;font-weight:700;letter-spacing:.08em;text-transform:uppercase;margin-bottom:.3em}
.verdict .headline{font-size:1.15em;margin:.2em 0 .5em} .verdict ul,.verdict ol{margin:.3em 0;padding-left:1.4em}
.verdict h3{font-size:1em;margin:.8em 0 .2em} .verdict li{margin:.2em 0;font-size:.95em}
nav.toc{font-size:.9em;margin:.4em 0 1em;color:#555} nav.toc a{color:#1f5f99;text-decoration:none}
table.facts th{width:14em;font-weight:600} dt{font-weight:600;margin-top:.5em} dd{margin-left:1.2em;color:#333}
tr.chosen td{background:#fff8e1} .row{display:flex;flex-wrap:wrap;gap:1em} .row figure{flex:1 1 300px;min-width:0;margin:.5em 0} .row.compact figure{flex:0 0 auto;max-width:15em} pre{background:#f5f5f5;padding:.6em;overflow-x:auto;font-size:.85em}
.scroll{overflow-x:auto;max-width:100%} .scroll table{margin:0} div.scroll{margin:.6em 0}
figure.grid .scroll img{max-width:none;image-rendering:pixelated} p,li,dd,figcaption{overflow-wrap:break-word}
a.term{color:inherit;text-decoration:underline dotted #1f5f99;text-underline-offset:2px}
.call{padding:.4em .7em;border-radius:4px;display:inline-block;margin:.2em 0}
.call.yes{background:#fde2e1;border:1px solid #c0392b} .call.some{background:#fff4d6;border:1px solid #d68910}
.call.no{background:#eef3f8;border:1px solid #8aa4bf} .call.unknown{background:#eee;border:1px solid #888}
dl.glossary dt{scroll-margin-top:1em} @media (max-width:600px){table.facts th{width:auto}}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def link_terms(text: Any, terms: Mapping[str, str]) -> str:
    """``text`` escaped, each glossary term in it a link to its definition (``terms``: term -> anchor).

    A term matches as a whole word only ("ig" not inside "big", "dlg" not inside "idlg"), the longest first.
    """
    text = str(text)
    if not terms:
        return esc(text)
    pattern = _pattern(tuple(sorted(terms, key=len, reverse=True)))
    out, pos = [], 0
    for match in pattern.finditer(text):
        out.append(esc(text[pos:match.start()]))
        out.append(f'<a class="term" href="#{esc(terms[match.group(1)])}">{esc(match.group(1))}</a>')
        pos = match.end()
    return "".join(out) + esc(text[pos:])


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    if terms not in _PATTERNS:
        _PATTERNS[terms] = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, terms)) + r")(?![\w-])")
    return _PATTERNS[terms]


class HtmlReport:
    """Builder for one HTML page; every method escapes the text it is given.

    ``terms`` (term -> glossary anchor): every occurrence in paragraphs, lists, tables and captions
    links to its definition; the verdict box is never linked (it is written in plain words).
    """

    def __init__(self, title: str, *, terms: Mapping[str, str] | None = None) -> None:
        self.title = title
        self.parts: list[str] = []
        self.terms = dict(terms or {})

    def _t(self, text: Any) -> str:
        return link_terms(text, self.terms)

    def heading(self, text: str, *, level: int = 2, anchor: str | None = None) -> None:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{esc(text)}</h{level}>")

    def paragraph(self, text: str, *, css: str | None = None) -> None:
        cls = f' class="{esc(css)}"' if css else ""
        self.parts.append(f"<p{cls}>{self._t(text)}</p>")

    def bullets(self, items: Sequence[str], *, ordered: bool = False) -> None:
        tag = "ol" if ordered else "ul"
        self.parts.append(f"<{tag}>" + "".join(f"<li>{self._t(i)}</li>" for i in items) + f"</{tag}>")

    def verdict(self, level: str, headline: str, details: Sequence[str], *, title: str | None = None,
                actions: Sequence[str] = ()) -> None:
        """The coloured box a report leads with: level title, headline, findings, what to do."""
        top = f'<div class="level">{esc(title)}</div>' if title else ""
        body = "".join(f"<p>{esc(d)}</p>" for d in details) if not actions else \
            "<ul>" + "".join(f"<li>{esc(d)}</li>" for d in details) + "</ul>"
        todo = ("<h3>What to do</h3><ol>" + "".join(f"<li>{esc(a)}</li>" for a in actions) + "</ol>") if actions else ""
        self.parts.append(f'<div class="verdict {esc(level)}" id="verdict">{top}<p class="headline">'
                          f"<strong>{esc(headline)}</strong></p>{body}{todo}</div>")

    def contents(self, items: Sequence[tuple[str, str]]) -> None:
        """A one-line table of contents: (anchor, title) pairs."""
        links = " · ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in items)
        self.parts.append(f'<nav class="toc">{links}</nav>')

    def definitions(self, items: Sequence[tuple[str, str]], *, anchors: Sequence[str] | None = None) -> None:
        """A glossary: (term, explanation) pairs; ``anchors[i]`` is term i's id (the target of its links)."""
        ids = list(anchors) if anchors is not None else [None] * len(items)
        self.parts.append('<dl class="glossary">' + "".join(
            (f'<dt id="{esc(a)}">' if a else "<dt>") + f"{esc(t)}</dt><dd>{esc(d)}</dd>"
            for (t, d), a in zip(items, ids)) + "</dl>")

    def facts(self, items: Sequence[tuple[str, Any]]) -> None:
        """A two-column key/value table (the audited setup, versions), scrolling inside its box."""
        self.parts.append('<div class="scroll"><table class="facts"><tbody>' + "".join(
            f"<tr><th>{esc(k)}</th><td>{self._t(v)}</td></tr>" for k, v in items) + "</tbody></table></div>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], *,
              highlight: Sequence[bool] | None = None) -> None:
        """A table that scrolls sideways inside its box on a narrow screen; numeric cells align right;
        ``highlight[i]`` shades row i (e.g. the attacker's pick)."""
        head = "".join(f"<th>{self._t(h)}</th>" for h in header)
        marks = list(highlight) if highlight is not None else [False] * len(rows)
        body = "".join(
            ('<tr class="chosen">' if mark else "<tr>") + "".join(
                f'<td class="num">{esc(c)}</td>' if isinstance(c, (int, float)) or _numeric(c) else f"<td>{self._t(c)}</td>"
                for c in row) + "</tr>"
            for row, mark in zip(rows, marks)
        )
        self.parts.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')

    def image(self, path: str | Path, *, caption: str, alt: str | None = None) -> None:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt or caption)}">'
            f"<figcaption>{self._t(caption)}</figcaption></figure>"
        )

    def grid(self, path: str | Path, *, width: int, height: int, scale: int, caption: str, call: str | None = None,
             call_detail: str = "", call_class: str = "no") -> None:
        """A truth-vs-reconstruction grid shown at its own pixel size (``scale`` x the images), scrolling
        sideways inside its box on a narrow screen; ``call`` (bold) and ``call_detail``: the label above it
        saying what it shows (e.g. whether the attack recovered anything)."""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        detail = f" {self._t(call_detail)}" if call_detail else ""
        top = (f'<p class="call {esc(call_class)}"><strong>{self._t(call)}</strong>{detail}</p>' if call else "")
        self.parts.append(
            f'<figure class="grid">{top}<div class="scroll"><img src="data:image/png;base64,{data}" width="{width}" '
            f'height="{height}" data-scale="{scale}" alt="{esc(caption)}"></div>'
            f"<figcaption>{self._t(caption)}</figcaption></figure>")

    def images(self, items: Sequence[tuple[str | Path, str]], *, compact: bool = False) -> None:
        """Several embedded PNGs side by side (wrapping on narrow screens), each with its caption;
        ``compact`` keeps small pictures at their own size instead of sharing the width."""
        figures = "".join(
            f'<figure><img src="data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode("ascii")}" '
            f'alt="{esc(c)}"><figcaption>{self._t(c)}</figcaption></figure>' for p, c in items)
        self.parts.append(f'<div class="row{" compact" if compact else ""}">{figures}</div>')

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
