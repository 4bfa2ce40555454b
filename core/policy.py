"""The authorization policy: the one place that says who may do what.

Every view, API view, image route and admin page asks this module; nothing else decides access.
A decision combines three things:

* **role** (groups `annotator`, `qa`, `ml_engineer`; superusers hold every role),
* **project membership** (a project with an empty annotator list is open to every annotator;
  ML engineers and superusers label everywhere),
* **archival** (an archived project takes no writes at all: no claim, heartbeat, submit, skip,
  undo, review, import; annotators cannot even read it; QA and ML engineers still read it).

Project objects may carry `has_members` / `is_member` annotations (see
`annotation.selectors.project_for_user`) so that a decision costs no query on the hot path.

Each URL declares its rule (`@rule("label")` on a function view, `policy_rule = "label"` on an
API view class, or a `Policy("label")` permission class); `tests/project/test_authz_matrix.py`
walks the URL conf and the OpenAPI schema and fails for any endpoint without one, then checks
every rule against every role, membership and archival state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from core.roles import ANNOTATOR, ML_ENGINEER, QA, has_role

LABEL_ROLES = (ANNOTATOR, ML_ENGINEER)
REVIEW_ROLES = (QA, ML_ENGINEER)


# --- predicates ----------------------------------------------------------------------------------
def is_authenticated(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def can_label(user) -> bool:
    """The role to label at all (some project may still refuse)."""
    return has_role(user, *LABEL_ROLES)


def can_review(user) -> bool:
    """QA and ML engineers: review finished items, read labels, models and datasets."""
    return has_role(user, *REVIEW_ROLES)


def is_ml_engineer(user) -> bool:
    return has_role(user, ML_ENGINEER)


def is_member(user, project) -> bool:
    """Annotator membership; ML engineers and superusers count as members everywhere."""
    if user.is_superuser or has_role(user, ML_ENGINEER):
        return True
    has_members = getattr(project, "has_members", None)
    if has_members is None:
        has_members = project.annotators.exists()
    if not has_members:
        return True
    member = getattr(project, "is_member", None)
    if member is None:
        member = project.annotators.filter(pk=user.pk).exists()
    return bool(member)


def can_label_project(user, project) -> bool:
    """Claim, heartbeat, submit, skip, undo: a labeling role, a member, an active project."""
    return can_label(user) and not project.archived and is_member(user, project)


def can_read_project(user, project) -> bool:
    """See a project's items and images: reviewers always (archived too), labelers while they may
    label it."""
    return can_review(user) or can_label_project(user, project)


def can_review_project(user, project) -> bool:
    """Write a QA review: a reviewer role on an active project."""
    return can_review(user) and not project.archived


def can_import_into(user, project) -> bool:
    """Import a manifest: ML engineers; an existing archived project takes no new items."""
    return is_ml_engineer(user) and (project is None or not project.archived)


def can_read_jobs(user) -> bool:
    """Job pages and API reads: staff, ML engineers and QA (they read model outputs)."""
    return is_authenticated(user) and (user.is_staff or has_role(user, ML_ENGINEER, QA))


def can_manage_jobs(user) -> bool:
    """Launch, cancel, retry."""
    return has_role(user, ML_ENGINEER)


def can_use_admin(user) -> bool:
    return is_authenticated(user) and user.is_staff


# --- rules: what a URL declares ------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A named rule. `check(user)` is the role part (decided before the view runs); `project` says
    which per-project predicate the view applies once it has loaded the project (None: none)."""

    name: str
    check: Callable
    project: Callable | None = None
    description: str = ""


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("public", lambda u: True, description="anyone, also anonymous"),
        Rule("authenticated", is_authenticated, description="any signed-in user"),
        Rule("staff", can_use_admin, description="Django admin (staff)"),
        Rule("labeler", can_label, description="annotators and ML engineers"),
        Rule(
            "label", can_label, can_label_project, "labelers who are members of an active project"
        ),
        Rule("reviewer", can_review, description="QA and ML engineers"),
        Rule("review", can_review, can_review_project, "QA and ML engineers, active project"),
        Rule("read_project", is_authenticated, can_read_project, "reviewers; labeling members"),
        Rule("ml_engineer", is_ml_engineer, description="ML engineers"),
        Rule("import", is_ml_engineer, can_import_into, "ML engineers, active project"),
        Rule("jobs_read", can_read_jobs, description="staff, ML engineers and QA"),
        Rule("jobs_manage", can_manage_jobs, description="ML engineers"),
    )
}


