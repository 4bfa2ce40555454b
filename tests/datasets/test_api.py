import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import DatasetVersion, Item, Project
from generation.models import Creative
from jobs import runner
from jobs.models import Job
from tests.factories import make_user

from .conftest import make_voted_project

pytestmark = pytest.mark.django_db


def upload(builder, rows):
    manifest = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()
    files = {"manifest": SimpleUploadedFile("m.jsonl", manifest)}
    images = []
    for r in rows:
        if isinstance(r, dict):
            for key in ("image", "product_image"):
                if r.get(key) and (builder.root / r[key]).exists():
                    p = builder.root / r[key]
                    images.append(SimpleUploadedFile(p.name, p.read_bytes()))
    return {**files, "images": images}


def run_job(response) -> Job:
    """The API answered 202 + job: run that job here, as a worker would (real runner)."""
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == body["url"] == f"/api/jobs/{body['job']}/"
    assert body["status"] == "queued"
    runner.execute(job_id=body["job"], attempt=1, worker_id="test", dispatch_retries=False)
    return Job.objects.get(pk=body["job"])


def test_import_api_multipart(builder, client, settings):
    ml = make_user("ml_engineer")
    client.force_login(ml)
    rows = [builder.row(i, label="available") for i in range(3)]
    response = client.post("/api/projects/up/import/", upload(builder, rows) | {"overlap": "2"})
    # Nothing is imported by the request itself: the upload waits in storage for a worker.
    assert response.status_code == 202 and not Project.objects.filter(slug="up").exists()
    staged = settings.MEDIA_ROOT / "imports"
    assert len(list(staged.iterdir())) == 1
    job = run_job(response)
    assert job.status == "succeeded", job.error
    body = job.result
    assert (body["created"], body["skipped"], body["bad"], body["labels_created"]) == (3, 0, 0, 3)
    assert Project.objects.get(slug="up").overlap == 2
    assert job.requested_by == ml and job.kind == "import_creatives"
    assert list(staged.iterdir()) == []  # the staged upload is gone
    # Same upload again: nothing new.
    job = run_job(client.post("/api/projects/up/import/", upload(builder, rows)))
    assert job.status == "succeeded" and job.result["created"] == 0


def test_import_api_bad_rows_fail_the_job_naming_lines(builder, client):
    client.force_login(make_user("ml_engineer"))
    rows = [builder.row(0), dict(builder.row(1), label="bogus"), "not json"]
    job = run_job(client.post("/api/projects/bad/import/", upload(builder, rows)))
    assert job.status == "failed"
    assert "bad line(s) 2, 3" in job.error and "Nothing was imported" in job.error
    assert Creative.objects.count() == 0 and not Project.objects.filter(slug="bad").exists()
    response = client.post("/api/projects/bad/import/", upload(builder, rows) | {"skip_bad": "1"})
    job = run_job(response)
    assert job.status == "succeeded" and job.result["bad"] == 2
    assert [e["line"] for e in job.result["errors"]] == [2, 3]


def test_import_api_bad_options_are_400_before_anything_is_stored(builder, client, settings):
    client.force_login(make_user("ml_engineer"))
    rows = [builder.row(0)]
    for bad in ({"overlap": "0"}, {"overlap": "x"}, {"overlap": str(10**30)}):
        response = client.post("/api/projects/opt/import/", upload(builder, rows) | bad)
        assert response.status_code == 400 and "overlap" in response.json()["detail"]
    response = client.post("/api/projects/" + "s" * 120 + "/import/", upload(builder, rows))
    assert response.status_code == 400 and "project" in response.json()["detail"]
    assert not (settings.MEDIA_ROOT / "imports").exists() and Job.objects.count() == 0


def test_import_api_permissions(builder, client):
    rows = [builder.row(0)]
    assert client.post("/api/projects/x/import/", upload(builder, rows)).status_code in (401, 403)
    for role in ("annotator", "qa"):
        client.force_login(make_user(role))
        assert client.post("/api/projects/x/import/", upload(builder, rows)).status_code == 403
    assert Item.objects.count() == 0


