"""Every write to jobs. Keyword-only functions that own their transaction.

State transitions lock the job row (select_for_update; on SQLite the IMMEDIATE transaction mode
serialises writers instead) and re-check the state they expect, so the web process, the worker and
the sweeper can race without double transitions. See docs/jobs.md, "Concurrency".
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import traceback as tb
from pathlib import Path

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import conf
from .kinds import get_kind
from .models import Job, JobArtifact, JobStatus, Worker
from .params import clean_params

logger = logging.getLogger("jobs")


def _stamp(message: str) -> str:
    return f"{timezone.now():%H:%M:%S} {message}"


def _append_log(job: Job, message: str) -> None:
    job.log_lines = [*(job.log_lines or []), _stamp(message)][-conf.log_lines() :]


def _backend_shares_database() -> bool:
    from .tasks_api import task_backends

    return type(task_backends["default"]).__module__.startswith("django_tasks_db")


def _dispatch(job: Job) -> None:
    """Hand (job, attempt) to the task backend. The database backend writes its task row in our
    transaction, so job and task commit together; other backends (Redis) get the task after
    commit, so a worker never sees a task whose job row is not visible yet."""
    from .tasks import run_job

    task = run_job.using(queue_name=job.queue)
    job_id, attempt = job.pk, job.attempt

    def send() -> None:
        result = task.enqueue(job_id, attempt)
        job.task_result_id = str(result.id)
        Job.objects.filter(pk=job_id, attempt=attempt).update(task_result_id=job.task_result_id)

    if _backend_shares_database():
        send()
    else:
        transaction.on_commit(send)


def enqueue_job(
    *,
    kind: str,
    params: dict | None,
    requested_by=None,
    idempotency_key: str | None = None,
    inputs: dict | None = None,
    input_object=None,
    dispatch: bool = True,
) -> Job:
    """Validate `params` with the kind's form and enqueue. Raises ValidationError (nothing is
    written). With `idempotency_key`, a second call returns the first job."""
    job_kind = get_kind(kind)
    key = (idempotency_key or "").strip() or None
    if key:
        existing = Job.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return _same_kind(existing, kind)
    cleaned, json_params = clean_params(job_kind, params)
    if job_kind.lineage is not None:
        derived, derived_object = job_kind.lineage(cleaned)
        inputs = {**derived, **(inputs or {})}
        input_object = input_object if input_object is not None else derived_object
    user = requested_by if getattr(requested_by, "is_authenticated", False) else None
    job = Job(
        kind=kind,
        queue=job_kind.queue,
        params=json_params,
        requested_by=user,
        idempotency_key=key,
        max_attempts=job_kind.max_attempts,
        inputs=inputs or {},
    )
    if input_object is not None:
        job.input_type = ContentType.objects.get_for_model(input_object)
        job.input_id = str(input_object.pk)
    _append_log(job, f"queued on {job.queue} by {getattr(user, 'username', None) or 'system'}")
    try:
        with transaction.atomic():
            job.save()
            if dispatch:
                _dispatch(job)
    except IntegrityError:
        if key:  # the other click won the race
            return _same_kind(Job.objects.get(idempotency_key=key), kind)
        raise
    return job


def _same_kind(job: Job, kind: str) -> Job:
    if job.kind != kind:
        raise ValidationError(
            f"Idempotency key already used by job #{job.pk} ({job.kind}).", code="key_reused"
        )
    return job


def cancel_job(*, job_id: int, by=None) -> Job:
    """Queued: cancelled at once (the worker skips its task). Running: cancel requested; the job
    sees it at its next report and stops. Finished: unchanged."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        who = getattr(by, "username", None) or "system"
        if job.status == JobStatus.QUEUED:
            job.status = JobStatus.CANCELLED
            job.cancel_requested_at = job.finished_at = timezone.now()
            _append_log(job, f"cancelled by {who} before it started")
            job.save()
        elif job.status == JobStatus.RUNNING and job.cancel_requested_at is None:
            job.cancel_requested_at = timezone.now()
            _append_log(job, f"cancel requested by {who}")
            job.save(update_fields=["cancel_requested_at", "log_lines", "updated_at"])
    return job


