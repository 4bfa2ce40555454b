"""Jobs timing knobs, read from settings (JOBS_*) or the environment (RFSTUDIO_JOBS_*).

The sweeper declares a RUNNING job dead when its heartbeat is older than STALE_SECONDS; the
runner refreshes the heartbeat every HEARTBEAT_SECONDS from a background thread, so STALE must be
several heartbeats long (default 12x) or a merely slow database would get live jobs swept.
"""

import os

from django.conf import settings


def _number(name: str, default: float) -> float:
    value = getattr(settings, f"JOBS_{name}", None)
    if value is None:
        value = os.environ.get(f"RFSTUDIO_JOBS_{name}", default)
    return float(value)


def heartbeat_seconds() -> float:
    return _number("HEARTBEAT_SECONDS", 5.0)


def stale_seconds() -> float:
    return _number("STALE_SECONDS", 60.0)


def sweep_seconds() -> float:
    """How often a worker process sweeps for stale jobs."""
    return _number("SWEEP_SECONDS", 30.0)


def flush_seconds() -> float:
    """Reporter throttle: progress/metrics/logs reach the database at most this often."""
    return _number("FLUSH_SECONDS", 1.0)


def log_lines() -> int:
    return int(_number("LOG_LINES", 500))


def work_root():
    from pathlib import Path

    return Path(
        getattr(settings, "JOBS_WORK_DIR", None)
        or os.environ.get("RFSTUDIO_JOBS_WORK_DIR")
        or Path(settings.VAR_DIR) / "jobs"
    )