def test_import_api_server_paths(builder, client, settings, tmp_path):
    client.force_login(make_user("ml_engineer"))
    path = builder.write([builder.row(i) for i in range(2)])
    settings.RFSTUDIO_IMPORT_ROOTS = []
    response = client.post("/api/projects/pp/import/", {"manifest_path": str(path)})
    assert response.status_code == 400 and "disabled" in response.json()["detail"]

    settings.RFSTUDIO_IMPORT_ROOTS = [builder.root]
    response = client.post(
        "/api/projects/pp/import/", {"manifest_path": str(path)}, content_type="application/json"
    )
    job = run_job(response)
    assert job.status == "succeeded" and job.result["created"] == 2

    outside = tmp_path / "outside.png"
    outside.write_bytes((builder.root / "creatives/c0.png").read_bytes())
    evil = builder.write([dict(builder.row(7), image=str(outside))], name="evil.jsonl")
    job = run_job(client.post("/api/projects/pp/import/", {"manifest_path": str(evil)}))
    assert job.status == "failed" and "outside the allowed import roots" in job.error
    response = client.post("/api/projects/pp/import/", {"manifest_path": "/etc/passwd"})
    assert response.status_code == 400 and "outside the allowed import roots" in str(
        response.json()
    )
    # The generic job API applies the same rule (the kind's form checks it).
    response = client.post(
        "/api/jobs/",
        {"kind": "import_creatives", "params": {"project": "pp", "manifest_path": "/etc/passwd"}},
        content_type="application/json",
    )
    assert response.status_code == 400


def test_dataset_api(client):
    make_voted_project(
        [{"sku": f"s{i}", "votes": ["available"]} for i in range(5)], overlap=1, slug="dsp"
    )
    ml = make_user("ml_engineer")
    client.force_login(make_user("annotator"))
    assert client.get("/api/datasets/").status_code == 403
    assert client.post("/api/projects/dsp/datasets/", {"name": "a"}).status_code == 403
    client.force_login(make_user("qa"))
    assert client.post("/api/projects/dsp/datasets/", {"name": "a"}).status_code == 403
    client.force_login(ml)
    response = client.post(
        "/api/projects/dsp/datasets/",
        {"name": "dsp-v1", "ratios": "0.6,0.2,0.2", "seed": 4, "min_agreement": 0.5},
        content_type="application/json",
    )
    assert not DatasetVersion.objects.exists()  # frozen by a worker, not by the request
    job = run_job(response)
    assert job.status == "succeeded", job.error
    assert job.result["name"] == "dsp-v1" and job.result["items"] == 5
    version = DatasetVersion.objects.get(name="dsp-v1")
    assert version.params["seed"] == 4 and version.created_by == ml
    dup = client.post("/api/projects/dsp/datasets/", {"name": "dsp-v1"})
    assert dup.status_code == 400 and "already exists" in dup.json()["detail"]
    for ratios in ("1,1,1", "nan,1,1", "0.5,0.5", "a,b,c"):
        bad = client.post("/api/projects/dsp/datasets/", {"name": "x", "ratios": ratios})
        assert bad.status_code == 400 and "ratios" in bad.json()["detail"], ratios
    assert client.post("/api/projects/nope/datasets/", {"name": "y"}).status_code == 404
    client.force_login(make_user("qa"))
    listing = client.get("/api/datasets/").json()
    assert [d["name"] for d in listing] == ["dsp-v1"]
    detail = client.get("/api/datasets/dsp-v1/").json()
    assert detail["stats"]["splits"]["train"]["items"] >= 1
    assert "parquet" in detail["export_urls"]
    assert client.get("/api/datasets/missing/").status_code == 404
    assert DatasetVersion.objects.count() == 1


def test_commands_enqueue_on_request(builder, settings):
    from django.core.management import CommandError, call_command

    make_voted_project([{"sku": "s0", "votes": ["available"]}], overlap=1, slug="cli")
    call_command("create_dataset_version", "--project", "cli", "--name", "cli-v1", "--enqueue")
    job = Job.objects.get(kind="create_dataset_version")
    assert job.status == "queued" and job.params["name"] == "cli-v1"
    path = builder.write([builder.row(0)])
    settings.RFSTUDIO_IMPORT_ROOTS = []
    with pytest.raises(CommandError, match="RFSTUDIO_IMPORT_ROOTS"):
        call_command("import_creatives", str(path), "--project", "cli", "--enqueue")
    settings.RFSTUDIO_IMPORT_ROOTS = [builder.root]
    call_command("import_creatives", str(path), "--project", "cli", "--enqueue")
    job = Job.objects.get(kind="import_creatives")
    assert job.params["manifest_path"] == str(path.resolve())
