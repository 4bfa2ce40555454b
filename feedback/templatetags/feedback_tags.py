"""`{% load feedback_tags %}{% rfnet_verdict item %}`: RFNet's verdict beside the human labels.

Template tag libraries are resolved by name at render time, so annotation's QA templates can show
the verdict without annotation code importing feedback. Annotators never see it (blind labeling).
"""

from django import template

from core.policy import can_review

from ..selectors import verdict_for_item

register = template.Library()


@register.inclusion_tag("feedback/_verdict_card.html", takes_context=True)
def rfnet_verdict(context, item):
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if item is None or not can_review(user):
        return {"verdict": None}
    return {"verdict": verdict_for_item(item)}
