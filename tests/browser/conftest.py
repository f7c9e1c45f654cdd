"""Real headless Chromium (Debian's, `make test-browser` installs it) driven by Playwright,
against `continuity run` on a fresh schema of the test database.

These tests are `make test-browser`, a CI stage of its own after `make test`: a missing
browser fails them, loudly, rather than skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, ViewportSize, sync_playwright

from tests.continuity.test_cli import drop_schema
from tests.server import running_server, server_env

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: the CI machine's network is closed
    "--disable-component-update",
    "--disable-sync",
]
TABLET = ViewportSize(width=1024, height=768)
SCREENSHOTS = Path(os.environ.get("CONTINUITY_SCREENSHOTS", "build/screenshots"))


def chromium_path() -> str:
    found = os.environ.get("CONTINUITY_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail("no Chromium: `make test-browser` installs Debian's chromium package")
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookie or storage carried over."""
    fresh = browser.new_context(viewport=TABLET, accept_downloads=True)
    yield fresh
    fresh.close()


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of one `continuity run` for the whole browser suite."""
    schema = f"test_browser_{uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("browser-server")
    env = server_env(database_url, schema, folder / "data", log_level="WARNING", sse_keepalive="2")
    try:
        with running_server(env, folder / "server.log") as base:
            yield base
    finally:
        with ThreadPoolExecutor(1) as pool:  # Playwright's event loop runs on this thread
            pool.submit(drop_schema, database_url, schema).result()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
