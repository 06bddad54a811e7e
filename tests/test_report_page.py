"""The audit page a person reads: plain verdict, glossary links, labelled grids, no sideways scrolling.

One tiny real audit (8x8 digits, ~15 s) feeds the page checks; the browser checks skip when no
headless Chromium is installed (``apt-get install chromium-headless-shell``, or set
``$GRADLEAK_BROWSER``), the structural ones always run.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from gradleak.audit.glossary import ENTRIES, TERMS
from gradleak.audit.plain import describe_defense, signed_points
from gradleak.audit.recovery import attacker_call, headline
from gradleak.report.grid import grid_scale, save_image_grid
from gradleak.report.html import STYLE, HtmlReport, link_terms

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def page(tiny_audit_dir):
    """The session's one real audit (conftest.TINY_AUDIT) and its page."""
    return tiny_audit_dir, (tiny_audit_dir / "report.html").read_text(encoding="utf-8")


class _Tree(HTMLParser):
    """Records each start tag with its ancestors' (tag, class) chain."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.tags: list[tuple[str, dict[str, str | None], list[tuple[str, str]]]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes, list(self.stack)))
        if tag not in ("img", "meta", "br", "input"):
            self.stack.append((tag, attributes.get("class") or ""))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


def _tree(html: str) -> _Tree:
    tree = _Tree()
    tree.feed(html)
    return tree


def _verdict_box(html: str) -> str:
    start = html.index('id="verdict"')
    return re.sub(r"<[^>]+>", " ", html[start:html.index("</div>", start)])


# --------------------------------------------------------------------------- without a browser
def test_css_lets_tables_and_grids_scroll_and_fixes_no_width_wider_than_a_phone():
    assert re.search(r"\.scroll\{[^}]*overflow-x:auto", STYLE)
    widths = [int(w) for w in re.findall(r"(?<![-\w])(?:width|min-width|flex-basis):\s*(\d+)px", STYLE)]
    bases = [int(b) for b in re.findall(r"flex:\s*\d+\s+\d+\s+(\d+)px", STYLE)]
    assert all(w <= 420 for w in widths + bases), (widths, bases)
    page = HtmlReport("t")
    page.table(["a"], [[1]])
    page.facts([("k", "v")])
    tree = _tree(page.render())
    tables = [t for t in tree.tags if t[0] == "table"]
    assert len(tables) == 2 and all(chain and chain[-1] == ("div", "scroll") for _, _, chain in tables)


def test_every_table_scrolls_in_its_box_and_grids_are_at_least_4x(page):
    out, html = page
    tree = _tree(html)
    tables = [chain for tag, _, chain in tree.tags if tag == "table"]
    assert len(tables) >= 5
    assert all(chain[-1] == ("div", "scroll") for chain in tables)
    grids = [(a, chain) for tag, a, chain in tree.tags if tag == "img" and ("figure", "grid") in chain]
    assert len(grids) >= 3  # batch 1 and 2, the defense sweep, the malicious server
    from PIL import Image

    for attributes, chain in grids:
        assert chain[-1] == ("div", "scroll")
        assert int(attributes["data-scale"]) >= 4
    with Image.open(out / "reconstructions_batch1.png") as image:
        width = image.width
    assert f'width="{width}"' in html
    # digits are 8 px: drawn 14x (112 px); a 28 px image would be drawn 4x (112 px)
    assert grid_scale(8) == 14 and grid_scale(28) == 4 and grid_scale(64) == 4


def test_verdict_box_is_plain_and_detail_terms_link_to_the_glossary(page):
    _, html = page
    box = _verdict_box(html)
    for word in [*TERMS, "dB", "SSIM", "PSNR", "RA-i"]:
        assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", box), word
    anchors = set(re.findall(r'<dt id="([^"]+)"', html))
    assert anchors == {e.anchor for e in ENTRIES}
    links = re.findall(r'<a class="term" href="#([^"]+)">([^<]+)</a>', html)
    assert {a for a, _ in links} <= anchors
    linked = {w for _, w in links}
    assert {"rgap", "SSIM", "PSNR", "update mismatch"} <= linked
    details = html[html.index('id="findings"'):html.index('id="glossary"')]
    text_only = re.sub(r'<a class="term"[^>]*>[^<]*</a>', "", details)
    text_only = re.sub(r"<[^>]+>", " ", re.sub(r'(src|alt)="[^"]*"', "", text_only))
    for word in ("rgap", "SSIM", "PSNR", "RA-i"):
        assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text_only), f"unlinked {word}"


def test_each_grid_says_whether_the_attack_recovered_anything(page):
    out, html = page
    calls = re.findall(r'<p class="call (\w+)"><strong>(.*?)</strong>(.*?)</p>', html)
    by_batch = {m.group(1): (state, detail) for state, title, detail in calls
                if (m := re.search(r"Batch size (\d+)", title))}
    assert by_batch["1"][0] == "yes"  # R-GAP inverts the batch-1 LeNet gradient exactly
    assert all("Defender&#x27;s measurement" in detail or "Defender" in detail for _, detail in by_batch.values())
    assert "PSNR" in by_batch["1"][1]
    result = json.loads((out / "results.json").read_text())
    assert result["verdict"]["level"] == "high"


def test_accuracy_changes_read_naturally_and_settings_are_named(page):
    _, html = page
    assert not re.search(r"\d pts", html)
    assert re.search(r'<td class="num">[-+]\d+\.\d points</td>|<td>no change</td>', html)
    assert "the untrained model of the first training round" in html
    assert "the model after" in html and "training rounds" in html  # the defense sweep names its model state
    assert signed_points(0.037) == "+3.7 points" and signed_points(-0.037) == "-3.7 points"
    assert signed_points(0.0) == "no change"
    assert "largest 10%" in describe_defense("prune:0.9")


def test_page_rerenders_from_the_saved_results(page):
    from gradleak.audit.page import rerender

    out, html = page
    assert (out / "report_inputs.safetensors").is_file()
    before = re.sub(r"data:image/png;base64,[^\"]+", "", html)
    rerender(out)
    after = re.sub(r"data:image/png;base64,[^\"]+", "", (out / "report.html").read_text(encoding="utf-8"))
    assert before == after


def test_attacker_call_uses_only_what_the_attacker_can_compute():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 16, 16, generator=g)
    noise = torch.rand(2, 1, 16, 16, generator=g)
    rec = lambda name, kind, **kw: {"attack": name, "kind": kind, "status": "ok", "chosen": False, **kw}  # noqa: E731
    agree = attacker_call(batch_size=2, records=[rec("rgap", "closed-form", chosen=True, mismatch=1e-10),
                                                 rec("idlg", "optimisation", mismatch=1e-9)],
                          pictures={"rgap": image, "idlg": image.flip(0)})
    assert agree.state == "yes" and agree.confirmed == 2 and "idlg" in agree.evidence
    alone = attacker_call(batch_size=2, records=[rec("idlg", "optimisation", chosen=True, mismatch=1e-7),
                                                 rec("ig", "optimisation", mismatch=1e-5)],
                          pictures={"idlg": noise, "ig": noise})  # same kind: agreement does not count
    assert alone.state == "unknown"
    apart = attacker_call(batch_size=2, records=[rec("idlg", "optimisation", chosen=True, mismatch=1e-7),
                                                 rec("rgap", "closed-form", mismatch=0.2)],
                          pictures={"idlg": noise, "rgap": image})
    assert apart.state == "no" and headline(apart) == "Attack recovered nothing recognisable"
    misfit = attacker_call(batch_size=2, records=[rec("rgap", "closed-form", chosen=True, mismatch=0.05)],
                           pictures={"rgap": image})
    assert misfit.state == "no" and "knows it failed" in misfit.evidence
    cert = attacker_call(batch_size=4, records=[rec("spear", "closed-form", chosen=True, mismatch=1e-12,
                                                    certified_fraction=0.5)], pictures={})
    assert cert.state == "yes" and cert.confirmed == 2


def test_grid_is_pixel_exact(tmp_path):
    images = torch.rand(2, 3, 28, 28)
    grid = save_image_grid({"private": images, "rgap": images}, tmp_path / "g.png", highlight="rgap")
    from PIL import Image

    assert grid.scale == 4
    with Image.open(grid.path) as picture:
        assert picture.size == (grid.width, grid.height) and grid.width >= 2 * 112
    assert link_terms("rgap beats idlg, not big", {"rgap": "g-rgap", "ig": "g-ig"}).count("<a ") == 1


# --------------------------------------------------------------------------- in a real browser
@pytest.mark.parametrize("width", [420, 1280])
def test_page_never_scrolls_sideways_in_a_browser(page, width):
    from gradleak.report.browser import find_browser, measure_layout

    if find_browser() is None:
        pytest.skip("no headless chromium (apt-get install chromium-headless-shell, or set $GRADLEAK_BROWSER)")
    out, _ = page
    layout = measure_layout(out / "report.html", width=width)
    assert layout.viewport == width
    assert layout.fits, (layout.scroll_width, layout.overflowing)


def test_docs_hold_the_default_reports_screenshots_at_desktop_and_phone_width():
    from PIL import Image

    for width in (1280, 420):
        with Image.open(ROOT / "docs" / f"report-{width}.png") as shot:
            assert shot.width == width and shot.height > 2000
