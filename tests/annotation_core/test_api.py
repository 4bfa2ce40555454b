import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from annotation import services
from tests.factories import make_project, make_token, make_user

from .conftest import work_queries

pytestmark = pytest.mark.django_db

ROLES = ["annotator", "qa", "ml_engineer", "superuser", None]


def client_for(user):
    return Client(HTTP_AUTHORIZATION=f"Token {make_token(user)}") if user else Client()


@pytest.fixture
def setup():
    project = make_project(overlap=1, n_items=6, qa_sample_rate=1.0)
    worker = make_user("annotator")
    # One finished item in the review queue.
    a = services.claim_next_item(project=project, annotator=worker)
    services.submit_annotation(
        item_id=a.item_id, annotator=worker, label="available", idempotency_key="seed"
    )
    return project, a.item_id


@pytest.mark.parametrize("role", ROLES)
def test_permissions_every_endpoint(setup, role):
    project, done_item = setup
    user = make_user(role) if role else None
    c = client_for(user)
    labeler = role in ("annotator", "ml_engineer", "superuser")
    reviewer = role in ("qa", "ml_engineer", "superuser")
    anon = 401 if role is None else 403

    r = c.post(f"/api/projects/{project.slug}/next/")
    assert r.status_code == (200 if labeler else anon), r.content
    item_id = r.json()["item_id"] if labeler else done_item
    r = c.post(f"/api/items/{item_id}/heartbeat/")
    assert r.status_code == (200 if labeler else anon)
    r = c.post(
        f"/api/items/{item_id}/annotations/",
        {"label": "available", "idempotency_key": "k1", "duration_ms": 1200},
        content_type="application/json",
    )
    assert r.status_code == (201 if labeler else anon), r.content
    r = c.post(f"/api/projects/{project.slug}/undo/")
    assert r.status_code == (200 if labeler else anon)
    if labeler:
        assert r.json()["undone"] and r.json()["item"]["item_id"] == item_id
    r = c.post(f"/api/items/{item_id}/skip/")
    assert r.status_code == (200 if labeler else anon)
    r = c.get("/api/projects/")
    assert r.status_code == (200 if role else 401)
    if role:
        slugs = [p["slug"] for p in r.json()]
        assert (project.slug in slugs) == (labeler or reviewer)
    r = c.get(f"/api/projects/{project.slug}/review-queue/")
    assert r.status_code == (200 if reviewer else anon)
    if reviewer:
        assert [i["item_id"] for i in r.json()["results"]] == [done_item]
    r = c.get(f"/api/items/{done_item}/")
    assert r.status_code == (200 if reviewer else anon)
    if reviewer:
        assert r.json()["annotations"][0]["label"] == "available"
    r = c.post(
        f"/api/items/{done_item}/reviews/",
        {"action": "accept"},
        content_type="application/json",
    )
    assert r.status_code == (201 if reviewer else anon)
    assert "detail" in r.json() if r.status_code >= 400 else True


def test_annotator_membership_and_admin_blocked(setup):
    project, _ = setup
    member, outsider = make_user("annotator"), make_user("annotator")
    project.annotators.add(member)
    assert client_for(member).post(f"/api/projects/{project.slug}/next/").status_code == 200
    r = client_for(outsider).post(f"/api/projects/{project.slug}/next/")
    assert r.status_code == 403 and "not an annotator" in r.json()["detail"]
    c = Client()
    c.force_login(outsider)
    assert c.get("/admin/").status_code == 302  # not staff: login page


def test_api_errors_are_json(setup):
    project, done_item = setup
    u = make_user("annotator")
    c = client_for(u)
    assert c.post("/api/projects/nope/next/").status_code == 404
    item_id = c.post(f"/api/projects/{project.slug}/next/").json()["item_id"]
    r = c.post(
        f"/api/items/{item_id}/annotations/",
        {"label": "x", "idempotency_key": "a"},
        content_type="application/json",
    )
    assert r.status_code == 400 and "Unknown label" in r.json()["detail"]
    r = c.post(
        f"/api/items/{item_id}/annotations/",
        {"label": "available"},
        content_type="application/json",
    )
    assert r.status_code == 400 and "idempotency_key" in r.json()["detail"]
    r = c.post(
        f"/api/items/{done_item}/annotations/",
        {"label": "available", "idempotency_key": "b"},
        content_type="application/json",
    )
    assert r.status_code == 409 and r.json()["code"] == "lease_conflict"
    body = {"label": "available", "idempotency_key": "same"}
    r1 = c.post(f"/api/items/{item_id}/annotations/", body, content_type="application/json")
    r2 = c.post(f"/api/items/{item_id}/annotations/", body, content_type="application/json")
    assert (r1.status_code, r2.status_code) == (201, 200)
    assert r1.json()["annotation_id"] == r2.json()["annotation_id"]
    qa = client_for(make_user("qa"))
    r = qa.post(
        f"/api/items/{done_item}/reviews/", {"action": "reject"}, content_type="application/json"
    )
    assert r.status_code == 400 and "reason" in r.json()["detail"]


def test_empty_queue_204():
    project = make_project(n_items=0)
    r = client_for(make_user("annotator")).post(f"/api/projects/{project.slug}/next/")
    assert r.status_code == 204


def test_query_budget_api_token_auth():
    project = make_project(overlap=2, n_items=20)
    u = make_user("annotator")
    c = client_for(u)
    for _ in range(2):  # warm-up (schema cache, cursor)
        item_id = c.post(f"/api/projects/{project.slug}/next/").json()["item_id"]
        c.post(
            f"/api/items/{item_id}/annotations/",
            {"label": "available", "idempotency_key": f"w{item_id}"},
            content_type="application/json",
        )
    with CaptureQueriesContext(connection) as ctx:
        r = c.post(f"/api/projects/{project.slug}/next/")
    assert r.status_code == 200
    assert len(work_queries(ctx)) <= 4, work_queries(ctx)
    item_id = r.json()["item_id"]
    with CaptureQueriesContext(connection) as ctx:
        r = c.post(
            f"/api/items/{item_id}/annotations/",
            {"label": "available", "idempotency_key": "q"},
            content_type="application/json",
        )
    assert r.status_code == 201
    assert len(work_queries(ctx)) <= 4, work_queries(ctx)
    assert not any("SAVEPOINT" in q for q in work_queries(ctx))


def test_schema_is_clean():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "/api/projects/{slug}/next/" in schema["paths"]
    assert "/api/items/{item_id}/annotations/" in schema["paths"]
