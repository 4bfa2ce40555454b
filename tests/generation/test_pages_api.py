"""Generation pages, the launch API and the admin actions."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from core.roles import ANNOTATOR, ML_ENGINEER, QA
from generation.models import Generation
from jobs.models import Job
from tests.factories import PASSWORD, make_user
from tests.generation._tiny import make_cutout_product, register_tiny

pytestmark = pytest.mark.django_db


def _client(role, **extra):
    user = make_user(role, **extra)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_run_product_and_creative_pages(tmp_path):
    model = register_tiny(tmp_path, "tiny-p")
    product = make_cutout_product("P-1")
    call_command(
        "generate_creatives",
        "--model",
        "tiny-p",
        "--sku",
        "P-1",
        "--seeds",
        "0",
        "--steps",
        "1",
        "--foreground",
    )
    job = Job.objects.get(kind="generate")
    g = Generation.objects.filter(job=job).first()
    ml = _client(ML_ENGINEER)
    run = ml.get(f"/generation/runs/{job.pk}/")
    assert run.status_code == 200 and run.content.count(b'class="gen-tile') == 3
    assert b"P-1" in run.content
    assert ml.get(f"/generation/runs/{job.pk}/?kept=1").content.count(b'class="gen-tile') == 0
    page = ml.get(f"/generation/products/{product.sku}/")
    assert page.status_code == 200 and page.content.count(b'class="gen-tile') == 3
    detail = ml.get(f"/generation/creatives/{g.creative_id}/")
    assert detail.status_code == 200
    for text in (model.name.encode(), model.checksum[:12].encode(), b"placement", b"Seed"):
        assert text in detail.content
    image = ml.get(f"/generation/images/{g.creative_id}/")
    assert image.status_code == 200 and b"".join(image.streaming_content)[:4] == b"\x89PNG"
    assert _client(QA).get(f"/generation/runs/{job.pk}/").status_code == 200
    # Annotators label blind: no models, no verdicts.
    annotator = _client(ANNOTATOR)
    assert annotator.get(f"/generation/runs/{job.pk}/").status_code == 403
    assert annotator.get(f"/generation/creatives/{g.creative_id}/").status_code == 403
    assert ml.get("/generation/products/NOPE/").status_code == 404


def test_launch_api(tmp_path):
    register_tiny(tmp_path, "tiny-api")
    make_cutout_product("API-1")
    user = make_user(ML_ENGINEER)
    api = APIClient()
    api.force_authenticate(user)
    ok = api.post(
        "/api/generation/jobs/",
        {"params": {"skus": "API-1", "seeds": "0-3", "steps": 2}, "idempotency_key": "k1"},
        format="json",
    )
    assert ok.status_code == 201, ok.content
    job = Job.objects.get()
    assert job.kind == "generate" and job.queue == "gpu" and job.params["model"] == "tiny-api"
    assert (
        job.params["seeds"] == "0,1,2,3" and ok.json()["run_url"] == f"/generation/runs/{job.pk}/"
    )
    again = api.post(
        "/api/generation/jobs/",
        {"params": {"skus": "API-1"}, "idempotency_key": "k1"},
        format="json",
    )
    assert again.json()["id"] == job.pk  # idempotent
    bad = api.post("/api/generation/jobs/", {"params": {"skus": "NOPE"}}, format="json")
    assert bad.status_code == 400 and "Unknown SKU" in str(bad.json())
    bad_kind = api.post("/api/generation/jobs/", {"kind": "rm -rf"}, format="json")
    assert bad_kind.status_code == 400
    models = api.get("/api/generation/models/")
    assert models.status_code == 200 and models.json()[0]["name"] == "tiny-api"
    annotator = APIClient()
    annotator.force_authenticate(make_user(ANNOTATOR))
    assert annotator.post("/api/generation/jobs/", {}, format="json").status_code == 403
    assert Job.objects.count() == 1


def test_admin_generate_action_confirms_then_launches(tmp_path):
    register_tiny(tmp_path, "tiny-adm")
    p1, p2 = make_cutout_product("ADM-1"), make_cutout_product("ADM-2")
    client = _client(ML_ENGINEER, is_staff=True)
    url = "/admin/generation/product/"
    assert client.get(url).status_code == 200
    action = {"action": "generate_creatives", "_selected_action": [p1.pk, p2.pk]}
    confirm = client.post(url, action)
    assert confirm.status_code == 200 and b"ADM-1,ADM-2" in confirm.content
    assert not Job.objects.exists()
    done = client.post(
        url,
        {
            **action,
            "post": "yes",
            "job_key": "a1",
            "job-model": "latest",
            "job-skus": "ADM-1,ADM-2",
            "job-seeds": "0,1",
            "job-steps": "5",
            "job-guidance": "7.5",
            "job-batch_size": "4",
            "job-size": "0",
        },
    )
    job = Job.objects.get()
    assert done.status_code == 302 and job.kind == "generate"
    assert job.params["skus"] == "ADM-1,ADM-2" and job.params["model"] == "tiny-adm"
    assert job.inputs["products"] == ["ADM-1", "ADM-2"]
