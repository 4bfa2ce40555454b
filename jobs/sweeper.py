"""Finds RUNNING jobs whose worker died (heartbeat older than JOBS_STALE_SECONDS) and hands them to
services.interrupt_stale_job. Run by every worker process (at job start, from the runner's heartbeat
thread, and from an idle background thread started in worker processes), and by `sweep_jobs`."""

from __future__ import annotations

import datetime
import logging
import sys
import threading
import time

from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from . import conf

logger = logging.getLogger("jobs")

_last_sweep = 0.0
_lock = threading.Lock()


def sweep_stale_jobs(*, stale_seconds: float | None = None) -> dict[int, str]:
    """Returns {job_id: new status} for the jobs it handled."""
    from . import services
    from .models import Job, JobStatus

    stale = conf.stale_seconds() if stale_seconds is None else stale_seconds
    cutoff = timezone.now() - datetime.timedelta(seconds=stale)
    candidates = list(
        Job.objects.filter(status=JobStatus.RUNNING)
        .filter(
            Q(heartbeat_at__lt=cutoff)
            | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
            | Q(heartbeat_at__isnull=True, started_at__isnull=True)
        )
        .values_list("pk", flat=True)
    )
    handled = {}
    for job_id in candidates:
        status = services.interrupt_stale_job(job_id=job_id, cutoff=cutoff)
        if status:
            handled[job_id] = status
    return handled


def maybe_sweep() -> None:
    """Sweep at most once per JOBS_SWEEP_SECONDS in this process; never raises."""
    global _last_sweep
    now = time.monotonic()
    with _lock:
        if now - _last_sweep < conf.sweep_seconds():
            return
        _last_sweep = now
    try:
        sweep_stale_jobs()
    except Exception:
        logger.exception("stale-job sweep failed")


def _worker_id_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("--worker-id", "--name") and i + 1 < len(argv):
            return argv[i + 1]
        for flag in ("--worker-id=", "--name="):
            if arg.startswith(flag):
                return arg[len(flag) :]
    return None


def _idle_loop(worker_id: str | None) -> None:
    from . import services

    while True:
        time.sleep(max(1.0, min(conf.sweep_seconds(), conf.heartbeat_seconds() * 2)))
        try:
            close_old_connections()
            maybe_sweep()
            if worker_id:
                services.touch_worker(worker_id=worker_id, idle=True)
        except Exception:
            logger.exception("idle worker heartbeat failed")
        finally:
            connection.close()


_started = False


def start_in_worker_process(argv: list[str] | None = None) -> bool:
    """Called from JobsConfig.ready(): in a `db_worker`/`rqworker` process, start a daemon thread
    that sweeps periodically even when the worker is idle - that is what lets a fresh worker pick
    up a job whose previous worker was SIGKILLed."""
    import os

    global _started
    argv = sys.argv if argv is None else argv
    if _started or len(argv) < 2 or argv[1] not in ("db_worker", "rqworker"):
        return False
    # Under db_worker's autoreloader only the child (RUN_MAIN=true) runs tasks.
    reload_flag = "--no-reload" not in argv and ("--reload" in argv or _debug())
    if argv[1] == "db_worker" and reload_flag and os.environ.get("RUN_MAIN") != "true":
        return False
    _started = True
    threading.Thread(
        target=_idle_loop, args=(_worker_id_from_argv(argv),), name="jobs-sweeper", daemon=True
    ).start()
    return True


def _debug() -> bool:
    from django.conf import settings

    return bool(settings.DEBUG)
