"""Preview page and live API: roles (annotators 403), ranked order, filters, two rankers side by
side; the "similar creatives" panel on the QA item page."""

import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from core.roles import ANNOTATOR, ML_ENGINEER, QA
from jobs import runner
from jobs.services import enqueue_job
from ranking.models import PreviewEntry
from tests.factories import make_user

from .conftest import catalogue, write_jsonl
from .test_pipeline import preference_logs

# Jobs run with their heartbeat thread on its own connection: it must see the committed job.
pytestmark = pytest.mark.django_db(transaction=True)


def run(kind, **params):
    job = enqueue_job(kind=kind, params=params, dispatch=False)
    runner.execute(job_id=job.pk, attempt=job.attempt, worker_id="t", dispatch_retries=False)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job


@pytest.fixture
def trained(tmp_path):
    cat = catalogue(n_products=4, per_product=3)
    call_command(
        "import_impressions", str(write_jsonl(tmp_path / "l.jsonl", preference_logs(cat, 6)))
    )
    run("train_encoder", steps=2, batch_size=8, image_size=32, name="enc")
    run("train_ranker", name="r1", epochs=2)
    run("train_ranker", name="r2", epochs=3, encoder="none")
    run("ranking_preview", segment="a,b", model="r1")
    run("ranking_preview", segment="a", model="r2")
    return cat


def check_permissions(trained, client):
    api = APIClient()
    for user, status in (
        (make_user(ANNOTATOR), 403),
        (make_user(QA), 200),
        (make_user(ML_ENGINEER), 200),
    ):
        client.force_login(user)
        assert client.get("/ranking/preview/?segment=a").status_code == status
        api.force_authenticate(user)
        assert api.get("/api/ranking/preview/?segment=a&sku=P-0").status_code == status
    client.logout()
    assert client.get("/ranking/preview/").status_code == 302
    api.force_authenticate(None)
    assert api.get("/api/ranking/preview/?segment=a&sku=P-0").status_code in (401, 403)


def check_page_shows_ranked_lists_side_by_side(trained, client):
    client.force_login(make_user(QA))
    html = client.get("/ranking/preview/?segment=a&model=r1&compare=r2").content.decode()
    block = html[html.index('data-sku="P-0"') :]
    block = block[: block.index("</section>")]
    left = block[: block.index('data-model="r2"')]
    ranks = [int(r) for r in re.findall(r'data-rank="(\d+)"', left)]
    assert ranks == [1, 2, 3]
    expected = list(
        PreviewEntry.objects.filter(segment__slug="a", model__name="r1", product__sku="P-0")
        .order_by("rank")
        .values_list("creative_id", flat=True)
    )
    assert [int(c) for c in re.findall(r'data-creative="(\d+)"', left)] == expected
    assert 'data-model="r2"' in block and "score" in block
    # Filters: a category keeps its products only; "usable only" needs RFNet verdicts.
    html = client.get("/ranking/preview/?segment=a&model=r1&category=shoes").content.decode()
    assert 'data-sku="P-1"' in html and 'data-sku="P-0"' not in html
    html = client.get("/ranking/preview/?segment=a&model=r1&usable=1").content.decode()
    assert "data-sku=" not in html
    assert client.get("/ranking/preview/?segment=nope").status_code == 404


def check_live_api(trained):
    api = APIClient()
    api.force_authenticate(make_user(QA))
    body = api.get("/api/ranking/preview/?segment=b&sku=P-1&model=r1").json()
    assert body["model"] == "r1" and body["sku"] == "P-1"
    assert [c["rank"] for c in body["creatives"]] == [1, 2, 3]
    scores = [c["score"] for c in body["creatives"]]
    assert scores == sorted(scores, reverse=True)
    assert {c["external_id"] for c in body["creatives"]} == {f"P-1-c{i}" for i in range(3)}
    assert body["creatives"][0]["contributions"]
    assert api.get("/api/ranking/preview/?segment=b").status_code == 400
    assert api.get("/api/ranking/preview/?segment=b&sku=nope").status_code == 404
    assert api.get("/api/ranking/preview/?segment=b&sku=P-1&model=zzz").status_code == 404
    # Served from the ranker's precomputed catalogue: a fixed number of queries however many
    # creatives there are, and a creative added since is ranked on the next request.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import make_creative

    url = "/api/ranking/preview/?segment=b&sku=P-1&model=r1"
    with CaptureQueriesContext(connection) as before:
        api.get(url)
    make_creative(product=trained["P-1"][0].product, external_id="P-1-late")
    body = api.get(url).json()
    assert {c["external_id"] for c in body["creatives"]} == {
        *(f"P-1-c{i}" for i in range(3)),
        "P-1-late",
    }
    with CaptureQueriesContext(connection) as after:
        api.get(url)
    assert len(after) == len(before) <= 13, [q["sql"] for q in after.captured_queries]


def check_similar_creatives_panel_on_qa_page(trained, client):
    from annotation import services
    from tests.factories import make_project

    creatives = [c for cs in trained.values() for c in cs]
    project = make_project(slug="sim", qa_sample_rate=1.0)
    services.add_creatives_to_project(project=project, creatives=creatives[:2])
    annotator = make_user(ANNOTATOR)
    a = services.claim_next_item(project=project, annotator=annotator)
    services.submit_annotation(
        item_id=a.item_id, annotator=annotator, label="available", idempotency_key="k1"
    )
    client.force_login(make_user(QA))
    html = client.get(f"/qa/sim/items/{a.item_id}/").content.decode()
    assert 'id="similar-creatives"' in html
    assert len(re.findall(r'<li data-creative="\d+">', html)) == 6


def test_preview_page_api_and_similar_panel(trained, client):
    """One trained setup (two rankers, an encoder, stored previews) for every check: training
    is the slow part."""
    check_permissions(trained, client)
    check_page_shows_ranked_lists_side_by_side(trained, client)
    check_live_api(trained)
    check_similar_creatives_panel_on_qa_page(trained, client)
