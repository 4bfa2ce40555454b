"""Compatibility names for the annotation app: the rules themselves live in core.policy (the one
authorization policy every app calls)."""

from core.policy import (  # noqa: F401 - re-exported
    LABEL_ROLES,
    REVIEW_ROLES,
    can_label,
    can_label_project,
    can_read_project,
    can_review,
    can_review_project,
)
