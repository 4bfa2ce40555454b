"""The same lifecycle on the second engine: django-tasks-rq on Redis with an RQ worker
(`manage.py rqworker --job-class django_tasks_rq.Job default gpu`), selected by settings only."""

import pytest

from jobs import services
from jobs.models import Job, JobArtifact, JobMetric, JobStatus

from .conftest import wait_for, worker_env

pytestmark = [pytest.mark.rq, pytest.mark.django_db(transaction=True)]


def test_rq_worker_lifecycle(workers, redis_url, settings, ml_user, client, tmp_path):
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default", "gpu"]}
    }
    settings.RQ_QUEUES = {q: {"URL": redis_url} for q in ("default", "gpu")}
    client.force_login(ml_user)

    pk = services.enqueue_job(
        kind="demo", params={"steps": 30, "steps_per_epoch": 10, "step_sleep": 0.03},
        requested_by=ml_user,
    ).pk  # fmt: skip
    assert Job.objects.get(pk=pk).task_result_id  # set after commit, by the RQ enqueue

    env = worker_env(tmp_path, RFSTUDIO_TASKS_BACKEND="rq", REDIS_URL=redis_url)
    workers.start(
        "rqworker", "--job-class", "django_tasks_rq.Job", "--name", "rq-w1", "default", "gpu",
        name="rq-w1", env=env,
    )  # fmt: skip
    wait_for(lambda: Job.objects.get(pk=pk).step > 0, timeout=60, what="running",
             on_fail=workers.logs)  # fmt: skip
    body = client.get(f"/jobs/{pk}/status/").content.decode()
    assert 'data-status="running"' in body or 'data-status="succeeded"' in body
    done = wait_for(
        lambda: (j := Job.objects.get(pk=pk)).status == JobStatus.SUCCEEDED and j,
        timeout=60, what="succeeded", on_fail=workers.logs,
    )  # fmt: skip
    assert done.result["final_step"] == 30 and done.worker_id
    assert JobMetric.objects.filter(job_id=pk, name="loss").count() == 30
    assert JobArtifact.objects.filter(job_id=pk, name="model.pt").exists()

    # Cancel mid-run reaches a job under the RQ worker too.
    stopped = services.enqueue_job(kind="demo", params={"steps": 5000, "step_sleep": 0.02})
    wait_for(lambda: Job.objects.get(pk=stopped.pk).step > 3, timeout=30, what="second job")
    services.cancel_job(job_id=stopped.pk)
    wait_for(lambda: Job.objects.get(pk=stopped.pk).status == JobStatus.CANCELLED, timeout=5,
             what="cancelled", on_fail=workers.logs)  # fmt: skip
