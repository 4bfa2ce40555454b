"""The reporter ML code receives: `progress(step, total=None, phase=None)`, `metric(name, value,
step=None)`, `log(message)`. Calls are cheap in-memory updates; the database sees them at most
every JOBS_FLUSH_SECONDS (and at phase changes and the end), so a 10k-step loop does not hammer it.
Each flush also refreshes the heartbeat and checks for a cancel request, raising `Cancelled`.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger("jobs")


class Cancelled(Exception):
    """Raised inside the job at the next report after a cancel request (or after the job stopped
    being this attempt's, e.g. swept as stale). Let it propagate; the runner marks the job."""


class NullReporter:
    """Same three methods, does nothing: for tests and command-line use of ML code."""

    def progress(self, step, total=None, phase=None) -> None:
        pass

    def metric(self, name, value, step=None) -> None:
        pass

    def log(self, message) -> None:
        pass


class JobReporter:
    def __init__(
        self,
        *,
        job_id: int,
        attempt: int,
        flush_seconds: float = 1.0,
        log_limit: int = 500,
        initial_log: list[str] | None = None,
        start_step: int = 0,
        total: int | None = None,
        phase: str = "",
        on_flush: Callable[[JobReporter], None] | None = None,
    ):
        self.job_id = job_id
        self.attempt = attempt
        self.flush_seconds = flush_seconds
        self.step = start_step
        self.total = total
        self.phase = phase
        self.eta_seconds: float | None = None
        self.cancel_event = threading.Event()  # also set by the runner's heartbeat thread
        self.lost = False
        self.on_flush = on_flush
        self._lines: deque[str] = deque(initial_log or [], maxlen=log_limit)
        self._metrics: list[tuple[str, int, float]] = []
        self._log_dirty = False
        self._progress_dirty = False
        self._last_flush = time.monotonic()
        self._eta_base: tuple[float, int] | None = None
        self.last_metrics: dict[str, float] = {}
        self.closed = False

    # --- the duck-typed interface ---------------------------------------------------------------
    def progress(self, step, total=None, phase=None) -> None:
        step = int(step)
        force = False
        if phase is not None and phase != self.phase:
            self.phase = str(phase)[:200]
            self._eta_base = None
            force = True
        if total is not None:
            total = int(total)
            if total != self.total:
                self.total = total
                self._eta_base = None
        now = time.monotonic()
        if self._eta_base is None or step < self._eta_base[1]:
            self._eta_base = (now, step)
        self.step = step
        self._progress_dirty = True
        if self.total is not None and step >= self.total:
            force = True
        self._tick(now, force)

    def metric(self, name, value, step=None) -> None:
        value = float(value)
        self._metrics.append((str(name)[:100], self.step if step is None else int(step), value))
        self.last_metrics[str(name)] = value
        self._tick(time.monotonic(), False)

    def log(self, message) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        for line in str(message).splitlines() or [""]:
            self._lines.append(f"{stamp} {line}"[:1000])
        self._log_dirty = True
        logger.info("job %s: %s", self.job_id, message)
        self._tick(time.monotonic(), False)

    # --- flushing --------------------------------------------------------------------------------
    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    def _tick(self, now: float, force: bool) -> None:
        if self.cancel_event.is_set():
            self.flush()
            raise Cancelled(f"job {self.job_id} was cancelled")
        if force or now - self._last_flush >= self.flush_seconds:
            self.flush()
            if self.cancel_event.is_set():
                raise Cancelled(f"job {self.job_id} was cancelled")

    def _eta(self, now: float) -> float | None:
        if self.total is None or self._eta_base is None:
            return None
        t0, s0 = self._eta_base
        done = self.step - s0
        if done <= 0 or now - t0 < 0.5:
            return None
        return max(0.0, (self.total - self.step) * (now - t0) / done)

    def flush(self) -> None:
        """Write pending state in one short transaction; note a cancel request if there is one."""
        from django.db import transaction
        from django.utils import timezone

        from .models import Job, JobStatus

        now_m = time.monotonic()
        self._last_flush = now_m
        self.eta_seconds = self._eta(now_m)
        now = timezone.now()
        fields: dict = {"heartbeat_at": now}
        if self._progress_dirty:
            eta_at = (
                now + datetime.timedelta(seconds=self.eta_seconds)
                if self.eta_seconds is not None
                else None
            )
            fields.update(step=self.step, total=self.total, phase=self.phase, eta_at=eta_at)
        if self._log_dirty:
            fields["log_lines"] = list(self._lines)
        metrics, self._metrics = self._metrics, []
        mine = Job.objects.filter(pk=self.job_id, attempt=self.attempt, status=JobStatus.RUNNING)
        with transaction.atomic():
            updated = mine.update(**fields)
            if updated and metrics:
                _insert_metrics(self.job_id, self.attempt, metrics)
        self._progress_dirty = self._log_dirty = False
        if not updated:
            # Swept as stale or finished elsewhere: this attempt no longer owns the job.
            self.lost = True
            self.cancel_event.set()
        elif Job.objects.filter(pk=self.job_id, cancel_requested_at__isnull=False).exists():
            self.cancel_event.set()
        if self.on_flush is not None:
            self.on_flush(self)

    def close(self) -> None:
        """Final flush (never raises Cancelled)."""
        if not self.closed:
            self.closed = True
            if self._progress_dirty or self._log_dirty or self._metrics:
                self.flush()


def _insert_metrics(job_id: int, attempt: int, metrics: list[tuple[str, int, float]]) -> None:
    """One executemany per flush: building a model instance per point cost ~50x more than the
    training step it measured (bench/jobs.py)."""
    from django.db import connection

    from .models import JobMetric

    table = connection.ops.quote_name(JobMetric._meta.db_table)
    sql = f"INSERT INTO {table} (job_id, name, step, value, attempt) VALUES (%s, %s, %s, %s, %s)"
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(job_id, n, s, v, attempt) for n, s, v in metrics])
