"""Media for code that needs local files (the image decoders and RFNet's data pipeline): a stored
file's local path, through the storage API only.

With the file system storage that is the file itself. With remote storage (DJANGO_STORAGE=s3) the
file is downloaded once into RFSTUDIO_CACHE_DIR/storage/<name> and reused: media names are
content-addressed (`creatives/ab/<sha256>.png`), so a cached copy can never be stale. The copy is
written under a temporary name and renamed, so concurrent workers on one host never read half a
file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from jobs.files import atomic_path


def local_path(name: str, *, storage=None) -> str | None:
    """Local path of the stored file `name`, or None when storage does not have it."""
    if not name:
        return None
    storage = storage or default_storage
    try:
        path = storage.path(name)
    except NotImplementedError:
        return _cached_copy(storage, name)
    if os.path.isfile(path):
        return path
    # Some backends answer .path() with a name that is no file (InMemoryStorage): read through
    # the storage API, which also tells a missing file (None).
    return _cached_copy(storage, name)


def _cached_copy(storage, name: str) -> str | None:
    root = Path(settings.RFSTUDIO_CACHE_DIR).resolve() / "storage"
    target = (root / name).resolve()
    if root not in target.parents:  # a name with '..' parts: never outside the cache
        return None
    if target.is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = storage.open(name, "rb")
    except FileNotFoundError:
        return None
    with src, atomic_path(target) as tmp, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    return str(target)
