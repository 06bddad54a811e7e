"""Open a report in a headless browser: screenshot it and collect console errors.

The reports promise to open anywhere, offline; this is how that promise is checked (the
acceptance test and ``scripts/screenshot_report.py``). It needs a Chromium binary (Debian:
``apt-get install chromium``); :func:`find_browser` returns None when there is none, and the
test then skips. Besides the browser's own console, :func:`external_references` lists every
``src``/``href`` that would leave the file (anything but ``data:`` URIs and ``#anchors``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ..errors import GradleakError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
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
    """Path of a Chromium-family browser on PATH, or None."""
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
