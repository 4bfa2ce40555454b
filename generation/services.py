"""Writes for products and creatives. Files go into default storage under content-addressed names
(see generation.images.content_name), so storing the same bytes twice is a no-op."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.bulk import allocate_ids, ids_by_key, insert_rows
from generation import images
from generation.models import Creative, Product
from generation.selectors import StyleReference


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


def get_or_create_product(
    *, sku: str, image_path: str | Path, title="", category="", family=""
) -> Product:
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
                family=family or sku,
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
    family: str = ""  # empty: the SKU


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


def product_ids_by_sku(skus: Iterable[str]) -> dict[str, int]:
    return ids_by_key(Product, "sku", skus)


def creative_ids_by_sha(shas: Iterable[str]) -> dict[str, int]:
    return ids_by_key(Creative, "sha256", shas)


def bulk_get_or_create_products(rows: Iterable[ProductRow]) -> dict[str, int]:
    """Insert the products whose SKU is new (existing ones are left as they are); sku → id."""
    rows = {r.sku: r for r in rows}
    with transaction.atomic():
        have = product_ids_by_sku(rows)
        now = timezone.now()
        new = [r for sku, r in rows.items() if sku not in have]
        if new:
            # ignore_conflicts: a concurrent import may insert the same SKU; ids re-read below.
            insert_rows(
                Product,
                [
                    "sku",
                    "title",
                    "category",
                    "family",
                    "image",
                    "sha256",
                    "width",
                    "height",
                    "created_at",
                ],
                (
                    (
                        r.sku,
                        r.title,
                        r.category,
                        r.family or r.sku,
                        r.image,
                        r.sha256,
                        r.width,
                        r.height,
                        now,
                    )
                    for r in new
                ),
                ignore_conflicts=True,
            )
            have.update(product_ids_by_sku([p.sku for p in new]))
    return have


def bulk_get_or_create_creatives(
    rows: Iterable[CreativeRow], product_ids: dict[str, int], *, assume_new: bool = False
) -> tuple[dict[str, int], int]:
    """Insert creatives whose sha256 is new; returns (sha256 → id, number inserted).

    `assume_new`: the caller has just looked these sha256s up and found none (the importer does,
    outside its write transaction) and the look-up is skipped. New rows are inserted with
    pre-allocated ids in a savepoint (no read-back of ids); should a concurrent writer have stored
    one of them since (unique violation), the savepoint is rolled back and the conflict-tolerant
    path runs instead.
    """
    rows = {r.sha256: r for r in rows}
    with transaction.atomic():
        have = {} if assume_new else creative_ids_by_sha(rows)
        now = timezone.now()
        new = [r for sha, r in rows.items() if sha not in have]
        if not new:
            return have, 0
        ids = allocate_ids(Creative, len(new))
        try:
            with transaction.atomic():
                insert_rows(
                    Creative,
                    ["id", *CREATIVE_FIELDS],
                    (
                        (pk, *_creative_values(r, product_ids, now))
                        for pk, r in zip(ids, new, strict=True)
                    ),
                )
        except IntegrityError:
            pass  # a concurrent writer stored some of them since the look-up: slow path
        else:
            have.update(zip((r.sha256 for r in new), ids, strict=True))
            return have, len(new)
        have.update(creative_ids_by_sha([r.sha256 for r in new]))
        rest = [r for r in new if r.sha256 not in have]
        inserted = insert_rows(
            Creative,
            CREATIVE_FIELDS,
            (_creative_values(r, product_ids, now) for r in rest),
            ignore_conflicts=True,
            returning=["sha256", "id"],
        )
        if inserted is None:  # SQLite: our write lock kept everyone else out since the look-up
            have.update(creative_ids_by_sha([r.sha256 for r in rest]))
            return have, len(rest)
        have.update(inserted)
        if len(inserted) < len(rest):  # and yet another writer, between look-up and insert
            have.update(creative_ids_by_sha([r.sha256 for r in rest if r.sha256 not in have]))
    return have, len(inserted)


CREATIVE_FIELDS = [
    "product",
    "image",
    "thumbnail",
    "sha256",
    "width",
    "height",
    "prompt",
    "negative_prompt",
    "seed",
    "generator",
    "generator_version",
    "params",
    "external_id",
    "created_at",
]


def _creative_values(r: CreativeRow, product_ids: dict[str, int], now) -> tuple:
    return (
        product_ids[r.sku],
        r.image,
        r.thumbnail,
        r.sha256,
        r.width,
        r.height,
        r.prompt,
        r.negative_prompt,
        r.seed,
        r.generator,
        r.generator_version,
        r.params,
        r.external_id,
        now,
    )


# -- style references -------------------------------------------------------------------------
STYLE_REFERENCE_PREFIX = "style_references"
STYLE_REFERENCE_MAX_BYTES = 20 * 1024 * 1024


def store_style_reference(*, data: bytes) -> tuple[StyleReference, bool]:
    """Validate an uploaded style-reference image (fully decoded) and store its bytes as they
    are under `style_references/ab/<sha256>.<ext>`; (reference, newly stored).

    Content addressed: the same image uploaded twice is one file, and a job's params name it
    for good (nothing deletes it), so a creative's provenance can always show it. Concurrency:
    two uploads of the same bytes racing keep one copy (store_content); both may report "newly
    stored", which only changes the API's 201/200."""
    if not data:
        raise ValidationError("The style reference is empty.")
    if len(data) > STYLE_REFERENCE_MAX_BYTES:
        raise ValidationError(
            f"The style reference is {len(data) / 2**20:.1f} MiB; at most "
            f"{STYLE_REFERENCE_MAX_BYTES // 2**20} MiB."
        )
    try:
        info, _ = images.inspect_bytes(data)
    except images.BadImage as exc:
        raise ValidationError(f"The style reference is not a usable image: {exc}.") from None
    name = images.content_name(STYLE_REFERENCE_PREFIX, info.sha256, info.extension)
    created = not default_storage.exists(name)
    store_content(prefix=STYLE_REFERENCE_PREFIX, sha256=info.sha256, extension=info.extension,
                  data=data)  # fmt: skip
    return StyleReference(name, info.sha256, info.width, info.height), created


