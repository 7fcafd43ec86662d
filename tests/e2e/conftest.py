"""Fixtures of the browser tests: real daphne servers (tests/live.py) and real headless Chromium.

Chromium is Debian's package (``apt-get install chromium``), driven by Playwright for Python
through ``executable_path``: Playwright's own browser download is never used. Every page a test
opened is photographed at the end of the test into ``tests/e2e/artifacts/`` (look at them), and
an uncaught JavaScript error on any page fails the test.
"""

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests import live

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # as scripts/test.sh
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 800}

expect.set_options(timeout=15_000)


@pytest.fixture(autouse=True)
def stop_process_tasks() -> Iterator[None]:
    """Overrides tests/conftest.py's async fixture: these tests run the server in another process,
    and Playwright's sync API runs its own event loop in the test thread.
    """
    yield


@pytest.fixture
def start_server(started: live.Processes) -> Callable[..., live.Daphne]:
    """Start a daphne (tests/live.py) on a fresh SQLite database with extra settings (environment
    variables), alone on the in-memory layer as ``make run`` serves; stopped after the test."""

    def start(**settings: Any) -> live.Daphne:
        return started.daphne(started.sqlite(), **settings)

    return start


@pytest.fixture
def server(start_server: Callable[..., live.Daphne]) -> live.Daphne:
    return start_server()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh browser context (its own cookies and storage: one user per context),
    or, with ``tab_of``, another tab in that page's context (same cookies and localStorage)."""
    opened: list[tuple[Any, Page, list[str]]] = []

    def open_page(viewport: dict[str, int] = PHONE, tab_of: Page | None = None) -> Page:
        context = tab_of.context if tab_of is not None else browser.new_context(viewport=viewport)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # What the Content-Security-Policy refused (an inline style or script) fails the test too.
        page.on(
            "console",
            lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None,
        )
        opened.append((context, page, errors))
        return page

    yield open_page
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    for index, (_, page, _) in enumerate(opened, start=1):
        if not page.is_closed():
            page.screenshot(path=ARTIFACTS / f"{name}-{index}.png", full_page=True)
    for context in {id(context): context for context, _, _ in opened}.values():
        context.close()
    uncaught = [error for _, _, errors in opened for error in errors]
    assert not uncaught, f"uncaught JavaScript errors or CSP refusals: {uncaught}"
