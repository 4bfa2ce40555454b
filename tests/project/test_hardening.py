"""Issue 12 (part A): authorization holes, 500s from input, limits, problem responses."""

from __future__ import annotations

import json

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, RequestFactory
from django.utils import timezone

from annotation import services
from annotation.models import Assignment
from core.api import ApiProblemMiddleware
from jobs.services import enqueue_job
from tests.factories import PASSWORD, make_project, make_token, make_user

pytestmark = pytest.mark.django_db
HUGE = 10**30


def api(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {make_token(user)}")


def session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def is_problem(response, status) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and response["Content-Type"].startswith("application/problem+json")
        and body["status"] == status
        and {"type", "title", "detail"} <= set(body)
    )


@pytest.fixture
def member_project():
    member = make_user("annotator")
    project = make_project(n_items=4, overlap=1)
    project.annotators.add(member)
    return project, member


# --- 1. the lease calls follow the policy -------------------------------------------------------
@pytest.mark.parametrize("how", ["removed", "archived"])
def test_a_lease_outlives_neither_membership_nor_archival(member_project, how):
    project, member = member_project
    client = api(member)
    item_id = client.post(f"/api/projects/{project.slug}/next/").json()["item_id"]
    if how == "removed":
        project.annotators.remove(member)
        project.annotators.add(make_user("annotator"))  # membership stays restricted
    else:
        project.archived = True
        project.save(update_fields=["archived"])
    assert is_problem(client.post(f"/api/items/{item_id}/heartbeat/"), 403)
    body = {"label": "available", "idempotency_key": "k"}
    r = client.post(f"/api/items/{item_id}/annotations/", body, content_type="application/json")
    assert is_problem(r, 403)
    assert is_problem(client.post(f"/api/items/{item_id}/skip/"), 403)
    # The browser routes say the same.
    page = session(member)
    r = page.post(
        f"/label/{project.slug}/items/{item_id}/submit/", body, content_type="application/json"
    )
    assert r.status_code == 403
    lease = Assignment.objects.get(item_id=item_id)
    assert lease.status == Assignment.Status.ACTIVE and not lease.item.annotations.exists()


def test_heartbeat_never_relets_an_expired_lease_to_a_removed_member(member_project):
    project, member = member_project
    lease = services.claim_next_item(project=project, annotator=member)
    Assignment.objects.filter(pk=lease.pk).update(
        status=Assignment.Status.EXPIRED, expires_at=timezone.now()
    )
    project.annotators.remove(member)
    project.annotators.add(make_user("annotator"))
    assert api(member).post(f"/api/items/{lease.item_id}/heartbeat/").status_code == 403
    assert list(Assignment.objects.values_list("status", flat=True)) == ["expired"]


def test_image_bytes_follow_project_membership(member_project):
    project, member = member_project
    item = project.items.select_related("creative").first()
    creative, product = item.creative_id, item.creative.product_id
    urls = [f"/images/creatives/{creative}/", f"/images/products/{product}/"]
    outsider = session(make_user("annotator"))
    for url in urls:
        assert session(member).get(url).status_code == 200
        assert session(make_user("qa")).get(url).status_code == 200
        assert outsider.get(url).status_code == 403
    project.archived = True
    project.save(update_fields=["archived"])
    assert session(member).get(urls[0]).status_code == 403


def test_api_image_urls_are_served(member_project):
    project, member = member_project
    payload = api(member).post(f"/api/projects/{project.slug}/next/").json()
    page = session(member)
    for key in ("image_url", "thumbnail_url", "product_image_url"):
        assert payload[key].startswith("/images/"), payload[key]
        assert page.get(payload[key]).status_code == 200


def test_qa_reads_job_pages():
    job = enqueue_job(kind="demo", params={"steps": 1})
    qa = session(make_user("qa"))
    assert qa.get("/jobs/").status_code == 200
    assert qa.get(f"/jobs/{job.pk}/").status_code == 200
    assert qa.post(f"/jobs/{job.pk}/cancel/").status_code == 403


