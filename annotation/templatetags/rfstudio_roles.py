"""`{% load rfstudio_roles %}` … `{% if user|has_role:"qa,ml_engineer" %}`: role checks in templates
(the navigation in base.html), delegating to core.roles so there is one definition of a role."""

from django import template

from core.roles import has_role as _has_role

register = template.Library()


@register.filter
def has_role(user, roles: str) -> bool:
    return _has_role(user, *[r.strip() for r in roles.split(",") if r.strip()])
