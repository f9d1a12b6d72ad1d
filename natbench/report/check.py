"""Open every page of a report in headless Chromium and list what is broken (images, links).

Talks the Chrome DevTools Protocol over --remote-debugging-pipe (JSON messages ending in NUL on fds 3/4),
so it needs nothing but the chromium binary.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]
# what a page holds once its load event fired (images included)
INSPECT_JS = """JSON.stringify({
  title: document.title,
  images: [...document.images].map(i => ({src: i.src, complete: i.complete, naturalWidth: i.naturalWidth})),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
})"""


class ChromiumUnavailable(RuntimeError):
    pass


def find_chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumUnavailable("no chromium binary on PATH; install it (Debian: apt-get install -y chromium)")


class _Pipe:
    """A minimal CDP client: one browser, commands sent and answered in order."""

    def __init__(self, binary: str, timeout: float):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="natbench-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds():  # chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=wire_fds,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method} failed: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method: str, session: str) -> None:
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    del self._events[i]
                    return
            self._events.append(self._read())

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout} s")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (did it crash?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._profile.cleanup()


def inspect_pages(site: str | Path, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """page file name -> {title, images: [{src, complete, naturalWidth}], links: [absolute hrefs]}."""
    site = Path(site).resolve()
    pages = sorted(site.glob("*.html"))
    if not pages:
        raise FileNotFoundError(f"{site} has no .html pages; build it with natbench report first")
    browser = _Pipe(find_chromium(), timeout)
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.send("Page.enable", session)
        found = {}
        for page in pages:
            browser.send("Page.navigate", session, url=page.as_uri())
            browser.wait_event("Page.loadEventFired", session)
            result = browser.send("Runtime.evaluate", session, expression=INSPECT_JS, returnByValue=True)
            found[page.name] = json.loads(result["result"]["value"])
        return found
    finally:
        browser.close()


def check_site(site: str | Path, timeout: float = 30.0) -> list[str]:
    """Problems found: images that did not load and links to files that do not exist (empty list: all good)."""
    problems = []
    for page, found in inspect_pages(site, timeout).items():
        for img in found["images"]:
            if not img["complete"] or img["naturalWidth"] <= 0:
                problems.append(f"{page}: image {img['src']} did not load")
        for href in found["links"]:
            url = urlparse(href)
            if url.scheme != "file":
                problems.append(f"{page}: link {href} leaves the site (cannot be checked offline)")
            elif not Path(unquote(url.path)).exists():
                problems.append(f"{page}: link {href} points to a missing file")
    return problems
