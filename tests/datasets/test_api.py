import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import DatasetVersion, Item, Project
from generation.models import Creative
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


def test_import_api_multipart(builder, client):
    ml = make_user("ml_engineer")
    client.force_login(ml)
    rows = [builder.row(i, label="available") for i in range(3)]
    response = client.post("/api/projects/up/import/", upload(builder, rows) | {"overlap": "2"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["created"], body["skipped"], body["bad"], body["labels_created"]) == (3, 0, 0, 3)
    assert Project.objects.get(slug="up").overlap == 2
    # Same upload again: nothing new.
    response = client.post("/api/projects/up/import/", upload(builder, rows))
    assert response.status_code == 200 and response.json()["created"] == 0


def test_import_api_bad_rows_400_with_lines(builder, client):
    client.force_login(make_user("ml_engineer"))
    rows = [builder.row(0), dict(builder.row(1), label="bogus"), "not json"]
    response = client.post("/api/projects/bad/import/", upload(builder, rows))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["line"] for e in errors] == [2, 3]
    assert Creative.objects.count() == 0 and not Project.objects.filter(slug="bad").exists()
    response = client.post("/api/projects/bad/import/", upload(builder, rows) | {"skip_bad": "1"})
    assert response.status_code == 201 and response.json()["bad"] == 2


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
    assert response.status_code == 201 and response.json()["created"] == 2

    outside = tmp_path / "outside.png"
    outside.write_bytes((builder.root / "creatives/c0.png").read_bytes())
    evil = builder.write([dict(builder.row(7), image=str(outside))], name="evil.jsonl")
    response = client.post("/api/projects/pp/import/", {"manifest_path": str(evil)})
    assert response.status_code == 400
    assert "outside the allowed import roots" in response.json()["errors"][0]["error"]
    response = client.post("/api/projects/pp/import/", {"manifest_path": "/etc/passwd"})
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
    assert response.status_code == 201, response.content
    assert response.json()["item_count"] == 5
    assert response.json()["params"]["seed"] == 4
    dup = client.post("/api/projects/dsp/datasets/", {"name": "dsp-v1"})
    assert dup.status_code == 400 and "already exists" in dup.json()["detail"]
    bad = client.post("/api/projects/dsp/datasets/", {"name": "x", "ratios": "1,1,1"})
    assert bad.status_code == 400
    assert client.post("/api/projects/nope/datasets/", {"name": "y"}).status_code == 404
    client.force_login(make_user("qa"))
    listing = client.get("/api/datasets/").json()
    assert [d["name"] for d in listing] == ["dsp-v1"]
    detail = client.get("/api/datasets/dsp-v1/").json()
    assert detail["stats"]["splits"]["train"]["items"] >= 1
    assert "parquet" in detail["export_urls"]
    assert client.get("/api/datasets/missing/").status_code == 404
    assert DatasetVersion.objects.count() == 1