# --- 2. no 500 from input --------------------------------------------------------------------
def test_ids_beyond_64_bits_are_404(member_project):
    project, member = member_project
    client = api(make_user("ml_engineer"))
    for path in (
        f"/api/items/{HUGE}/heartbeat/",
        f"/api/items/{2**63}/",
        f"/api/items/{2**63 - 1}/",
        f"/api/jobs/{HUGE}/",
        f"/api/creatives/{HUGE}/scores/",
    ):
        method = client.post if path.endswith("heartbeat/") else client.get
        assert is_problem(method(path), 404), path
    page = session(make_user("ml_engineer"))
    assert page.get(f"/images/creatives/{HUGE}/").status_code == 404
    assert page.get(f"/qa/{project.slug}/?item={HUGE}").status_code == 404


def test_browser_routes_enforce_the_api_limits(member_project):
    project, member = member_project
    page = session(member)
    claim = f"/label/{project.slug}/claim/"
    r = page.post(claim, {"exclude": [HUGE]}, content_type="application/json")
    assert r.status_code == 400 and "exclude" in r.json()["error"]
    r = page.post(claim, {"exclude": list(range(1, 600))}, content_type="application/json")
    assert r.status_code == 400
    item_id = page.post(claim, {}, content_type="application/json").json()["item"]["item_id"]
    submit = f"/label/{project.slug}/items/{item_id}/submit/"
    for bad in ({"duration_ms": 2**40}, {"duration_ms": -1}, {"note": "n" * 100_000}):
        body = {"label": "available", "idempotency_key": "k", **bad}
        r = page.post(submit, body, content_type="application/json")
        assert r.status_code == 400, bad
        assert next(iter(bad)) in r.json()["error"]
    # The same through the API, and the service itself.
    body = {"label": "available", "idempotency_key": "k", "duration_ms": 2**40}
    r = api(member).post(
        f"/api/items/{item_id}/annotations/", body, content_type="application/json"
    )
    assert is_problem(r, 400) and "duration_ms" in r.json()["errors"]


def test_reject_reason_length_is_limited_everywhere(member_project):
    project, member = member_project
    lease = services.claim_next_item(project=project, annotator=member)
    services.submit_annotation(
        item_id=lease.item_id, annotator=member, label="available", idempotency_key="k"
    )
    qa = make_user("qa")
    reason = "r" * 100_000
    r = session(qa).post(
        f"/qa/{project.slug}/items/{lease.item_id}/review/", {"action": "reject", "reason": reason}
    )
    assert r.status_code == 400
    r = api(qa).post(
        f"/api/items/{lease.item_id}/reviews/",
        {"action": "reject", "reason": reason},
        content_type="application/json",
    )
    assert is_problem(r, 400) and "reason" in r.json()["errors"]
    assert not lease.item.reviews.exists()


def test_page_size_is_capped(member_project, settings):
    settings.RFSTUDIO_MAX_PAGE_SIZE = 3
    project, _ = member_project
    for i in range(5):
        enqueue_job(kind="demo", params={"steps": 1}, idempotency_key=f"j{i}")
    client = api(make_user("ml_engineer"))
    r = client.get("/api/jobs/", {"limit": str(HUGE), "offset": str(HUGE)})
    assert r.status_code == 200 and r.json()["results"] == []
    r = client.get("/api/jobs/", {"limit": str(HUGE)})
    assert r.status_code == 200 and len(r.json()["results"]) == 3
    r = client.get(f"/api/projects/{project.slug}/review-queue/", {"limit": str(HUGE)})
    assert r.status_code == 200 and "results" in r.json()


def test_unknown_status_filters_are_400():
    client = api(make_user("ml_engineer"))
    assert is_problem(client.get("/api/jobs/", {"status": "bogus"}), 400)
    assert is_problem(client.get("/api/feedback/models/", {"status": "bogus"}), 400)


