import os
from pathlib import Path

import pytest

# Two busy cores: more torch threads only slow tests down.
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is part of the test install
    pass

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API in tests


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes media into its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RFSTUDIO_MODELS_DIR = tmp_path / "models"
    settings.RFSTUDIO_CACHE_DIR = tmp_path / "cache"
    settings.JOBS_WORK_DIR = str(tmp_path / "jobs")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters (DRF keeps them in the cache) never leak from one test to the next."""
    from django.core.cache import cache

    cache.clear()


# --- Playwright (browser tests in any folder): one Debian chromium per session, a context per test.
# Defined here once: a copy imported into a test module would start a second session-scoped
# Playwright that outlives the module and breaks every later browser test.
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
