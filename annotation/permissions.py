"""Who may do what. Annotators label (only projects they are members of; empty membership = all
annotators); QA reviews and reads labels; ml_engineer and superusers may do everything."""

from rest_framework.permissions import BasePermission

from core.roles import ANNOTATOR, ML_ENGINEER, QA, has_role

LABEL_ROLES = (ANNOTATOR, ML_ENGINEER)
REVIEW_ROLES = (QA, ML_ENGINEER)


def can_label(user) -> bool:
    return has_role(user, *LABEL_ROLES)


def can_review(user) -> bool:
    return has_role(user, *REVIEW_ROLES)


def can_label_project(user, project) -> bool:
    """`project` may carry `has_members` / `is_member` annotations (selectors.project_for_user)
    to spare the membership queries."""
    if not can_label(user) or project.archived:
        return False
    if user.is_superuser or has_role(user, ML_ENGINEER):
        return True
    has_members = getattr(project, "has_members", None)
    if has_members is None:
        has_members = project.annotators.exists()
    if not has_members:
        return True
    is_member = getattr(project, "is_member", None)
    if is_member is None:
        is_member = project.annotators.filter(pk=user.pk).exists()
    return bool(is_member)


class CanLabel(BasePermission):
    message = "Only annotators may label."

    def has_permission(self, request, view):
        return can_label(request.user)


class CanReview(BasePermission):
    message = "Only QA reviewers and ML engineers may do this."

    def has_permission(self, request, view):
        return can_review(request.user)
