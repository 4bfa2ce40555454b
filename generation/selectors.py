"""Reads for the diffusion-model registry and generated images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import QuerySet

from generation.models import Creative, DiffusionModel, Generation, Product

# Stored images a style reference may name: uploaded references and any creative or product
# image (all content addressed, so a name always means the same bytes).
STYLE_REFERENCE_SOURCES = ("style_references", "creatives", "products")


@dataclass(frozen=True)
class StyleReference:
    name: str  # storage name
    sha256: str  # of the stored bytes
    width: int
    height: int


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


def style_reference_error(model: DiffusionModel) -> str | None:
    """Why `model` cannot take a style reference (None: it can). One wording for form and CLI."""
    if model.supports_style_reference:
        return None
    return (
        f"Diffusion model {model.name!r} has no IP-Adapter, so it cannot follow a style "
        "reference: register one with --ip-adapter FILE --image-encoder DIR."
    )


def _style_name(name: str) -> str:
    name = (name or "").strip()
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or "\\" in name or ".." in parts:
        raise ValidationError(f"Bad style reference name {name!r}.")
    if parts[0] not in STYLE_REFERENCE_SOURCES:
        raise ValidationError(
            f"Style reference {name!r}: give a stored image under "
            f"{', '.join(p + '/' for p in STYLE_REFERENCE_SOURCES)} (upload one with "
            "POST /api/generation/style-references/)."
        )
    return name


def style_reference_bytes(name: str) -> tuple[str, bytes]:
    """(name, bytes) of a stored style reference, read through the storage API; ValidationError
    for a name outside the allowed folders or a missing file."""
    name = _style_name(name)
    try:
        with default_storage.open(name, "rb") as fh:
            return name, fh.read()
    except (FileNotFoundError, OSError):
        raise ValidationError(f"No stored image {name!r}.") from None


def style_reference(name: str) -> StyleReference:
    """A stored style reference, fully decoded (ValidationError when it is not an image)."""
    from generation import images

    name, data = style_reference_bytes(name)
    try:
        info, _ = images.inspect_bytes(data)
    except images.BadImage as exc:
        raise ValidationError(f"Style reference {name!r} is not a usable image: {exc}.") from None
    return StyleReference(name, info.sha256, info.width, info.height)
