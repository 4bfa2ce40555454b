"""make demo never waits for the diffuser: seed_demo queues train_diffuser once for the worker."""

import pytest

from jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


def test_seed_demo_queues_the_tiny_diffuser_once():
    from annotation.demo import seed_demo

    first = seed_demo(creatives=12, labeled=9, gold=2, size=48)
    job = Job.objects.get(kind="train_diffuser")
    assert job.status == JobStatus.QUEUED and job.queue == "gpu"
    assert job.params["dataset"] == first.dataset_version and job.params["preset"] == "tiny"
    seed_demo(creatives=12, labeled=9, gold=2, size=48)
    assert Job.objects.filter(kind="train_diffuser").count() == 1
