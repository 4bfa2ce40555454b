"""Job pages for staff and ML engineers: list (/jobs/) and live detail (/jobs/<id>/, polled with
htmx every 2 s until the job finishes)."""

import json
from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.charts import metric_charts
from core.policy import can_manage_jobs, rule

from . import selectors, services
from .models import Job, JobArtifact, JobStatus

_READ = "Jobs are visible to staff, ML engineers and QA only."
_MANAGE = "Only ML engineers may cancel or retry jobs."


@rule("jobs_read", message=_READ)
def job_list(request):
    status = request.GET.get("status") or None
    if status not in (None, *JobStatus.values):
        status = None  # an unknown filter shows everything rather than nothing
    kind = (request.GET.get("kind") or "")[:100] or None
    context = {
        "jobs": selectors.job_list(status=status, kind=kind),
        "depths": selectors.queue_depths(),
        "workers": selectors.recent_workers(),
        "statuses": JobStatus.choices,
        "status": status,
        "kind": kind,
    }
    return render(request, "jobs/job_list.html", context)


def _display_value(value) -> str:
    """Parameters and results as people read them, not as Python reprs."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return str(value)


def _rows(data) -> list[tuple[str, str]]:
    if not isinstance(data, dict):
        return [("value", _display_value(data))] if data not in (None, "") else []
    return [(str(k), _display_value(v)) for k, v in data.items()]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _detail_context(request, job: Job) -> dict:
    series = selectors.metric_series(job=job)
    eta = selectors.eta_seconds(job)
    ran = None
    if job.started_at:
        ran = ((job.finished_at or timezone.now()) - job.started_at) / timedelta(seconds=1)
    return {
        "job": job,
        "eta": eta,
        "eta_text": _duration(eta),
        "ran_text": _duration(ran),
        "charts": metric_charts(series),
        "param_rows": _rows(job.params),
        "result_rows": _rows(job.result),
        "artifacts": list(job.artifacts.all()),
        "log_tail": (job.log_lines or [])[-50:],
        "can_manage": can_manage_jobs(request.user),
        "percent": round(job.fraction * 100, 1) if job.fraction is not None else None,
        "retryable": job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED),
    }


@rule("jobs_read", message=_READ)
def job_detail(request, job_id: int):
    job = get_object_or_404(Job.objects.select_related("requested_by", "input_type"), pk=job_id)
    context = _detail_context(request, job)
    if request.htmx:
        return render(request, "jobs/job_detail.html#status", context)
    return render(request, "jobs/job_detail.html", context)


@rule("jobs_read", message=_READ)
def job_status(request, job_id: int):
    """The polled partial (also usable without htmx)."""
    job = get_object_or_404(Job.objects.select_related("requested_by", "input_type"), pk=job_id)
    return render(request, "jobs/job_detail.html#status", _detail_context(request, job))


@require_POST
@rule("jobs_manage", message=_MANAGE)
def job_cancel(request, job_id: int):
    get_object_or_404(Job, pk=job_id)
    job = services.cancel_job(job_id=job_id, by=request.user)
    messages.info(request, f"Job #{job.pk}: cancel {'done' if job.is_finished else 'requested'}.")
    return redirect(job.get_absolute_url())


@require_POST
@rule("jobs_manage", message=_MANAGE)
def job_retry(request, job_id: int):
    get_object_or_404(Job, pk=job_id)
    try:
        job = services.retry_job(job_id=job_id, by=request.user)
        messages.info(request, f"Job #{job.pk} queued again as attempt {job.attempt}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(f"/jobs/{job_id}/")


@rule("jobs_read", message=_READ)
def artifact_download(request, job_id: int, artifact_id: int):
    art = get_object_or_404(JobArtifact, pk=artifact_id, job_id=job_id)
    try:
        fh = art.file.open("rb")
    except FileNotFoundError:
        raise Http404("Artifact file is missing from storage.")
    return FileResponse(fh, as_attachment=True, filename=art.name.rsplit("/", 1)[-1])
