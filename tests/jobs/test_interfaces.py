"""API, pages, admin actions and CLI: validation, idempotency and permissions (no worker needed:
jobs are only enqueued here, or run in the foreground)."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django_tasks_db.models import DBTaskResult

from jobs import services
from jobs.admin import JobAdmin
from jobs.kinds import JobKind, register
from jobs.models import Job, JobStatus
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _tasks() -> int:
    return DBTaskResult.objects.count()


# --- enqueue, validation, idempotency ---------------------------------------------------------
def test_enqueue_writes_job_and_task_together(ml_user):
    job = services.enqueue_job(kind="demo", params={"steps": "12"}, requested_by=ml_user)
    assert job.status == JobStatus.QUEUED and job.params["steps"] == 12
    assert job.params["steps_per_epoch"] == 50  # missing keys take the form's initial values
    task = DBTaskResult.objects.get(id=job.task_result_id)
    assert task.queue_name == "default" and task.args_kwargs["args"] == [job.pk, 1]


def test_invalid_params_raise_and_write_nothing(ml_user):
    with pytest.raises(ValidationError) as exc:
        services.enqueue_job(kind="demo", params={"steps": 0, "lr": "x"}, requested_by=ml_user)
    assert set(exc.value.message_dict) == {"steps", "lr"}
    with pytest.raises(ValidationError, match="Unknown parameter"):
        services.enqueue_job(kind="demo", params={"stepz": 3})
    with pytest.raises(ValidationError, match="Unknown job kind"):
        services.enqueue_job(kind="nope", params={})
    with pytest.raises(ValidationError):
        services.enqueue_job(kind="demo", params={"num_processes": 0})
    assert Job.objects.count() == 0 and _tasks() == 0


def test_same_key_enqueues_once(ml_user):
    a = services.enqueue_job(kind="demo", params={"steps": 3}, idempotency_key="k1")
    b = services.enqueue_job(kind="demo", params={"steps": 3}, idempotency_key="k1")
    assert a.pk == b.pk and Job.objects.count() == 1 and _tasks() == 1


def test_api_launch_validation_and_idempotency(client, ml_user):
    client.force_login(ml_user)
    bad = client.post(
        "/api/jobs/", {"kind": "demo", "params": {"steps": -1}}, content_type="application/json"
    )
    assert bad.status_code == 400 and "steps" in bad.json()["errors"]["params"]
    assert Job.objects.count() == 0
    body = {"kind": "demo", "params": {"steps": 5}, "idempotency_key": "dbl"}
    first = client.post("/api/jobs/", body, content_type="application/json")
    second = client.post("/api/jobs/", body, content_type="application/json")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and Job.objects.count() == 1
    listing = client.get("/api/jobs/?status=queued").json()
    assert listing["count"] == 1 and listing["results"][0]["kind"] == "demo"


# --- permissions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["annotator", "qa"])
def test_annotators_and_qa_cannot_launch_or_cancel(client, role):
    job = services.enqueue_job(kind="demo", params={"steps": 3})
    client.force_login(make_user(role))
    launch = client.post(
        "/api/jobs/", {"kind": "demo", "params": {}}, content_type="application/json"
    )
    assert launch.status_code == 403
    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 403
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    # QA may read job pages and outputs (pages and API alike, core.policy); annotators may not.
    expected = 200 if role == "qa" else 403
    assert client.get(f"/jobs/{job.pk}/").status_code == expected
    assert client.get("/jobs/").status_code == expected
    assert client.get(f"/api/jobs/{job.pk}/").status_code == expected
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert Job.objects.count() == 1


def test_anonymous_is_sent_to_login(client):
    job = services.enqueue_job(kind="demo", params={"steps": 3})
    assert client.get(f"/jobs/{job.pk}/").status_code == 302
    assert client.get("/api/jobs/").status_code == 401


def test_ml_engineer_cancels_queued_and_retries_from_page(client, ml_user):
    client.force_login(ml_user)
    job = services.enqueue_job(kind="demo", params={"steps": 3})
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in page and "Cancel" in page
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert client.post(f"/jobs/{job.pk}/retry/").status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempt == 2 and _tasks() == 2
    resp = client.post(f"/api/jobs/{job.pk}/retry/")  # queued: not retryable
    assert resp.status_code == 409


# --- admin ----------------------------------------------------------------------------------------
def _admin_launch(client, data):
    return client.post("/admin/jobs/job/", data)


def test_admin_launch_action_confirms_validates_and_enqueues_once(client, ml_user):
    from django.contrib import admin

    from jobs.admin_actions import launch_job_action

    ml_user.is_staff = True
    ml_user.save()
    client.force_login(ml_user)
    target = services.enqueue_job(kind="demo", params={"steps": 3})
    # Any app's ModelAdmin can carry the action; JobAdmin is handy here.
    action = launch_job_action("demo", initial=lambda qs: {"steps": 7})
    site_admin = admin.site._registry[Job]
    site_admin.actions = [*JobAdmin.actions, action]
    try:
        base = {"action": action.__name__, "_selected_action": [target.pk]}
        confirm = _admin_launch(client, base)
        assert confirm.status_code == 200
        html = confirm.content.decode()
        assert 'name="job-steps"' in html and 'value="7"' in html and "job_key" in html
        key = confirm.context["job_key"]
        bad = _admin_launch(client, {**base, "post": "yes", "job_key": key, "job-steps": "0",
                                     "job-steps_per_epoch": "5", "job-batch_size": "4",
                                     "job-lr": "0.1", "job-seed": "0"})  # fmt: skip
        assert bad.status_code == 200 and "errorlist" in bad.content.decode()
        assert Job.objects.count() == 1
        good = {**base, "post": "yes", "job_key": key, "job-steps": "9",
                "job-steps_per_epoch": "5", "job-batch_size": "4", "job-lr": "0.1",
                "job-seed": "0"}  # fmt: skip
        r1 = _admin_launch(client, good)
        r2 = _admin_launch(client, good)  # the double click
        assert Job.objects.count() == 2
        new = Job.objects.exclude(pk=target.pk).get()
        assert r1.status_code == r2.status_code == 302 and r1["Location"] == f"/jobs/{new.pk}/"
        assert new.params["steps"] == 9 and new.requested_by == ml_user
        # A staff user without the ML-engineer role cannot launch.
        staff = make_user(None, is_staff=True, is_superuser=False)
        staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="jobs"))
        client.force_login(staff)
        denied = _admin_launch(client, {**good, "job_key": "other"})
        assert denied.status_code == 302 and Job.objects.count() == 2
    finally:
        site_admin.actions = JobAdmin.actions


# --- CLI ------------------------------------------------------------------------------------------
def test_launch_job_command_enqueues_and_rejects_bad_params(capsys):
    call_command("launch_job", "demo", "--param", "steps=4", "--key", "cli-1")
    call_command("launch_job", "demo", "--param", "steps=4", "--key", "cli-1")
    assert Job.objects.count() == 1 and "queued" in capsys.readouterr().out
    with pytest.raises(CommandError, match="steps"):
        call_command("launch_job", "demo", "--param", "steps=abc")
    with pytest.raises(CommandError, match="Unknown job kind"):
        call_command("launch_job", "nope")
    with pytest.raises(CommandError, match="KEY=VALUE"):
        call_command("launch_job", "demo", "--param", "steps")
    assert Job.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # the heartbeat thread uses its own connection
def test_foreground_run_retries_failure_and_succeeds(tmp_path, capsys):
    call_command("run_demo_job", "--steps", "12", "--steps-per-epoch", "4", "--foreground")
    job = Job.objects.get()
    assert job.status == JobStatus.SUCCEEDED and job.result["final_step"] == 12
    assert job.artifacts.filter(name="model.pt").exists()
    # fail_at_step fails attempt 1 at step 6; attempt 2 resumes from the step-4 checkpoint.
    call_command("launch_job", "demo", "--param", "steps=8", "--param", "steps_per_epoch=4",
                 "--param", "fail_at_step=6", "--foreground")  # fmt: skip
    job = Job.objects.latest("id")
    assert job.status == JobStatus.SUCCEEDED and job.attempt == 2
    assert job.result["resumed_from_step"] == 4


def _interrupted(ctx):
    ctx.reporter.progress(2, total=5, phase="working")
    ctx.reporter.log("before the interrupt")
    if ctx.job.kind.endswith("sigterm"):  # `kill PID` of the foreground command
        os.kill(os.getpid(), signal.SIGTERM)
    raise KeyboardInterrupt  # Ctrl-C


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_foreground_run_cancels_its_job(how):
    kind = f"test_interrupted_{how}"
    register(JobKind(name=kind, run=_interrupted, resumable=True, max_attempts=3))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(CommandError, match=r"cancelled \(interrupted\)"):
        call_command("launch_job", kind, "--foreground")
    job = Job.objects.get(kind=kind)
    # cancelled, not left running for the sweeper to re-queue to a background worker
    assert job.status == JobStatus.CANCELLED and job.attempt == 1 and job.finished_at
    assert job.step == 2 and any("before the interrupt" in line for line in job.log_lines)
    assert any("stopped from the terminal" in line for line in job.log_lines)
    assert signal.getsignal(signal.SIGTERM) is before
    # retry continues it as the next attempt, as for any cancelled job
    assert services.retry_job(job_id=job.pk).status == JobStatus.QUEUED


def _launched_ranks() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"jobs.launch" in args:
            found.append(cmdline.parent.name)
    return found


@pytest.mark.django_db(transaction=True)
def test_killed_foreground_run_stops_its_distributed_ranks(tmp_path, monkeypatch):
    # The ranks run in their own session, out of reach of the terminal's Ctrl-C: the parent
    # stops them, or they would go on writing to a cancelled job.
    from tests.jobs.conftest import worker_env

    for key, value in worker_env(tmp_path).items():  # the ranks inherit this environment
        monkeypatch.setenv(key, value)
    timer = threading.Timer(12.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(CommandError, match=r"cancelled \(interrupted\)"):
            call_command(
                *("launch_job", "demo", "--param", "steps=4000", "--param", "step_sleep=0.05"),
                *("--num-processes", "2", "--foreground"),
            )
    finally:
        timer.cancel()
    job = Job.objects.get(kind="demo")
    assert job.status == JobStatus.CANCELLED and job.step < 4000
    deadline = time.monotonic() + 15  # the group got SIGTERM; give the ranks time to exit
    while _launched_ranks() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _launched_ranks() == []


@pytest.mark.django_db(transaction=True)
def test_interrupted_worker_leaves_its_job_to_the_sweeper():
    from jobs import runner

    register(JobKind(name="test_interrupted", run=_interrupted, resumable=True))
    job = services.enqueue_job(kind="test_interrupted", params={}, dispatch=False)
    with pytest.raises(KeyboardInterrupt):
        runner.execute(job_id=job.pk, attempt=1, worker_id="w1", dispatch_retries=False)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # a resumable kind is re-queued when swept


def _always_fails(ctx):
    ctx.reporter.progress(1, total=3, phase="doomed")
    raise RuntimeError("boom")


@pytest.mark.django_db(transaction=True)
def test_foreground_failure_exits_nonzero_with_error():
    register(JobKind(name="test_always_fails", run=_always_fails, max_attempts=2))
    with pytest.raises(CommandError, match="boom"):
        call_command("launch_job", "test_always_fails", "--foreground")
    job = Job.objects.get(kind="test_always_fails")
    assert job.status == JobStatus.FAILED and job.attempt == 2
    assert "RuntimeError: boom" in job.traceback
