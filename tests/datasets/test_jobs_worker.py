"""Imports and dataset freezing run on a REAL `db_worker` subprocess: the API answers 202 + job id,
the upload waits in storage, the worker imports it and freezes a version; the web side sees the
results through the job API."""

import pytest

from annotation.models import DatasetVersion, Item
from tests.factories import make_user
from tests.jobs.conftest import TIMINGS, Workers, wait_for

from .test_api import upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def workers(tmp_path, settings):
    for key, value in TIMINGS.items():
        setattr(settings, f"JOBS_{key}", value)
    w = Workers(tmp_path)
    yield w
    w.stop_all()


def test_import_and_freeze_on_a_worker(builder, client, workers):
    ml = make_user("ml_engineer")
    client.force_login(ml)
    workers.db_worker("w-annotation", queues="default")
    rows = [builder.row(i, sku=f"S{i}", label="available") for i in range(6)]
    response = client.post("/api/projects/wk/import/", upload(builder, rows))
    assert response.status_code == 202, response.content
    url = response.json()["url"]

    def finished(url):
        body = client.get(url).json()
        return body if body["status"] not in ("queued", "running") else None

    job = wait_for(lambda: finished(url), timeout=90, what="import job", on_fail=workers.logs)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["created"] == 6 and job["requested_by"] == ml.username
    assert Item.objects.filter(project__slug="wk", status="done").count() == 6

    response = client.post(
        "/api/projects/wk/datasets/", {"name": "wk-v1"}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    url = response.json()["url"]
    job = wait_for(lambda: finished(url), timeout=60, what="dataset job", on_fail=workers.logs)
    assert job["status"] == "succeeded", job["error"]
    assert DatasetVersion.objects.get(name="wk-v1").item_count == 6 == job["result"]["items"]