def retry_job(*, job_id: int, by=None) -> Job:
    """Run a failed, cancelled or interrupted job again as its next attempt (same work_dir, so a
    resumable kind continues from its last checkpoint)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED):
            raise ValidationError(
                f"Job #{job.pk} is {job.status}; only finished, unsuccessful jobs can be retried.",
                code="not_retryable",
            )
        _requeue(job, f"retried by {getattr(by, 'username', None) or 'system'}")
        job.max_attempts = max(job.max_attempts, job.attempt)
        job.save()
        _dispatch(job)
    return job


def _requeue(job: Job, why: str) -> None:
    job.attempt += 1
    job.status = JobStatus.QUEUED
    job.cancel_requested_at = None
    job.finished_at = None
    job.worker_id = ""
    job.heartbeat_at = None
    job.task_result_id = ""
    _append_log(job, f"{why}; queued as attempt {job.attempt}")


# --- worker side ------------------------------------------------------------------------------
def touch_worker(*, worker_id: str, device: str = "", current_job_id=None, idle=False) -> None:
    from .tasks_api import task_backends

    defaults = {
        "hostname": socket.gethostname()[:200],
        "pid": os.getpid(),
        "last_seen": timezone.now(),
        "backend": type(task_backends["default"]).__name__[:32],
    }
    if device:
        defaults["device"] = device[:200]
    if not idle:
        defaults["current_job_id"] = current_job_id
    # IntegrityError: two threads of one worker creating the row at once; the other one won.
    with contextlib.suppress(IntegrityError):
        Worker.objects.update_or_create(worker_id=worker_id[:64], defaults=defaults)


def start_attempt(*, job_id: int, attempt: int, worker_id: str, device: str) -> Job | None:
    """Claim (job, attempt) for this worker. None when the task is stale: the job was cancelled
    while queued, already ran, or was re-enqueued as a later attempt."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.attempt != attempt or job.status != JobStatus.QUEUED:
            logger.info("job %s attempt %s: nothing to run (skipped)", job_id, attempt)
            return None
        now = timezone.now()
        job.status = JobStatus.RUNNING
        job.worker_id = worker_id[:64]
        job.device = device[:100]
        job.heartbeat_at = now
        job.started_at = job.started_at or now
        job.error = job.traceback = ""
        _append_log(job, f"attempt {attempt}/{job.max_attempts} started on {worker_id} ({device})")
        job.save()
    touch_worker(worker_id=worker_id, device=device, current_job_id=job_id)
    return job


def _owned(job_id: int, attempt: int):
    return (
        Job.objects.select_for_update()
        .filter(pk=job_id, attempt=attempt, status=JobStatus.RUNNING)
        .first()
    )


def finish_succeeded(*, job_id: int, attempt: int, result: dict | None, log_lines=None) -> bool:
    with transaction.atomic():
        job = _owned(job_id, attempt)
        if job is None:
            return False
        job.status = JobStatus.SUCCEEDED
        job.result = result
        job.finished_at = timezone.now()
        job.eta_at = None
        if job.total:
            job.step = max(job.step, job.total)
        if log_lines is not None:
            job.log_lines = log_lines
        _append_log(job, "succeeded")
        job.save()
    return True


def finish_cancelled(
    *, job_id: int, attempt: int, log_lines=None, why: str = "stopped after cancel request"
) -> bool:
    with transaction.atomic():
        job = _owned(job_id, attempt)
        if job is None:
            return False
        job.status = JobStatus.CANCELLED
        job.finished_at = timezone.now()
        job.eta_at = None
        if log_lines is not None:
            job.log_lines = log_lines
        _append_log(job, why)
        job.save()
    return True