# The diffusion-model registry's writes live in generation.registry; re-exported here so callers
# find every generation write under generation.services.
from generation.registry import (  # noqa: E402, F401
    register_diffusion_model,
    register_finetuned_model,
    register_trained_model,
)


def store_generated(
    *,
    model,
    product: Product,
    image,
    prompt: str,
    negative_prompt: str,
    seed: int,
    provenance: dict,
    group: int,
    attempt: int = 1,
    job=None,
    score: float | None = None,
    kept: bool | None = None,
    gpu_seconds: float = 0.0,
    scratch_dir: str | Path,
):
    """Store one generated image (uint8 HWC array) as a Creative with its provenance, and the
    Generation row linking it to model, job, product, group and attempt.

    Idempotent per (job, group, attempt): a resumed job re-storing an attempt gets the row it
    stored before (the unique constraint decides a race). The same bytes are one Creative."""
    from PIL import Image

    from generation.models import Generation

    if job is not None:
        existing = Generation.objects.filter(job=job, group=group, attempt=attempt).first()
        if existing is not None:
            return existing
    scratch = Path(scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f"g{group}-a{attempt}-s{seed}.png"
    Image.fromarray(image).save(path, format="PNG")
    try:
        creative, _ = create_creative(
            product=product,
            image_path=path,
            prompt=prompt,
            negative_prompt=negative_prompt,
            seed=int(seed),
            generator=f"rfstudio-diffusion:{model.name}",
            generator_version=model.checksum[:12],
            params=provenance,
        )
    finally:
        path.unlink(missing_ok=True)
    try:
        with transaction.atomic():
            return Generation.objects.create(
                job=job, model=model, product=product, creative=creative, group=group,
                attempt=attempt, seed=int(seed), score=score, kept=kept, gpu_seconds=gpu_seconds,
            )  # fmt: skip
    except IntegrityError:
        return Generation.objects.get(job=job, group=group, attempt=attempt)


def set_generation_verdict(*, generation, score: float | None, kept: bool | None):
    from generation.models import Generation

    Generation.objects.filter(pk=generation.pk).update(score=score, kept=kept)
    generation.score, generation.kept = score, kept
    return generation
