from django.test import Client

from annotation.models import DatasetVersion, Project
from core.roles import ML_ENGINEER, QA
from feedback.models import FeedbackModel
from jobs.models import Job
from tests.factories import PASSWORD, make_user


def staff_client(role):
    user = make_user(role, is_staff=True)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_train_action_launches_a_job_after_confirmation(rf1m_schema):
    project = Project.objects.create(name="Adm", slug="adm", schema=rf1m_schema)
    version = DatasetVersion.objects.create(project=project, name="adm-v1")
    client = staff_client(ML_ENGINEER)
    url = "/admin/feedback/trainingdataset/"
    assert client.get(url).status_code == 200
    action = {"action": "launch_rfnet_train", "_selected_action": [version.pk]}
    confirm = client.post(url, action)
    assert confirm.status_code == 200
    assert b"adm-v1" in confirm.content  # the form is pre-filled with the dataset name
    assert not Job.objects.exists()
    done = client.post(
        url,
        {
            **action,
            "post": "yes",
            "job_key": "k1",
            "job-dataset": "adm-v1",
            "job-preset": "tiny",
            "job-epochs": "2",
            "job-batch_size": "8",
            "job-lr": "0.001",
            "job-schedule": "cosine",
            "job-balance": "sampler",
            "job-augment": "true",
            "job-seed": "1",
            "job-mixed_precision": "true",
            "job-patience": "0",
        },
    )
    job = Job.objects.get()
    assert done.status_code == 302 and done["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == "rfnet_train" and job.queue == "gpu"
    assert job.params["dataset"] == "adm-v1" and job.params["preset"] == "tiny"
    assert job.params["balance"] == "sampler" and job.params["epochs"] == 2


def test_qa_cannot_launch_training(rf1m_schema):
    project = Project.objects.create(name="Adm", slug="adm2", schema=rf1m_schema)
    version = DatasetVersion.objects.create(project=project, name="adm-v2")
    client = staff_client(QA)
    client.post(
        "/admin/feedback/trainingdataset/",
        {
            "action": "launch_rfnet_train",
            "_selected_action": [version.pk],
            "post": "yes",
            "job-dataset": "adm-v2",
        },
    )
    assert not Job.objects.exists()


def test_promote_action(register):
    a, b = register(), register()
    client = staff_client("superuser")
    response = client.post(
        "/admin/feedback/feedbackmodel/", {"action": "promote", "_selected_action": [b.pk]}
    )
    assert response.status_code == 302
    assert FeedbackModel.objects.get(status="active") == b
    assert a.pk != b.pk