def get_rule(name: str) -> Rule:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"Unknown policy rule {name!r}; one of {', '.join(RULES)}") from None


def deny(message: str = "You may not do this.") -> PermissionDenied:
    return PermissionDenied(message)


def require_project(user, project, rule_name: str, message: str | None = None) -> None:
    """PermissionDenied (→ 403, in the API too) unless `rule_name` allows `user` on `project`."""
    rule = get_rule(rule_name)
    if not rule.check(user) or (rule.project is not None and not rule.project(user, project)):
        if project is not None and getattr(project, "archived", False):
            raise deny(message or "This project is archived.")
        raise deny(message or "You may not do this in this project.")


# --- for function views ----------------------------------------------------------------------
def rule(name: str, *, message: str = "You do not have the role needed for this page."):
    """Declare and enforce the role part of a rule on a function view: anonymous users are sent to
    the login page, signed-in users without the role get 403. Per-project checks happen in the
    view once the project is loaded (`require_project`)."""
    r = get_rule(name)

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if name != "public" and not is_authenticated(request.user):
                return redirect_to_login(request.get_full_path())
            if not r.check(request.user):
                raise PermissionDenied(message)
            return view(request, *args, **kwargs)

        wrapped.policy_rule = name
        return wrapped

    return decorator


# Views we do not write, declared by URL name (django.contrib.auth's account pages) or by
# namespace (the admin site, whose has_permission calls can_use_admin, see core.apps).
EXTERNAL_RULES = {
    "login": "public",
    "logout": "public",
    "password_reset": "public",
    "password_reset_done": "public",
    "password_reset_confirm": "public",
    "password_reset_complete": "public",
    "password_change": "authenticated",
    "password_change_done": "authenticated",
    "admin:login": "public",
    "admin:logout": "public",
}
NAMESPACE_RULES = {"admin": "staff"}


def declared_rule(callback, *, url_name=None, namespace=None, method=None) -> str | None:
    """The rule a URL declared (function view attribute, API view class attribute, a viewset's
    per-action rule for `method`, or the external tables above), or None when it declared none."""
    name = getattr(callback, "policy_rule", None)
    if name:
        return name
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if cls is not None:
        actions = getattr(callback, "actions", None) or {}
        per_action = getattr(cls, "policy_rules", None) or {}
        if actions and per_action:
            if method is not None:
                return per_action.get(actions.get(method.lower()))
            names = {per_action.get(a) for a in actions.values()}
            return None if None in names else "|".join(sorted(names))
        name = getattr(cls, "policy_rule", None)
        if name:
            return name
    if f"{namespace}:{url_name}" in EXTERNAL_RULES:
        return EXTERNAL_RULES[f"{namespace}:{url_name}"]
    if namespace in NAMESPACE_RULES:
        return NAMESPACE_RULES[namespace]
    return EXTERNAL_RULES.get(url_name)


def throttle_anonymous(request, view=None) -> None:
    """Count a refused anonymous call (no or a wrong token) against its IP's anonymous rate, so
    that guessing tokens or probing endpoints is throttled too (429 once over the rate)."""
    from rest_framework.exceptions import Throttled

    from .throttling import AnonThrottle

    throttle = AnonThrottle()
    throttle.refused = True
    if not throttle.allow_request(request, view):
        raise Throttled(throttle.wait())


# --- for DRF ---------------------------------------------------------------------------------
class Policy(BasePermission):
    """DRF permission: the role part of the view's `policy_rule` (or, for a viewset, its
    `policy_rules[action]`). Anonymous users get 401 (authentication classes add the header)."""

    def has_permission(self, request, view) -> bool:
        name = getattr(view, "policy_rule", None)
        per_action = getattr(view, "policy_rules", None)
        if per_action is not None:
            name = per_action.get(getattr(view, "action", None), name)
        if name is None:
            raise PermissionDenied("This endpoint declares no policy rule.")
        r = get_rule(name)
        if name != "public" and not is_authenticated(request.user):
            throttle_anonymous(request, view)  # DRF would throttle only after the 401
            return False
        self.message = f"Only {r.description} may do this."
        return r.check(request.user)
