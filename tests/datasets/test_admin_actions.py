import pytest

from annotation.models import DatasetVersion
from jobs import runner
from jobs.models import Job
from tests.factories import make_user

from .conftest import make_voted_project

pytestmark = pytest.mark.django_db


def test_admin_create_and_export_actions(client):
    project, _, _ = make_voted_project(
        [{"sku": f"s{i}", "votes": ["available"]} for i in range(4)], overlap=1, slug="adm"
    )
    client.force_login(make_user("superuser"))
    response = client.post(
        "/admin/annotation/project/",
        {"action": "create_dataset_version_action", "_selected_action": [project.pk]},
    )
    assert response.status_code == 302
    assert not DatasetVersion.objects.exists()  # a job freezes it, not the request
    job = Job.objects.get(kind="create_dataset_version")
    runner.execute(job_id=job.pk, attempt=1, worker_id="test", dispatch_retries=False)
    version = DatasetVersion.objects.get()
    assert version.name.startswith("adm-") and version.item_count == 4

    response = client.post(
        "/admin/annotation/datasetversion/",
        {"action": "export_dataset_jsonl_action", "_selected_action": [version.pk]},
    )
    assert response.status_code == 200
    assert len(b"".join(response.streaming_content).splitlines()) == 4
    # Read-only in the admin.
    change = client.get(f"/admin/annotation/datasetversion/{version.pk}/change/")
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert client.get(f"/admin/annotation/datasetversion/{version.pk}/delete/").status_code == 403
