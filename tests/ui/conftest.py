"""Playwright fixtures for the UI tests: one Debian chromium per session, a context per test."""

import os
from pathlib import Path

import pytest

# CI exports RFSTUDIO_CHROMIUM (and CI): there a missing browser FAILS the browser tests, so the
# suite cannot go green without them; on a developer machine without chromium they skip.
CHROMIUM = os.environ.get("RFSTUDIO_CHROMIUM") or "/usr/bin/chromium"
BROWSER_REQUIRED = bool(os.environ.get("RFSTUDIO_CHROMIUM") or os.environ.get("CI"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots for looking at the layout (kept after the run; not asserted on).
SHOTS_DIR = Path(os.environ.get("RFSTUDIO_UI_SHOTS", "/tmp/rfstudio-ui-shots"))


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if BROWSER_REQUIRED:
            pytest.fail(f"{CHROMIUM} is not installed (RFSTUDIO_CHROMIUM/CI require the browser)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(width=1440, height=900):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def login(live_server):
    from tests.factories import PASSWORD

    def do(page, user, password=PASSWORD):
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        return page

    return do


@pytest.fixture
def shots_dir():
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)
    return SHOTS_DIR
