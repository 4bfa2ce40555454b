"""The ranking preview page (QA and ML engineers; annotators get 403)."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.policy import rule
from generation.models import Product

from . import selectors


def _side(segment, model, category, usable_only):
    if segment is None or model is None:
        return None
    return {
        "model": model,
        "products": selectors.preview_lists(
            segment=segment, model=model, category=category, usable_only=usable_only
        ),
    }


@require_GET
@rule("reviewer", message="Ranking previews are for QA and ML engineers.")
def preview(request):
    segments = list(selectors.segments_for_preview())
    rankers = list(selectors.rankers())
    slug = request.GET.get("segment") or (segments[0].slug if segments else "")
    segment = next((s for s in segments if s.slug == slug), None)
    error = None
    if slug and segment is None:
        error = f"No segment {slug!r}."
    by_name = {m.name: m for m in rankers}
    model_name = request.GET.get("model") or (rankers[0].name if rankers else "")
    model = by_name.get(model_name)
    compare = by_name.get(request.GET.get("compare") or "")
    if model_name and model is None and rankers:
        error = f"No ranker named {model_name!r}."
    category = request.GET.get("category", "")
    usable_only = request.GET.get("usable") in ("1", "on", "true")
    left = _side(segment, model, category, usable_only)
    right = _side(segment, compare, category, usable_only) if compare else None
    rows = []
    if left:
        right_by_product = {g["product"].pk: g for g in right["products"]} if right else {}
        rows = [
            {"left": g, "right": right_by_product.get(g["product"].pk)} for g in left["products"]
        ]
    context = {
        "segments": segments,
        "segment": segment,
        "rankers": rankers,
        "model": model,
        "compare": compare,
        "categories": Product.objects.exclude(category="")
        .order_by("category")
        .values_list("category", flat=True)
        .distinct(),
        "category": category,
        "usable_only": usable_only,
        "rows": rows,
        "error": error,
    }
    status = 404 if error else 200
    return render(request, "ranking/preview.html", context, status=status)
