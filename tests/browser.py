"""Headless Chromium for tests: Playwright driving the system's Chromium (Debian's ``chromium`` package; never
``playwright install``), with everything a page logs that a test should fail on.

    from browser import chromium_page, require_chromium  # tests/ is on sys.path under pytest

    require_chromium()  # at module level: skip without Chromium, fail if OPTIK_REQUIRE_BROWSER=1
    with chromium_page() as (page, log):
        page.goto(Path("report.html").resolve().as_uri())
        assert not log.problems(), log.problems()
"""
from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

CHROMIUM_ENV = "OPTIK_CHROMIUM"          # path to a Chromium binary (default /usr/bin/chromium)
REQUIRE_ENV = "OPTIK_REQUIRE_BROWSER"    # "1": a missing browser fails the tests instead of skipping them (CI)
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str | None:
    """The Chromium to drive: ``$OPTIK_CHROMIUM``, else ``/usr/bin/chromium``; None if neither exists."""
    path = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    found = path if Path(path).is_file() else shutil.which(path)
    return found if found and os.access(found, os.X_OK) else None


def require_chromium() -> str:
    """Chromium's path and Playwright present, else skip the calling test module (fail with
    ``OPTIK_REQUIRE_BROWSER=1``, as CI sets it, so a broken CI image cannot pass by skipping)."""
    path = chromium_path()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path, why = None, "the Python package playwright is not installed (pip install playwright)"
    else:
        why = (f"no Chromium at ${CHROMIUM_ENV} or {DEFAULT_CHROMIUM} (apt-get install chromium, or set "
               f"{CHROMIUM_ENV}=/path/to/chromium)")
    if path is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {why}", pytrace=False)
        pytest.skip(f"browser tests skipped: {why}", allow_module_level=True)
    return path


@dataclass
class PageLog:
    """What went wrong while the page was open: console errors, uncaught exceptions, failed requests, and any
    request that left this machine (a page that should work offline must make none). Requests the page cancels
    itself (``net::ERR_ABORTED``: Gradio closes its event stream when a result is in) are kept apart."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    aborted_requests: list[str] = field(default_factory=list)  # cancelled by the page itself: not problems

    def problems(self) -> list[str]:
        return [*(f"console error: {m}" for m in self.console_errors),
                *(f"uncaught exception: {m}" for m in self.page_errors),
                *(f"failed request: {m}" for m in self.failed_requests),
                *(f"request off this machine: {m}" for m in self.external_requests)]


def _is_external(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS


@contextlib.contextmanager
def chromium_page(*, timeout_ms: float = 30_000, viewport: dict | None = None) -> Iterator[tuple]:
    """A fresh headless Chromium page and the :class:`PageLog` it fills; the browser is closed on exit.

    Args:
        timeout_ms: default timeout of every Playwright action and wait.
        viewport: ``{"width": ..., "height": ...}`` (default 1280 x 1600, tall enough for whole pages).
    """
    from playwright.sync_api import sync_playwright

    path = require_chromium()
    log = PageLog()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1280, "height": 1600})
            page.set_default_timeout(timeout_ms)
            page.on("console", lambda m: log.console_errors.append(f"{m.text} ({m.location.get('url', '')})")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: log.page_errors.append(str(e)))
            page.on("requestfailed", lambda r: (log.aborted_requests if r.failure == "net::ERR_ABORTED" else
                                                log.failed_requests).append(f"{r.method} {r.url}: {r.failure}"))
            page.on("request", lambda r: log.external_requests.append(r.url) if _is_external(r.url) else None)
            yield page, log
        finally:
            browser.close()
