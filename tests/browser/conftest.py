"""Real headless Chromium (Debian's, driven by Playwright's async API) against the real app.

The app is served by pytest-aiohttp's `aiohttp_server` in the test's own event loop (STACK.md:
the sync pytest-playwright plugin breaks every pytest-aiohttp test after it). Without Chromium or
Playwright these tests skip with a message; in CI that is a failure instead.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import replace
from typing import Any, AsyncIterator

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import UnavailableService, require

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PUBLIC_URL = "http://127.0.0.1:8080"  # what inbound webhooks are signed against (GATEWAY_PUBLIC_URL)


def _missing() -> UnavailableService | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return UnavailableService("the playwright package is not installed (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return UnavailableService(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    missing = _missing()
    if missing is not None:
        require(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        await chromium.close()


@pytest.fixture
async def new_page(browser: Any) -> Any:
    """A page in a fresh browser context (its own cookies): one per person in a test."""

    async def make(locale: str = "en-US") -> Any:
        context = await browser.new_context(locale=locale)
        page = await context.new_page()
        page.set_default_timeout(10_000)
        return page

    return make


@pytest.fixture
def serve(aiohttp_server: Any, settings: Settings) -> Any:
    """Serve the real app (with its outbox worker) on a random port; returns the base URL."""

    async def start(*, run_worker: bool = True, **overrides: Any) -> str:
        app = create_app(replace(settings, public_url=PUBLIC_URL, **overrides), run_worker=run_worker,
                         own_database=False)
        server = await aiohttp_server(app)
        return str(server.make_url("")).rstrip("/")

    return start


async def sign_in(page: Any, base: str, address: str, password: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#address", address)
    await page.fill("#password", password)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_load_state()
