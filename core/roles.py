"""The three user roles. Groups are created after `migrate`; each app grants its own permissions
to them in its AppConfig.ready() via `grant()` so no app needs to know another's permissions."""

from collections.abc import Iterable

ANNOTATOR = "annotator"
QA = "qa"
ML_ENGINEER = "ml_engineer"
ROLES = (ANNOTATOR, QA, ML_ENGINEER)


def has_role(user, *roles: str) -> bool:
    """Superusers have every role. Group names are cached on the user object per request."""
    if not user or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_rfstudio_roles", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._rfstudio_roles = cached
    return any(role in cached for role in roles)


def grant(role: str, perms: Iterable[str]) -> None:
    """Give `role` the permissions named "app_label.codename" (idempotent; run after migrate)."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=role)
    for perm in perms:
        app_label, codename = perm.split(".", 1)
        permission = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if permission is not None:
            group.permissions.add(permission)


def ensure_roles(**kwargs) -> None:
    from django.contrib.auth.models import Group

    for role in ROLES:
        Group.objects.get_or_create(name=role)
