"""Reads for pages, API and admin."""

from __future__ import annotations

import datetime
from collections import defaultdict

from django.db.models import Count
from django.utils import timezone

from .kinds import QUEUES
from .models import Job, JobMetric, JobStatus, Worker


def job_list(*, status: str | None = None, kind: str | None = None, limit: int = 100):
    qs = Job.objects.select_related("requested_by")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    return qs[:limit]


def queue_depths() -> dict[str, dict[str, int]]:
    """Queued and running jobs per queue (from the Job table, so it reads the same with any
    task backend)."""
    depths = {q: {"queued": 0, "running": 0} for q in QUEUES}
    rows = (
        Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .values("queue", "status")
        .annotate(n=Count("id"))
    )
    for row in rows:
        depths.setdefault(row["queue"], {"queued": 0, "running": 0})[row["status"]] = row["n"]
    return depths


def recent_workers(*, within_seconds: int = 600):
    since = timezone.now() - datetime.timedelta(seconds=within_seconds)
    return Worker.objects.filter(last_seen__gte=since).select_related("current_job")


def metric_series(*, job: Job, max_points: int = 400) -> dict[str, list[tuple[int, float]]]:
    """{name: [(step, value), ...]} for charts, downsampled by striding to at most max_points
    (the last point is always kept)."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, step, value in (
        JobMetric.objects.filter(job=job)
        .order_by("name", "step", "id")
        .values_list("name", "step", "value")
    ):
        series[name].append((step, value))
    out = {}
    for name, points in series.items():
        if len(points) > max_points:
            stride = -(-len(points) // max_points)
            points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
        out[name] = points
    return out


def latest_metrics(*, job: Job) -> dict[str, float]:
    latest = {}
    for name, value in (
        JobMetric.objects.filter(job=job)
        .order_by("name", "step", "id")
        .values_list("name", "value")
    ):
        latest[name] = value
    return latest


def eta_seconds(job: Job) -> float | None:
    if job.eta_at is None or job.is_finished:
        return None
    return max(0.0, (job.eta_at - timezone.now()).total_seconds())
