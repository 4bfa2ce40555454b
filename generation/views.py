"""Generation pages: a run (a generate / recurrent job) as a grid per product with RFNet's
verdicts, a product with every creative generated for it, a creative's provenance and lineage.
For ML engineers, QA and staff (annotators label blind: they never see verdicts or models)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from core.policy import rule
from jobs.models import Job

from . import page_data, selectors
from .models import Creative, Product


@require_GET
@rule("reviewer", message="Generation pages are for ML engineers and QA.")
def run_page(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id)
    kept = request.GET.get("kept", "")
    if kept not in ("", "1", "0"):
        kept = ""
    ctx = page_data.run_context(job=job, kept=kept)
    return render(request, "generation/run.html", ctx)


@require_GET
@rule("reviewer", message="Generation pages are for ML engineers and QA.")
def product_page(request, sku: str):
    product = get_object_or_404(Product, sku=sku)
    return render(request, "generation/product.html", page_data.product_context(product=product))


@require_GET
@rule("reviewer", message="Generation pages are for ML engineers and QA.")
def creative_page(request, pk: int):
    creative = get_object_or_404(Creative.objects.select_related("product"), pk=pk)
    return render(
        request, "generation/creative.html", page_data.creative_context(creative=creative)
    )


@require_GET
@rule("reviewer", message="Generation pages are for ML engineers and QA.")
def creative_image(request, pk: int):
    creative = get_object_or_404(Creative, pk=pk)
    field = creative.thumbnail if request.GET.get("thumb") and creative.thumbnail else None
    field = field or creative.image
    try:
        fh = field.storage.open(field.name, "rb")
    except FileNotFoundError:
        raise Http404("The image file is missing from storage.") from None
    response = FileResponse(fh)
    patch_cache_control(response, private=True, max_age=86400, immutable=True)
    return response


@require_GET
@rule("reviewer", message="Generation pages are for ML engineers and QA.")
def style_reference_image(request, pk: int):
    """The style reference a creative was generated with (named in its provenance)."""
    creative = get_object_or_404(Creative, pk=pk)
    style = (creative.params or {}).get("style_reference")
    if not isinstance(style, dict) or not style.get("image"):
        raise Http404("This creative was generated without a style reference.")
    try:
        name, data = selectors.style_reference_bytes(style["image"])
    except ValidationError:
        raise Http404("The style reference is missing from storage.") from None
    response = HttpResponse(
        data, content_type=_CONTENT_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    )
    patch_cache_control(response, private=True, max_age=86400, immutable=True)
    return response


_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp",
                  "gif": "image/gif", "bmp": "image/bmp"}  # fmt: skip
