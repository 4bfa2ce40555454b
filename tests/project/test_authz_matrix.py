"""The authorization matrix, generated from the URL conf and the OpenAPI schema.

Every URL pattern and every API operation must declare a core.policy rule (a new endpoint without
one fails `test_every_endpoint_declares_a_rule`). Each is then requested as anonymous / annotator
member / annotator non-member / QA / ML engineer / superuser on an active and on an archived
project, and the answer must match the table below — which is written out here, independently of
core.policy, as the specification:

| rule          | anonymous | member | non-member | qa | ml | superuser | archived       |
|---------------|-----------|--------|------------|----|----|-----------|----------------|
| public        | yes       | yes    | yes        | yes| yes| yes       | same           |
| authenticated | -         | yes    | yes        | yes| yes| yes       | same           |
| labeler       | -         | yes    | yes        | -  | yes| yes       | same           |
| label         | -         | yes    | -          | -  | yes| yes       | nobody         |
| reviewer      | -         | -      | -          | yes| yes| yes       | same           |
| review        | -         | -      | -          | yes| yes| yes       | nobody         |
| read_project  | -         | yes    | -          | yes| yes| yes       | reviewers only |
| ml_engineer   | -         | -      | -          | -  | yes| yes       | same           |
| import        | -         | -      | -          | -  | yes| yes       | nobody         |
| jobs_read     | -         | -      | -          | yes| yes| yes       | same           |
| jobs_manage   | -         | -      | -          | -  | yes| yes       | same           |
| staff         | -         | -      | -          | -  | -  | yes       | same           |

"Allowed" means the answer is neither 401/403 nor a redirect to a login page nor a 5xx (a 404 for
a made-up id, a 400 for an empty body, a 405, a 409 are all fine: the request got past the
policy). "Denied" means 401 (anonymous API), 403, or a redirect to the login page (anonymous
browser / admin)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from drf_spectacular.generators import SchemaGenerator

from annotation import services
from core.policy import declared_rule
from tests.factories import make_creatives, make_project, make_user

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "member", "nonmember", "qa", "ml_engineer", "superuser"]
PROJECT_RULES = {"label", "review", "read_project", "import"}
ALLOW = {
    "public": set(ROLES),
    "authenticated": set(ROLES) - {"anonymous"},
    "labeler": {"member", "nonmember", "ml_engineer", "superuser"},
    "label": {"member", "ml_engineer", "superuser"},
    "reviewer": {"qa", "ml_engineer", "superuser"},
    "review": {"qa", "ml_engineer", "superuser"},
    "read_project": {"member", "qa", "ml_engineer", "superuser"},
    "ml_engineer": {"ml_engineer", "superuser"},
    "import": {"ml_engineer", "superuser"},
    "jobs_read": {"qa", "ml_engineer", "superuser"},
    "jobs_manage": {"ml_engineer", "superuser"},
    "staff": {"superuser"},
}
ARCHIVED_ALLOW = {
    "label": set(),
    "review": set(),
    "import": set(),
    "read_project": {"qa", "ml_engineer", "superuser"},
}


def expected(rule: str, role: str, archived: bool) -> bool:
    if archived and rule in ARCHIVED_ALLOW:
        return role in ARCHIVED_ALLOW[rule]
    return role in ALLOW[rule]


# --- the endpoints --------------------------------------------------------------------------
def _walk(patterns, prefix="", namespace=None):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern), p.namespace or namespace)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p, namespace


def url_patterns():
    """(route, pattern, namespace) for every pattern of the URL conf, API included."""
    return list(_walk(get_resolver().url_patterns))


def api_operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (path, method.upper())
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_every_endpoint_declares_a_rule():
    missing = []
    for route, pattern, namespace in url_patterns():
        if not declared_rule(pattern.callback, url_name=pattern.name, namespace=namespace):
            missing.append(route)
    for path, method in api_operations():
        match = resolve(_fill_schema_path(path, _FAKE))
        if not declared_rule(match.func, url_name=match.url_name, method=method):
            missing.append(f"{method} {path}")
    assert not missing, f"endpoints without a core.policy rule: {missing}"
    # The rules the endpoints name are the ones the table specifies.
    names = {
        declared_rule(p.callback, url_name=p.name, namespace=ns) for _, p, ns in url_patterns()
    }
    names = {part for n in names for part in n.split("|")}
    assert names <= set(ALLOW), names - set(ALLOW)


# --- filling in URL arguments ------------------------------------------------------------------
_FAKE = {"slug": "nope", "item_id": "1", "pk": "1", "id": "1", "name": "nope", "job_id": "1"}


def _fill_schema_path(path: str, values: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), "1")), path)


def _route_to_path(route: str, values: dict) -> str | None:
    """A concrete path for a route (`<id:item_id>` / regex groups); None for what we skip."""
    route = route.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\.", ".")

    def value(name):
        return str(values.get(name, "1"))

    out = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: value(m.group(1)), route)
    out = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: value(m.group(1)), out)
    if re.search(r"[()\[\]\\*+?]", out):
        return None  # a regex we cannot fill (format suffixes): covered by its plain twin
    return "/" + out


@pytest.fixture
def world():
    """One active and one archived project, both with a member list, an item to label, a
    finished item for QA, their creatives and products."""
    member = make_user("annotator")
    users = {
        "anonymous": None,
        "member": member,
        "nonmember": make_user("annotator"),
        "qa": make_user("qa"),
        "ml_engineer": make_user("ml_engineer"),
        "superuser": make_user("superuser"),
    }
    states = {}
    for archived in (False, True):
        project = make_project(overlap=1, qa_sample_rate=1.0)
        project.annotators.add(member)
        creatives = make_creatives(3)
        services.add_creatives_to_project(project=project, creatives=creatives)
        lease = services.claim_next_item(project=project, annotator=member)
        services.submit_annotation(
            item_id=lease.item_id,
            annotator=member,
            label="available",
            idempotency_key=f"seed-{archived}",
        )
        open_item = project.items.exclude(pk=lease.item_id).first()
        if archived:
            project.archived = True
            project.save(update_fields=["archived"])
        states[archived] = {
            "slug": project.slug,
            "item_id": open_item.pk,
            "creative": creatives[0].pk,
            "product": creatives[0].product_id,
            "job_id": 1,
            "artifact_id": 1,
            "name": "nope",
            "action": "promote",
            "object_id": "1",
            "app_label": "annotation",
            "content_type_id": "1",
            "uidb64": "MQ",
            "token": "set-password",
        }
    return users, states


def _values_for(pattern_name: str | None, route: str, base: dict) -> dict:
    values = dict(base)
    # `pk` names a creative (images, scores) or a product (product images).
    values["pk"] = base["product"] if "products" in route else base["creative"]
    values["id"] = values["pk"]
    return values


def _client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _denied(response, *, admin=False) -> bool:
    if admin:
        # The site's rule (staff) sends others to its login page; inside, a ModelAdmin may still
        # refuse add/delete to everyone (read-only queue data): that 403 is not the site's rule.
        return response.status_code in (301, 302) and "login" in response.get("Location", "")
    if response.status_code in (401, 403):
        return True
    if response.status_code in (301, 302):
        location = response.get("Location", "")
        return "login" in location
    return False


def _project_scoped(route: str) -> bool:
    return any(k in route for k in ("slug", "item_id", "images/"))


@pytest.mark.parametrize("role", ROLES)
def test_matrix(world, role, settings):
    settings.RFSTUDIO_THROTTLE_ANON = ""  # hundreds of anonymous requests in a second
    settings.RFSTUDIO_THROTTLE_USER = ""
    users, states = world
    client = _client(users[role])
    wrong = []

    def check(method, path, rule, archived, admin=False):
        response = (
            getattr(client, method.lower())(
                path, data={} if method == "POST" else None, content_type="application/json"
            )
            if method == "POST"
            else client.get(path)
        )
        if response.status_code == 405:
            return False
        allowed = expected(rule, role, archived)
        if response.status_code >= 500:
            wrong.append(f"{method} {path}: {response.status_code}")
        elif allowed and _denied(response, admin=admin):
            wrong.append(f"{method} {path} [{rule}] denied {response.status_code}, expected ok")
        elif not allowed and not _denied(response, admin=admin):
            wrong.append(f"{method} {path} [{rule}] got {response.status_code}, expected denied")
        return True

    seen = set()
    # 1. Every URL pattern (pages, images, API, admin): GET, and POST outside the admin.
    for route, pattern, namespace in url_patterns():
        rule = declared_rule(pattern.callback, url_name=pattern.name, namespace=namespace)
        if pattern.name in ("logout", "autocomplete"):
            # logout would end this client's session; the admin's autocomplete answers 403 to a
            # bare request even for staff (it needs app/model/field parameters).
            continue
        for archived in (False, True) if _project_scoped(route) else (False,):
            values = _values_for(pattern.name, route, states[archived])
            path = _route_to_path(route, values)
            if path is None:
                continue
            methods = ["GET"] if namespace == "admin" else ["GET", "POST"]
            answered = False
            for method in methods:
                per_method = declared_rule(
                    pattern.callback, url_name=pattern.name, namespace=namespace, method=method
                )
                if per_method is None and "|" in (rule or ""):
                    continue
                answered |= check(
                    method, path, per_method or rule, archived, admin=namespace == "admin"
                )
                seen.add((method, path))
            assert answered, f"{route}: no method answered"
    # 2. Every API operation of the schema (PUT/PATCH/DELETE included when there are any).
    for schema_path, method in api_operations():
        for archived in (False, True) if _project_scoped(schema_path) else (False,):
            values = _values_for(None, schema_path, states[archived])
            path = _fill_schema_path(schema_path, values)
            if (method, path) in seen:
                continue
            match = resolve(path)
            rule = declared_rule(match.func, url_name=match.url_name, method=method)
            check(method, path, rule, archived)
    assert not wrong, "\n".join(wrong)
