import os

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