def finish_failed(
    *, job_id: int, attempt: int, exc: BaseException, log_lines=None, dispatch=True
) -> str | None:
    """Failed attempt: re-queued while attempts remain (returns "queued"), else failed."""
    with transaction.atomic():
        job = _owned(job_id, attempt)
        if job is None:
            return None
        if log_lines is not None:
            job.log_lines = log_lines
        job.error = f"{type(exc).__name__}: {exc}"[:5000]
        job.traceback = "".join(tb.format_exception(exc))[-20000:]
        job.eta_at = None
        if job.attempt < job.max_attempts:
            _requeue(job, f"attempt {attempt} failed ({job.error[:200]})")
            job.save()
            if dispatch:
                _dispatch(job)
        else:
            job.status = JobStatus.FAILED
            job.finished_at = timezone.now()
            _append_log(job, f"failed: {job.error[:500]}")
            job.save()
        return job.status


def heartbeat(*, job_id: int, attempt: int) -> tuple[bool, bool]:
    """Refresh the heartbeat of a running attempt. Returns (still_owned, cancel_requested)."""
    owned = Job.objects.filter(pk=job_id, attempt=attempt, status=JobStatus.RUNNING).update(
        heartbeat_at=timezone.now()
    )
    if not owned:
        return False, False
    cancel = Job.objects.filter(pk=job_id, cancel_requested_at__isnull=False).exists()
    return True, cancel


def interrupt_stale_job(*, job_id: int, cutoff: datetime.datetime, dispatch=True) -> str | None:
    """Sweeper: a RUNNING job whose heartbeat is older than `cutoff` lost its worker. Mark it
    interrupted; a resumable kind with attempts left is queued again as its next attempt."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.RUNNING).first()
        # Re-check under the lock: the worker may have heartbeated since the candidate query.
        if job is None or (job.heartbeat_at or job.started_at or job.created_at) >= cutoff:
            return None
        seen = job.heartbeat_at or job.started_at
        why = (
            f"attempt {job.attempt} interrupted: worker {job.worker_id or '?'} "
            f"silent since {seen:%H:%M:%S}"
        )
        job.error = why
        try:
            kind = get_kind(job.kind)
        except ValidationError:
            kind = None
        Worker.objects.filter(current_job=job).update(current_job=None)
        if kind is not None and kind.resumable and job.attempt < job.max_attempts:
            _requeue(job, why)
            job.save()
            if dispatch:
                _dispatch(job)
        else:
            job.status = JobStatus.INTERRUPTED
            job.finished_at = timezone.now()
            _append_log(job, why)
            job.save()
        logger.warning("job %s: %s -> %s", job_id, why, job.status)
        return job.status


# --- artifacts ---------------------------------------------------------------------------------
def save_artifact(*, job_id: int, name: str, path: str | os.PathLike) -> str:
    """Copy a finished local file (a folder is zipped) into default storage under
    jobs/<id>/, then record it. The row is written only after the file is complete, so it never
    points at a partial file; re-saving a name replaces the row, then removes the old file."""
    path = Path(path)
    name = name.strip().strip("/")
    if not name or ".." in Path(name).parts:
        raise ValueError(f"Bad artifact name {name!r}")
    tmpdir = None
    try:
        if path.is_dir():
            tmpdir = tempfile.mkdtemp(prefix="rfs-artifact-")
            path = Path(shutil.make_archive(os.path.join(tmpdir, "a"), "zip", root_dir=path))
            if not name.endswith(".zip"):
                name += ".zip"
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
            fh.seek(0)
            stored = default_storage.save(f"jobs/{job_id}/{name}", File(fh, name=Path(name).name))
        size = default_storage.size(stored)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    old_name = None
    with transaction.atomic():
        art = JobArtifact.objects.select_for_update().filter(job_id=job_id, name=name).first()
        if art is None:
            JobArtifact.objects.create(
                job_id=job_id, name=name, file=stored, size=size, sha256=digest.hexdigest()
            )
        else:
            old_name = art.file.name
            art.file, art.size, art.sha256 = stored, size, digest.hexdigest()
            art.save()
    if old_name and old_name != stored:
        transaction.on_commit(lambda: default_storage.delete(old_name))
    return stored
