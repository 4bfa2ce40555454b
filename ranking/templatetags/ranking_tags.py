"""`{% load ranking_tags %}{% similar_creatives item %}`: the "similar creatives" panel on QA item
pages (annotation includes ranking/_similar.html by name; it never imports ranking)."""

from django import template

from core.policy import can_review

from ..selectors import similar_creatives as nearest

register = template.Library()


@register.inclusion_tag("ranking/_similar_panel.html", takes_context=True)
def similar_creatives(context, item, k=6):
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if item is None or user is None or not can_review(user):  # the policy's rule
        return {"similar": None}
    return {"similar": nearest(creative_id=item.creative_id, k=k), "item": item}


@register.filter
def pct(value):
    try:
        return f"{100 * float(value):.1f}%"
    except (TypeError, ValueError):
        return "—"
