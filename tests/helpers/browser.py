"""Test helpers: a real headless browser (Debian's Chromium, driven by Selenium), and pages to show it.

What a browser lets a page do is decided by the browser, not by a client library we write to
imitate it: the Origin it sends, the handshakes it gives up on. Tests that are about web pages
open them here. Debian's ``chromium`` and ``chromium-driver`` packages are needed
(``scripts/system-deps.sh`` installs them) and ``selenium`` (the ``dev`` extras); without them
:func:`browser` skips the test with the reason.

Typical use::

    with serve_page("<script>...</script>") as url, browser() as driver:
        driver.get(url)
        assert wait_for_title(driver, "done")
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import tempfile
import threading
from typing import Iterator, Optional

__all__ = ["CHROMIUM", "CHROMEDRIVER", "FLAGS", "browser", "serve_page", "missing"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: A quiet, self-contained browser: no sandbox (tests run as root), nothing fetched from outside.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def missing() -> Optional[str]:
    """Why no browser can be started here, or None.

    >>> missing() is None or "install" in missing()
    True
    """
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: install Debian's {package} (scripts/system-deps.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is missing: install earengine's dev extras (pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def browser(*, page_load_timeout_s: float = 20.0) -> Iterator[object]:
    """A headless Chromium with a fresh profile, as a Selenium WebDriver; closed and its profile
    removed on leaving. Skips the test (pytest.skip) when Chromium, its driver or Selenium is
    missing."""
    import pytest

    why = missing()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="earengine-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(page_load_timeout_s)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def serve_page(html: str, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve one HTML page from a port of its own on loopback (a page of another origin than any
    server under test); yields its URL.

    >>> import urllib.request
    >>> with serve_page("<p>hi</p>") as url:
    ...     urllib.request.urlopen(url, timeout=5).read()
    b'<p>hi</p>'
    """
    body = html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # the test's output stays its own
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Page)
    thread = threading.Thread(target=server.serve_forever, name="test-page", daemon=True)
    thread.start()
    try:
        yield "http://%s:%d/" % server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
