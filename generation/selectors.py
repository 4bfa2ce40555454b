"""Reads for the diffusion-model registry and generated images."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from generation.models import Creative, DiffusionModel, Generation, Product


def resolve_diffusion_model(name: str) -> DiffusionModel:
    """The entry called `name`; `latest` = the newest ready entry (contract 2). Raises
    ValidationError naming what was asked for."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("No diffusion model given.")
    if name == "latest":
        model = DiffusionModel.objects.filter(status=DiffusionModel.Status.READY).first()
        if model is None:
            raise ValidationError("No diffusion model is registered yet ('latest').")
        return model
    model = DiffusionModel.objects.filter(name=name).first()
    if model is None:
        raise ValidationError(f"No diffusion model named {name!r}.")
    return model


def ready_models() -> QuerySet[DiffusionModel]:
    return DiffusionModel.objects.filter(status=DiffusionModel.Status.READY)


def lineage_chain(model: DiffusionModel, limit: int = 20) -> list[DiffusionModel]:
    """The model and its ancestors, newest first."""
    chain, seen = [], set()
    while model is not None and model.pk not in seen and len(chain) < limit:
        chain.append(model)
        seen.add(model.pk)
        model = model.parent
    return chain


def generations_of_job(job_id: int) -> QuerySet[Generation]:
    return (
        Generation.objects.filter(job_id=job_id)
        .select_related("creative", "product", "model")
        .order_by("product__sku", "group", "attempt")
    )


def generations_of_product(product: Product) -> QuerySet[Generation]:
    return (
        Generation.objects.filter(product=product)
        .select_related("creative", "model")
        .order_by("-id")
    )


def generation_of_creative(creative: Creative) -> Generation | None:
    return (
        Generation.objects.filter(creative=creative)
        .select_related("model", "model__parent", "product")
        .order_by("id")
        .first()
    )


def select_products(*, skus=(), category: str = "", all_products: bool = False):
    """Products named by SKU, by category (prefix: 'beauty' matches 'beauty/makeup') or all.
    Unknown SKUs raise ValidationError naming them."""
    qs = Product.objects.order_by("sku")
    if all_products:
        return qs
    if skus:
        skus = list(dict.fromkeys(skus))
        found = list(qs.filter(sku__in=skus))
        missing = sorted(set(skus) - {p.sku for p in found})
        if missing:
            raise ValidationError(f"Unknown SKU(s): {', '.join(missing[:10])}.")
        return qs.filter(sku__in=skus)
    if category:
        matched = qs.filter(category=category) | qs.filter(category__startswith=f"{category}/")
        return matched.order_by("sku")
    raise ValidationError("Choose products: SKUs, a category, or all.")
