"""`{% load ranking_tags %}{% similar_creatives item %}`: the "similar creatives" panel on QA item
pages (annotation includes ranking/_similar.html by name; it never imports ranking)."""

from django import template

from core.roles import ML_ENGINEER, QA, has_role

from ..selectors import similar_creatives as nearest

register = template.Library()


@register.inclusion_tag("ranking/_similar_panel.html", takes_context=True)
def similar_creatives(context, item, k=6):
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if item is None or not has_role(user, QA, ML_ENGINEER):
        return {"similar": None}
    return {"similar": nearest(creative_id=item.creative_id, k=k), "item": item}


@register.filter
def pct(value):
    try:
        return f"{100 * float(value):.1f}%"
    except (TypeError, ValueError):
        return "—"
