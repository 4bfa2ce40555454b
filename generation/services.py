"""Writes for products and creatives. Files go into default storage under content-addressed names
(see generation.images.content_name), so storing the same bytes twice is a no-op."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction

from generation import images
from generation.models import Creative, Product

# SQLite allows 32766 bound parameters per statement; stay well below for `IN (...)` look-ups.
LOOKUP_CHUNK = 5000
BATCH_SIZE = 2000


def store_content(*, prefix: str, sha256: str, extension: str, source_path=None, data=None) -> str:
    """Save the bytes under their content-addressed name unless already there; return the name."""
    name = images.content_name(prefix, sha256, extension)
    if default_storage.exists(name):
        return name
    if data is not None:
        saved = default_storage.save(name, ContentFile(data))
    else:
        with open(source_path, "rb") as fh:
            saved = default_storage.save(name, File(fh))
    if saved != name:  # a concurrent writer stored the same content first: keep one copy
        default_storage.delete(saved)
    return name


def get_or_create_product(*, sku: str, image_path: str | Path, title="", category="") -> Product:
    """The product with this SKU, created (image validated and stored) when new."""
    existing = Product.objects.filter(sku=sku).first()
    if existing is not None:
        return existing
    info = images.inspect_image(image_path)
    name = store_content(
        prefix="products", sha256=info.sha256, extension=info.extension, source_path=image_path
    )
    with transaction.atomic():
        product, _ = Product.objects.get_or_create(
            sku=sku,
            defaults=dict(
                title=title,
                category=category,
                image=name,
                sha256=info.sha256,
                width=info.width,
                height=info.height,
            ),
        )
    return product


def create_creative(
    *, product: Product, image_path: str | Path, thumbnail=True, **fields
) -> tuple[Creative, bool]:
    """Validate and store one generated image; (creative, created). Same bytes → same row."""
    processed = images.process_file(str(image_path), make_thumbnail=thumbnail)
    if processed.error:
        raise images.BadImage(processed.error)
    info = processed.info
    existing = Creative.objects.filter(sha256=info.sha256).first()
    if existing is not None:
        return existing, False
    name = store_content(
        prefix="creatives", sha256=info.sha256, extension=info.extension, source_path=image_path
    )
    thumb = ""
    if processed.thumbnail:
        thumb = store_content(
            prefix="thumbnails", sha256=info.sha256, extension="webp", data=processed.thumbnail
        )
    with transaction.atomic():
        return Creative.objects.get_or_create(
            sha256=info.sha256,
            defaults=dict(
                product=product,
                image=name,
                thumbnail=thumb,
                width=info.width,
                height=info.height,
                **fields,
            ),
        )


@dataclass
class ProductRow:
    sku: str
    image: str  # storage name
    sha256: str
    width: int
    height: int
    title: str = ""
    category: str = ""


@dataclass
class CreativeRow:
    sku: str
    image: str
    thumbnail: str
    sha256: str
    width: int
    height: int
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    generator: str = ""
    generator_version: str = ""
    params: dict = field(default_factory=dict)
    external_id: str = ""


def _chunks(seq: list, size: int = LOOKUP_CHUNK) -> Iterable[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def product_ids_by_sku(skus: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(set(skus))):
        out.update(Product.objects.filter(sku__in=chunk).values_list("sku", "id"))
    return out


def creative_ids_by_sha(shas: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(set(shas))):
        out.update(Creative.objects.filter(sha256__in=chunk).values_list("sha256", "id"))
    return out


def bulk_get_or_create_products(rows: Iterable[ProductRow]) -> dict[str, int]:
    """Insert the products whose SKU is new (existing ones are left as they are); sku → id."""
    rows = {r.sku: r for r in rows}
    with transaction.atomic():
        have = product_ids_by_sku(rows)
        new = [
            Product(
                sku=r.sku,
                title=r.title,
                category=r.category,
                image=r.image,
                sha256=r.sha256,
                width=r.width,
                height=r.height,
            )
            for sku, r in rows.items()
            if sku not in have
        ]
        if new:
            # ignore_conflicts: a concurrent import may insert the same SKU; ids re-read below.
            Product.objects.bulk_create(new, batch_size=BATCH_SIZE, ignore_conflicts=True)
            have.update(product_ids_by_sku([p.sku for p in new]))
    return have


def bulk_get_or_create_creatives(
    rows: Iterable[CreativeRow], product_ids: dict[str, int]
) -> tuple[dict[str, int], int]:
    """Insert creatives whose sha256 is new; returns (sha256 → id, number inserted)."""
    rows = {r.sha256: r for r in rows}
    with transaction.atomic():
        have = creative_ids_by_sha(rows)
        new = [
            Creative(
                product_id=product_ids[r.sku],
                image=r.image,
                thumbnail=r.thumbnail,
                sha256=r.sha256,
                width=r.width,
                height=r.height,
                prompt=r.prompt,
                negative_prompt=r.negative_prompt,
                seed=r.seed,
                generator=r.generator,
                generator_version=r.generator_version,
                params=r.params,
                external_id=r.external_id,
            )
            for sha, r in rows.items()
            if sha not in have
        ]
        if new:
            Creative.objects.bulk_create(new, batch_size=BATCH_SIZE, ignore_conflicts=True)
            have.update(creative_ids_by_sha([c.sha256 for c in new]))
    return have, len(new)
