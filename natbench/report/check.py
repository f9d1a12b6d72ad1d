"""Open every page of a report in headless Chromium (selenium + chromedriver) and list what is broken.

Needs Debian's `chromium` and `chromium-driver` packages (or any chromium with its matching chromedriver
on PATH); selenium is told where both are, so it never tries to download a driver.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
# what a page holds once it loaded (selenium's get() waits for the load event, images included)
INSPECT_JS = """return {
  title: document.title,
  images: [...document.images].map(i => ({src: i.src, complete: i.complete, naturalWidth: i.naturalWidth})),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
}"""


class ChromiumUnavailable(RuntimeError):
    pass


def _which(names: tuple[str, ...], what: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumUnavailable(
        f"no {what} on PATH; install it (Debian: apt-get install -y chromium chromium-driver)"
    )


def find_chromium() -> str:
    return _which(BROWSERS, "chromium binary")


@contextmanager
def browser(timeout: float = 30.0, width: int = 1280, height: int = 1000):
    """A headless Chromium driven by selenium, closed on exit."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise ChromiumUnavailable(f"selenium is not installed ({exc}); pip install selenium") from None
    options = webdriver.ChromeOptions()
    options.binary_location = find_chromium()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    with tempfile.TemporaryDirectory(prefix="natbench-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(_which(DRIVERS, "chromedriver")))
        try:
            driver.set_page_load_timeout(timeout)
            yield driver
        finally:
            driver.quit()


def _pages(site: str | Path) -> list[Path]:
    pages = sorted(Path(site).resolve().glob("*.html"))
    if not pages:
        raise FileNotFoundError(f"{site} has no .html pages; build it with natbench report first")
    return pages


def inspect_pages(site: str | Path, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """page file name -> {title, images: [{src, complete, naturalWidth}], links: [absolute hrefs]}."""
    pages = _pages(site)
    found = {}
    with browser(timeout) as driver:
        for page in pages:
            driver.get(page.as_uri())
            found[page.name] = driver.execute_script(INSPECT_JS)
    return found


def screenshot(site: str | Path, page: str, path: str | Path, timeout: float = 30.0) -> Path:
    """A PNG of one report page as headless Chromium draws it (the whole page height)."""
    uri = (Path(site).resolve() / page).as_uri()
    with browser(timeout) as driver:
        driver.get(uri)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(int(height) + 100, 600), 8000))
        driver.get_screenshot_as_file(str(path))
    return Path(path)


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