# --- problem documents ----------------------------------------------------------------------------
def test_every_api_error_is_a_problem_document():
    client = api(make_user("annotator"))
    assert is_problem(client.get("/api/no-such-thing/"), 404)
    assert is_problem(Client().get("/api/no-such-thing/"), 404)
    assert is_problem(client.get("/api/jobs/"), 403)
    r = Client().post("/api/projects/x/next/")
    assert is_problem(r, 401) and r["WWW-Authenticate"].startswith("Token")
    # An unexpected exception under /api/ is a logged 500 problem, not Django's HTML page.
    request = RequestFactory().get("/api/anything/")
    response = ApiProblemMiddleware(lambda r: None).process_exception(request, RuntimeError("x"))
    assert response.status_code == 500
    assert json.loads(response.content)["title"] == "Internal Server Error"


def test_anonymous_gets_401_from_every_api_operation():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    client = Client()
    for path, item in schema["paths"].items():
        concrete = path.replace("{slug}", "x").replace("{name}", "x")
        concrete = concrete.replace("{item_id}", "1").replace("{id}", "1")
        for method in item:
            r = getattr(client, method)(concrete)
            assert r.status_code == 401, (method, path, r.status_code)


# --- 3. limits ---------------------------------------------------------------------------------
def test_login_lockout(settings):
    settings.AXES_FAILURE_LIMIT = 3
    user = make_user("annotator")
    client = Client()
    for _ in range(3):
        r = client.post("/accounts/login/", {"username": user.username, "password": "wrong"})
    r = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert r.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another username from the same address is not locked.
    other = make_user("annotator")
    r = client.post("/accounts/login/", {"username": other.username, "password": PASSWORD})
    assert r.status_code == 302


def test_throttles_per_user_and_per_anonymous_ip(settings):
    settings.RFSTUDIO_THROTTLE_ANON = "3/min"
    settings.RFSTUDIO_THROTTLE_USER = "4/min"
    anonymous = Client()
    codes = [anonymous.get("/api/projects/").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    guesser = Client(HTTP_AUTHORIZATION="Token nope", REMOTE_ADDR="10.0.0.9")
    codes = [guesser.get("/api/projects/").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    user_a, user_b = api(make_user("annotator")), api(make_user("annotator"))
    codes = [user_a.get("/api/projects/").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    r = user_a.get("/api/projects/")
    assert is_problem(r, 429) and int(r["Retry-After"]) > 0
    assert user_b.get("/api/projects/").status_code == 200  # per user


def test_request_size_caps(settings, member_project):
    project, member = member_project
    settings.RFSTUDIO_MAX_UPLOAD_BYTES = 10_000
    client = api(make_user("ml_engineer"))
    r = client.post(
        f"/api/projects/{project.slug}/import/",
        data=b"x" * 20_000,
        content_type="multipart/form-data; boundary=zzz",
    )
    assert is_problem(r, 413)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    item_id = api(member).post(f"/api/projects/{project.slug}/next/").json()["item_id"]
    body = {"label": "available", "idempotency_key": "k", "note": "n" * 1500}
    r = api(member).post(
        f"/api/items/{item_id}/annotations/", body, content_type="application/json"
    )
    assert is_problem(r, 413)


def test_insecure_dev_key_is_refused_outside_debug(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = settings.INSECURE_DEV_KEY
    assert [e.id for e in run_checks()] == ["core.E001"]
    with pytest.raises(SystemCheckError, match="core.E001"):
        call_command("check", "--deploy")
    settings.DEBUG = True
    assert "core.E001" not in [e.id for e in run_checks()]


def test_swagger_ui_comes_from_our_static_files():
    r = Client().get("/api/docs/")
    html = r.content.decode()
    assert r.status_code == 200 and "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert "cdn." not in html and "unpkg" not in html
