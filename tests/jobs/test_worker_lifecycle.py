"""The whole path with a REAL `db_worker` subprocess on the test database: enqueue -> running ->
progress visible from the web side -> succeeded with metrics and an artifact; cancel while queued
and mid-run; SIGKILL mid-run -> sweeper -> a new worker resumes from the checkpoint."""

import re

import pytest
from django.core.management import call_command

from jobs import services
from jobs.models import Job, JobArtifact, JobMetric, JobStatus, Worker
from jobs.sweeper import sweep_stale_jobs

from .conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def job(pk) -> Job:
    return Job.objects.get(pk=pk)


def test_enqueue_run_progress_succeed_and_cancel(workers, client, ml_user):
    client.force_login(ml_user)
    # Cancelled while queued: the worker must skip its task.
    early = services.enqueue_job(kind="demo", params={"steps": 5}, requested_by=ml_user)
    services.cancel_job(job_id=early.pk, by=ml_user)
    assert job(early.pk).status == JobStatus.CANCELLED

    resp = client.post(
        "/api/jobs/",
        {"kind": "demo", "params": {"steps": 40, "steps_per_epoch": 10, "step_sleep": 0.08}},
        content_type="application/json",
    )
    assert resp.status_code == 201, resp.content
    pk = resp.json()["id"]
    assert job(pk).status == JobStatus.QUEUED and job(pk).task_result_id

    proc = workers.db_worker("w-life")

    # Progress is visible from the web process while it runs (the htmx partial keeps polling).
    def running_partial():
        r = client.get(f"/jobs/{pk}/", HTTP_HX_REQUEST="true")
        body = r.content.decode()
        match = re.search(r'<progress max="(\d+)" value="(\d+)"', body)
        moving = match and 0 < int(match[2]) < int(match[1]) == 40
        return r.status_code == 200 and 'data-status="running"' in body and moving and body

    body = wait_for(running_partial, timeout=60, what="progress", on_fail=workers.logs)
    assert 'hx-trigger="every 2s"' in body and "· train" in body

    done = wait_for(
        lambda: job(pk).status == JobStatus.SUCCEEDED and job(pk),
        timeout=30,
        what="success",
        on_fail=workers.logs,
    )
    assert done.result["final_step"] == 40 and done.step == done.total == 40
    assert done.worker_id == "w-life" and done.device.startswith("cpu")
    assert JobMetric.objects.filter(job_id=pk, name="loss").count() == 40
    assert JobMetric.objects.filter(job_id=pk, name="eval_loss").count() == 4
    art = JobArtifact.objects.get(job_id=pk, name="model.pt")
    assert art.size > 0 and art.file.storage.exists(art.file.name)
    # The finished partial stops polling and shows chart, artifact link and log.
    body = client.get(f"/jobs/{pk}/status/").content.decode()
    assert "hx-trigger" not in body and "<svg" in body and "polyline" in body
    assert f"/jobs/{pk}/artifacts/{art.pk}/" in body and "epoch 4" in body
    dl = client.get(f"/jobs/{pk}/artifacts/{art.pk}/")
    assert dl.status_code == 200 and b"".join(dl.streaming_content)[:2] == b"PK"  # torch zip
    api = client.get(f"/api/jobs/{pk}/").json()
    assert api["status"] == "succeeded" and len(api["metrics"]["loss"]) == 40
    assert Worker.objects.filter(worker_id="w-life").exists()
    page = client.get("/jobs/").content.decode()
    assert "w-life" in page and 'data-queue="gpu"' in page

    # Cancel mid-run: seen at the next report, the job stops cleanly.
    long = services.enqueue_job(
        kind="demo", params={"steps": 2000, "step_sleep": 0.02}, requested_by=ml_user
    )
    wait_for(lambda: job(long.pk).step > 5, timeout=30, what="long job running")
    resp = client.post(f"/api/jobs/{long.pk}/cancel/")
    assert resp.status_code == 200
    wait_for(lambda: job(long.pk).status == JobStatus.CANCELLED, timeout=5, what="cancelled")
    assert job(long.pk).step < 2000 and "cancel" in " ".join(job(long.pk).log_lines)

    # The early-cancelled job was skipped: never started, still cancelled.
    assert job(early.pk).status == JobStatus.CANCELLED and job(early.pk).started_at is None
    assert proc.poll() is None, workers.logs()


def test_sigkill_mid_run_is_swept_and_resumed(workers, ml_user, settings):
    params = {"steps": 60, "steps_per_epoch": 10, "step_sleep": 0.05}
    pk = services.enqueue_job(kind="demo", params=params, requested_by=ml_user).pk
    first = workers.db_worker("w-doomed")
    wait_for(lambda: job(pk).step >= 25, timeout=60, what="step 25", on_fail=workers.logs)
    workers.kill(first)  # SIGKILL to the whole process group: no cleanup at all
    killed_at = job(pk)
    assert killed_at.status == JobStatus.RUNNING and killed_at.attempt == 1

    # A heartbeat younger than the staleness threshold is never swept.
    assert sweep_stale_jobs(stale_seconds=60) == {}
    # A fresh worker (started now, so its start-up overlaps the staleness wait) sweeps the job
    # from its idle sweeper thread - or this process does; either way attempt 2 is queued.
    workers.db_worker("w-rescue")

    def swept():
        sweep_stale_jobs()
        j = job(pk)
        return j.attempt == 2 and j

    swept = wait_for(swept, timeout=30, what="sweep", on_fail=workers.logs)
    assert "interrupted" in swept.error and "w-doomed" in swept.error
    done = wait_for(
        lambda: job(pk).status == JobStatus.SUCCEEDED and job(pk),
        timeout=60,
        what="resumed",
        on_fail=workers.logs,
    )
    assert done.result["final_step"] == 60 and done.step == 60
    # Resumed from the last checkpoint written before the kill (every 10 steps), not from 0.
    assert 20 <= done.result["resumed_from_step"] <= killed_at.step
    assert done.worker_id == "w-rescue"
    assert any("resuming from checkpoint" in line for line in done.log_lines)
    steps = JobMetric.objects.filter(job_id=pk, name="loss", attempt=2).values_list(
        "step", flat=True
    )
    assert min(steps) == done.result["resumed_from_step"] + 1 and max(steps) == 60


def test_sweep_jobs_command_marks_non_resumable_interrupted(transactional_db, ml_user, capsys):
    import datetime

    from django.utils import timezone

    pk = services.enqueue_job(
        kind="demo", params={"steps": 5}, requested_by=ml_user, dispatch=False
    ).pk
    services.start_attempt(job_id=pk, attempt=1, worker_id="gone", device="cpu")
    # Last attempt: no retry left, so it ends interrupted.
    old = timezone.now() - datetime.timedelta(minutes=5)
    Job.objects.filter(pk=pk).update(heartbeat_at=old, max_attempts=1)
    call_command("sweep_jobs")
    assert job(pk).status == JobStatus.INTERRUPTED and job(pk).finished_at
    assert "interrupted" in capsys.readouterr().out
