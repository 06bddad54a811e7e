"""Open a report in a headless browser: screenshot it and collect console errors.

The reports promise to open anywhere, offline; this is how that promise is checked (the
acceptance test and ``scripts/screenshot_report.py``). It needs a Chromium binary (Debian:
``apt-get install chromium``); :func:`find_browser` returns None when there is none, and the
test then skips. ``GRADLEAK_BROWSER`` names a binary to use instead (Debian's
``chromium-headless-shell`` package is found on PATH too). Besides the browser's own console, :func:`external_references` lists every
``src``/``href`` that would leave the file (anything but ``data:`` URIs and ``#anchors``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ..errors import GradleakError

BROWSERS = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome", "google-chrome-stable")
ENV = "GRADLEAK_BROWSER"  # path or name of the browser binary to use
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-extensions", "--disable-sync", "--mute-audio", "--hide-scrollbars")
# A console message, "[pid:tid:date:INFO:CONSOLE:12] "text", source: url (12)". Chromium logs
# console.error at INFO too, so every console message counts: the reports have no scripts.
_CONSOLE = re.compile(r":CONSOLE(?::|\()\d+\)?\] \"(.*)\", source: (.*)$")
# With --v=1 every file the page loads is logged; anything but the report itself is a leak.
_LOADED = re.compile(r"FileURLLoader::Start: (\S+)")


@dataclass
class BrowserCheck:
    screenshot: Path  # the PNG written
    console_errors: list[str] = field(default_factory=list)  # console messages and failed loads
    external: list[str] = field(default_factory=list)  # references that would leave the file

    @property
    def ok(self) -> bool:
        return not self.console_errors and not self.external


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data") and value is not None:
                if not (value.startswith("data:") or value.startswith("#")):
                    self.found.append(f"<{tag} {name}={value[:80]}>")


def external_references(html: str) -> list[str]:
    """Every attribute reference in ``html`` that is neither a data: URI nor an in-page anchor."""
    parser = _References()
    parser.feed(html)
    found = parser.found
    found += [f"css url({m[:80]})" for m in re.findall(r"url\(\s*['\"]?([^)'\"]+)", html) if not m.startswith("data:")]
    found += [f"css @import {m[:80]}" for m in re.findall(r"@import\s+([^;]+);", html)]
    return found


def find_browser() -> str | None:
    """The browser named by ``$GRADLEAK_BROWSER``, else a Chromium-family browser on PATH, else None."""
    chosen = os.environ.get(ENV)
    if chosen:
        return shutil.which(chosen) or (chosen if os.access(chosen, os.X_OK) else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def check_report(html_path: str | Path, png_path: str | Path, *, width: int = 1200, height: int = 2400,
                 timeout: float = 120.0, browser: str | None = None) -> BrowserCheck:
    """Render ``html_path`` headless at ``width`` x ``height``, save a PNG, collect console errors."""
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    if not html_path.is_file():
        raise GradleakError(f"report {html_path} does not exist")
    browser = browser or find_browser()
    if browser is None:
        raise GradleakError(f"no headless browser found (tried {', '.join(BROWSERS)}); install chromium")
    with tempfile.TemporaryDirectory(prefix="gradleak-browser-") as profile:
        command = [browser, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=1",
                   f"--window-size={width},{height}", f"--screenshot={png_path}", html_path.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise GradleakError(f"the browser did not finish rendering {html_path} within {timeout:.0f} s") from None
    if done.returncode != 0 or not png_path.is_file():
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise GradleakError(f"the browser failed on {html_path} (exit {done.returncode}): {tail[0][:200]}")
    errors, loaded = [], []
    for line in done.stderr.splitlines():
        match = _CONSOLE.search(line)
        if match:
            errors.append(f"console: {match.group(1)} ({match.group(2)})")
        load = _LOADED.search(line)
        if load and load.group(1) != html_path.as_uri():
            loaded.append(f"loaded {load.group(1)}")
    return BrowserCheck(screenshot=png_path, console_errors=errors,
                        external=external_references(html_path.read_text(encoding="utf-8")) + loaded)


# Injected into a throw-away copy of the page only (the reports themselves carry no script): after
# everything loaded, the widths are written into the DOM, which --dump-dom then prints.
_MEASURE = ("<script>addEventListener('load',function(){var d=document.documentElement;"
            "var wide=[].slice.call(document.querySelectorAll('body *')).filter(function(e){"
            "var r=e.getBoundingClientRect();return r.right>innerWidth+0.5&&!e.closest('.scroll')})"
            ".slice(0,5).map(function(e){return e.tagName+'.'+e.className});"
            "var m=document.createElement('pre');m.id='gradleak-measure';m.textContent=JSON.stringify("
            "{scrollWidth:Math.max(d.scrollWidth,document.body.scrollWidth),scrollHeight:d.scrollHeight,"
            "viewport:innerWidth,overflowing:wide});"
            "document.body.appendChild(m)})</script>")


@dataclass(frozen=True)
class Layout:
    scroll_width: int  # the page's scroll width in CSS pixels: above the viewport, the page scrolls sideways
    viewport: int  # the window's inner width
    overflowing: list[str]  # up to 5 elements that stick out (outside any scrolling box)
    scroll_height: int = 0  # the page's full height in CSS pixels (a full-page screenshot's height)

    @property
    def fits(self) -> bool:
        return self.scroll_width <= self.viewport


def measure_layout(html_path: str | Path, *, width: int, height: int = 900, timeout: float = 120.0,
                   browser: str | None = None) -> Layout:
    """Open a copy of ``html_path`` with a measuring script at ``width`` px and read the page's scroll width."""
    html_path = Path(html_path).resolve()
    browser = browser or find_browser()
    if browser is None:
        raise GradleakError(f"no headless browser found (tried ${ENV}, {', '.join(BROWSERS)}); install chromium")
    page = html_path.read_text(encoding="utf-8")
    page = page.replace("</body>", _MEASURE + "</body>", 1) if "</body>" in page else page + _MEASURE
    with tempfile.TemporaryDirectory(prefix="gradleak-browser-") as tmp:
        copy = Path(tmp) / "measure.html"
        copy.write_text(page, encoding="utf-8")
        command = [browser, *FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
                   "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise GradleakError(f"the browser did not finish rendering {html_path} within {timeout:.0f} s") from None
    match = re.search(r'<pre id="gradleak-measure">(.*?)</pre>', done.stdout, re.S)
    if done.returncode != 0 or match is None:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise GradleakError(f"the browser did not measure {html_path} (exit {done.returncode}): {tail[0][:200]}")
    found = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return Layout(scroll_width=int(found["scrollWidth"]), viewport=int(found["viewport"]),
                  overflowing=list(found["overflowing"]), scroll_height=int(found.get("scrollHeight", 0)))
