"""Atomic file writes (no Django: ML code can import it). A reader - or a resumed job - sees the
old file or the complete new one, never a partial write: data goes to a temporary name in the same
folder, is fsynced, then renamed over the target (rename is atomic within one filesystem)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows fsync on a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_save(target: str | os.PathLike, data: bytes | str | Callable[[Path], None]) -> Path:
    """Write bytes/str, or call `data(tmp_path)` (e.g. `lambda p: torch.save(state, p)`),
    then rename onto `target`."""
    with atomic_path(target) as tmp:
        if callable(data):
            data(tmp)
        elif isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
    return Path(target)


@contextlib.contextmanager
def atomic_write_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; on success it becomes `target`.

    An existing `target` is moved aside first and removed after the swap, so at every moment the
    name points at a complete folder (or, for an instant between two renames, at nothing - readers
    treat a missing folder as "no checkpoint yet", never as a corrupt one).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_copy(source: str | os.PathLike, root: str | os.PathLike) -> Iterator[Path]:
    """Copy folder `source` into a hidden staging folder under `root` (the filesystem of its
    final place, so installing it is one rename: `install_staged`); removed unless installed."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{uuid.uuid4().hex}"
    shutil.copytree(source, staging)
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def install_staged(staging: Path, name: str) -> Path:
    """Rename `staging` to `<root>/<name>`, inside the database transaction that records it. A
    folder already there was left by an attempt whose transaction rolled back: moved aside."""
    final = staging.parent / name
    if final.exists():
        final.rename(staging.parent / f".stale-{name}-{uuid.uuid4().hex[:8]}")
    staging.rename(final)
    return final
