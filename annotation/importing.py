"""Bulk import of generated creatives (and optional labels) from a JSON-lines manifest.

Two phases, so that a bad batch writes nothing:
1. validate: parse every line, check types/labels, resolve paths, decode + hash every image that is
   not already known (process pool), collect per-line errors;
2. write: store files content-addressed, then ONE transaction of bulk inserts (products, creatives,
   items, label annotations) with the item counters/consensus set at insert time.

Idempotent: creatives are unique by sha256, items by (project, creative), import labels by
(item, label source), so importing the same manifest again adds nothing.

Fast path (documented in docs/datasets.md): a row that carries `sha256`, `width`, `height` whose
content is already in storage (`creatives/ab/<sha>.<ext>` and its thumbnail) or already a Creative
row is trusted without reading the file again; those files were verified when first stored.
"""

from __future__ import annotations

import gc
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from annotation import item_state
from annotation.models import RF1M_CLASSES, Annotation, AuditEvent, Item, LabelClass, Project
from core import bulk, limits
from generation import images
from generation import services as gen_services

STRING_FIELDS = {
    "image": None,
    "product_image": None,
    "sku": 128,
    "title": limits.max_title_length(),
    "category": 200,
    "family": 128,
    # Read at start-up (RFSTUDIO_MAX_PROMPT_LENGTH): a prompt is served in every /next/ payload.
    "prompt": limits.max_prompt_length(),
    "negative_prompt": limits.max_prompt_length(),
    "generator": 200,
    "generator_version": 100,
    "label": 100,
    "id": 200,
    "sha256": 64,
}
REQUIRED = ("image", "sku")
# Column order of the bulk inserts (core.bulk.insert_rows).
ITEM_FIELDS = [
    "id",
    "project",
    "creative",
    "status",
    "annotation_count",
    "priority",
    "is_gold",
    "review_status",
    "review_reason",
    "consensus_label",
    "agreement",
    "external_id",
    "created_at",
    "updated_at",
    "votes",
]
ANNOTATION_FIELDS = [
    "item",
    "annotator",
    "label",
    "note",
    "idempotency_key",
    "discard_reason",
    "source",
    "created_at",
]
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
INT64 = (-(2**63), 2**63 - 1)
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")
DEFAULT_LABEL_SOURCE = "import"
SQLITE_SUBMIT_TRIGGER = "annotation_annotation_ai"  # annotation/migrations/0005
# Its WHEN (NEW.source = 'human') is false for the importer's rows (source "import").
PG_SUBMIT_TRIGGER = "annotation_annotation_submitted"
EXTENSIONS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".gif": "gif"}


class ManifestError(Exception):
    """The manifest has bad rows; nothing was written. `errors`: [(line, message)] sorted."""

    def __init__(self, errors: list[tuple[int, str]], source: str = "manifest"):
        self.errors = sorted(errors)
        self.source = source
        lines = sorted({line for line, _ in self.errors})
        shown = "; ".join(f"line {ln}: {msg}" for ln, msg in self.errors[:20])
        more = f" (+{len(self.errors) - 20} more)" if len(self.errors) > 20 else ""
        super().__init__(
            f"{source}: {len(lines)} bad line(s) {format_lines(lines)}: {shown}{more}. "
            "Nothing was imported (use --skip-bad to import the good rows)."
        )


def format_lines(lines: list[int]) -> str:
    return ", ".join(map(str, lines[:30])) + (", ..." if len(lines) > 30 else "")


@dataclass
class ImportResult:
    project: Project | None = None
    rows: int = 0
    created: int = 0  # new items in the project
    skipped: int = 0  # rows already present (or duplicated in the manifest)
    bad: int = 0
    creatives_created: int = 0
    products_created: int = 0
    labels_created: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    # Time spent in the database: executing SQL (all phases) plus the commit, where PostgreSQL
    # runs the deferred foreign-key checks of every inserted row.
    db_seconds: float = 0.0
    commit_seconds: float = 0.0
    parse_seconds: float = 0.0  # reading + checking the manifest's lines
    validate_seconds: float = 0.0  # paths, look-ups, decoding/hashing/thumbnailing new images
    store_seconds: float = 0.0  # copying new files into storage (before the transaction)
    write_seconds: float = 0.0  # wall time of the write transaction
    total_seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"created {self.created}, skipped {self.skipped}, bad {self.bad} "
            f"({self.rows} rows; {self.creatives_created} new creatives, "
            f"{self.products_created} new products, {self.labels_created} labels; "
            f"db {self.db_seconds:.2f}s, total {self.total_seconds:.2f}s)"
        )

    def timings(self) -> dict[str, float]:
        return {
            "parse": round(self.parse_seconds, 3),
            "validate": round(self.validate_seconds, 3),
            "store": round(self.store_seconds, 3),
            "write": round(self.write_seconds, 3),
            "commit": round(self.commit_seconds, 3),
        }

    def as_dict(self) -> dict:
        return {
            "project": self.project.slug if self.project else None,
            "rows": self.rows,
            "created": self.created,
            "skipped": self.skipped,
            "bad": self.bad,
            "creatives_created": self.creatives_created,
            "products_created": self.products_created,
            "labels_created": self.labels_created,
            "errors": [{"line": ln, "error": msg} for ln, msg in self.errors],
            "db_seconds": round(self.db_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "timings": self.timings(),
        }


# --- path resolution ---

Resolver = Callable[[str], str]  # manifest reference -> file path


def path_resolver(
    base_dir: str | Path, allowed_roots: Iterable[str | Path] | None = None
) -> Resolver:
    """Paths relative to `base_dir`; with `allowed_roots` every resolved path must lie under one
    of them (the API's rule: no reading arbitrary server files)."""
    # os.path on strings: pathlib costs ~10 µs per row, a second per 100k rows.
    base = os.fspath(base_dir)
    roots = None
    if allowed_roots is not None:
        roots = [os.path.realpath(r) for r in allowed_roots]
        prefixes = tuple(r if r.endswith(os.sep) else r + os.sep for r in roots)

    def resolve(ref: str) -> str:
        path = os.path.join(base, ref)  # an absolute `ref` stays as it is
        if roots is not None:
            real = os.path.realpath(path)
            if real not in roots and not real.startswith(prefixes):
                raise ValueError(f"path {ref!r} is outside the allowed import roots")
            return real
        return path

    return resolve


def upload_resolver(files: dict[str, Path]) -> Resolver:
    """Uploaded files by name: a manifest path matches an upload of the same base name."""

    def resolve(ref: str) -> str:
        path = files.get(ref) or files.get(os.path.basename(ref))
        if path is None:
            raise ValueError(f"file {ref!r} was not uploaded")
        return os.fspath(path)

    return resolve


# --- phase 1: parse and validate ---------------------------------------------------------------


@dataclass
class Row:
    line: int
    data: dict
    image_path: str | None = None
    product_path: str | None = None
    info: images.ImageInfo | None = None
    thumbnail: bytes | None = None
    image_ext: str = ""
    trusted: bool = False  # sha/size taken from the manifest (content already stored/known)
    creative_id: int | None = None  # the existing Creative with the claimed sha256 (validate)


_NOT_A_STRING_FIELD = object()


def _valid_fast(data: dict, label_slugs: set[str]) -> bool:
    """True when the row certainly passes _check_types: one pass over the row's own keys (a
    third of the cost at 1M rows); any doubt goes to _check_types for the messages."""
    for key, value in data.items():
        limit = STRING_FIELDS.get(key, _NOT_A_STRING_FIELD)
        if limit is not _NOT_A_STRING_FIELD:
            if value is None:
                continue
            if type(value) is not str or (limit is not None and len(value) > limit):
                return False
            if key == "sha256" and not SHA_RE.match(value):
                return False
            if key == "label" and value and value not in label_slugs:
                return False
        elif key == "seed":
            if value is not None and (type(value) is not int or not INT64[0] <= value <= INT64[1]):
                return False
        elif key == "width" or key == "height":
            if value is not None and (type(value) is not int or value <= 0):
                return False
        elif key == "params" and value is not None and type(value) is not dict:
            return False
    return bool(data.get("image")) and bool(data.get("sku"))


def _check_types(data: dict, label_slugs: set[str]) -> list[str]:
    if _valid_fast(data, label_slugs):
        return []
    errs = []
    for key in REQUIRED:
        if key not in data or data[key] in (None, ""):
            errs.append(f"missing required field {key!r}")
    for key, limit in STRING_FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            errs.append(f"field {key!r} must be a string, got {type(value).__name__}")
        elif limit and len(value) > limit:
            errs.append(f"field {key!r} is longer than {limit} characters")
    seed = data.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not INT64[0] <= seed <= INT64[1]
    ):
        errs.append("field 'seed' must be an integer (64-bit) or null")
    if data.get("params") is not None and not isinstance(data["params"], dict):
        errs.append("field 'params' must be an object")
    for key in ("width", "height"):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            errs.append(f"field {key!r} must be a positive integer")
    sha = data.get("sha256")
    if isinstance(sha, str) and not SHA_RE.match(sha):
        errs.append("field 'sha256' must be 64 lowercase hex digits")
    label = data.get("label")
    if isinstance(label, str) and label and label not in label_slugs:
        errs.append(f"unknown label {label!r} (expected one of {', '.join(sorted(label_slugs))})")
    return errs


def parse_manifest(lines: Iterable[bytes | str], label_slugs: set[str]):
    """(rows, errors) from raw lines (1-based line numbers; blank lines ignored)."""
    rows, errors = [], []
    for number, raw in enumerate(lines, start=1):
        try:
            # orjson: ~5× the standard library's speed and takes the bytes as they are.
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            # The slow path decides (and words) what is wrong; the standard library also
            # accepts what orjson refuses by design (NaN, integers beyond 64 bits).
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError:
                    errors.append((number, "line is not valid UTF-8"))
                    continue
            text = raw.strip()
            if not text:
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                errors.append((number, f"invalid JSON: {exc.msg} (column {exc.colno})"))
                continue
        if not isinstance(data, dict):
            errors.append((number, "expected a JSON object"))
            continue
        errs = _check_types(data, label_slugs)
        if errs:
            errors.extend((number, e) for e in errs)
            continue
        rows.append(Row(line=number, data=data))
    return rows, errors


def _label_slugs(project: Project | None) -> dict[str, int | None]:
    if project is None:
        return {slug: None for slug, *_ in RF1M_CLASSES}
    return dict(LabelClass.objects.filter(schema=project.schema).values_list("slug", "id"))


def _trusted(row: Row, known_shas: set[str]) -> bool:
    """May we take sha256/width/height from the manifest without reading the file?"""
    d = row.data
    if not (d.get("sha256") and d.get("width") and d.get("height")):
        return False
    if d["sha256"] in known_shas:
        return True
    ext = EXTENSIONS.get(os.path.splitext(d["image"])[1].lower())
    if ext is None:
        return False
    row.image_ext = ext
    return default_storage.exists(
        images.content_name("creatives", d["sha256"], ext)
    ) and default_storage.exists(images.content_name("thumbnails", d["sha256"], "webp"))


def validate(
    rows: list[Row], *, resolve: Resolver, project: Project | None, workers: int
) -> tuple[list[tuple[int, str]], dict[str, images.ProcessedFile]]:
    """Resolve paths and inspect images; returns per-line errors (rows are filled in place)."""
    errors: list[tuple[int, str]] = []
    known_skus = set(gen_services.product_ids_by_sku({r.data["sku"] for r in rows}))
    claimed = [r.data["sha256"] for r in rows if r.data.get("sha256")]
    known_ids = gen_services.creative_ids_by_sha(claimed) if claimed else {}
    known_shas = set(known_ids)

    product_source: dict[str, str] = {}  # first product image per new SKU
    jobs: dict[str, bool] = {}
    good = []
    for row in rows:
        d = row.data
        try:
            row.image_path = resolve(d["image"])
            if d.get("product_image") and d["sku"] not in known_skus:
                row.product_path = resolve(d["product_image"])
        except ValueError as exc:
            errors.append((row.line, str(exc)))
            continue
        if d["sku"] not in known_skus and row.product_path is not None:
            product_source.setdefault(d["sku"], row.product_path)
        good.append(row)
    for row in good:
        if row.data["sku"] not in known_skus and row.data["sku"] not in product_source:
            errors.append((row.line, f"new product {row.data['sku']!r} needs a 'product_image'"))
            continue
        row.trusted = _trusted(row, known_shas)
        if not row.trusted:
            jobs[str(row.image_path)] = True
    for path in product_source.values():
        jobs.setdefault(str(path), False)

    processed = images.process_files(list(jobs.items()), workers=workers)
    computed: list[Row] = []  # rows whose sha256 was computed from the file
    bad_products = {
        sku: processed[str(p)].error for sku, p in product_source.items() if processed[str(p)].error
    }
    for row in good:
        d = row.data
        if row.trusted:
            row.info = images.ImageInfo(d["sha256"], d["width"], d["height"], "", "")
            # Known creative: _write needs no second look-up of its id (creatives are never
            # deleted while items point at them; the items' foreign key would refuse it).
            row.creative_id = known_ids.get(d["sha256"])
        else:
            result = processed.get(str(row.image_path))
            if result is None:
                continue  # already reported (missing product image)
            if result.error:
                errors.append((row.line, f"image {d['image']!r}: {result.error}"))
                continue
            row.info, row.thumbnail, row.image_ext = (
                result.info,
                result.thumbnail,
                result.info.extension,
            )
            if d.get("sha256") and d["sha256"] != row.info.sha256:
                errors.append((row.line, f"image {d['image']!r}: sha256 does not match the file"))
                continue
            computed.append(row)
        if d["sku"] in bad_products:
            errors.append(
                (
                    row.line,
                    f"product image {str(product_source[d['sku']])!r}: {bad_products[d['sku']]}",
                )
            )
    # Every row's creative is now looked up once, here (outside the write transaction): _write
    # inserts the rest as new without a second look-up (see bulk_get_or_create_creatives).
    unknown = {r.info.sha256 for r in computed} - known_shas
    found = gen_services.creative_ids_by_sha(unknown) if unknown else {}
    known_ids.update(found)
    for row in computed:
        row.creative_id = known_ids.get(row.info.sha256)
    product_infos = {
        sku: processed[str(p)] for sku, p in product_source.items() if sku not in bad_products
    }
    errors += _conflicts(good)
    return errors, product_infos


def _conflicts(rows: list[Row]) -> list[tuple[int, str]]:
    """Rows that contradict an earlier row: the same image with another label (which would be
    silently dropped), or one manifest `id` naming two different images."""
    errors = []
    label_at: dict[str, tuple[int, str]] = {}
    image_of_id: dict[str, tuple[int, str]] = {}
    for row in rows:
        if row.info is None:
            continue
        sha, d = row.info.sha256, row.data
        label = d.get("label") or ""
        if label:
            first = label_at.setdefault(sha, (row.line, label))
            if first[1] != label:
                errors.append(
                    (
                        row.line,
                        f"image {d['image']!r} is the image of line {first[0]} with another "
                        f"label ({label!r}, line {first[0]}: {first[1]!r})",
                    )
                )
        ext = d.get("id")
        if ext:
            first = image_of_id.setdefault(ext, (row.line, sha))
            if first[1] != sha:
                errors.append(
                    (row.line, f"id {ext!r} is already used on line {first[0]} for another image")
                )
    return errors


# --- phase 2: write ----------------------------------------------------------------------------


def get_label_source(name: str = DEFAULT_LABEL_SOURCE):
    """The non-login user that owns imported labels (created on demand, unusable password)."""
    if not USERNAME_RE.match(name or ""):
        raise ValueError(f"invalid label source name {name!r}")
    User = get_user_model()
    user = User.objects.filter(username=name).first()
    if user is None:
        user = User(username=name, first_name="label source")
        user.set_unusable_password()
        user.save()
    elif user.has_usable_password():
        raise ValueError(f"label source {name!r} is an existing login user; choose another name")
    return user


def _ensure_project(slug: str, overlap: int, created_by) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        from annotation import services

        project = services.create_project(
            name=slug, slug=slug, overlap=overlap, created_by=created_by
        )
    return project


def _item_states(project: Project) -> Callable[[str | None], dict]:
    """label slug (or None) -> the new item's derived fields, from item_state.new_item (the rules
    the services use). A state that drew no random number (fifo/uncertainty order, no QA draw) is
    the same for every row with that label and is computed once: 1M rows, a handful of calls."""
    cache: dict[str | None, dict] = {}

    def state(slug: str | None) -> dict:
        hit = cache.get(slug)
        if hit is not None:
            return hit
        drew = False

        def rng() -> float:
            nonlocal drew
            drew = True
            return random.random()

        fields = item_state.new_item(
            ordering=project.ordering,
            overlap=project.overlap,
            qa_sample_rate=project.qa_sample_rate,
            label=slug,
            rng=rng,
        )
        if not drew:
            cache[slug] = fields
        return fields

    return state


def _item_values(new_items: dict[int, Row], ids: dict[int, int], project, labels, source):
    """ITEM_FIELDS tuples of new items, counters/consensus/QA selection set for the row's label."""
    now = timezone.now()
    state_of = _item_states(project)
    for cid, row in new_items.items():
        slug = row.data.get("label") if source is not None else None
        label_id = labels.get(slug) if slug else None
        s = state_of(slug if label_id is not None else None)
        yield (
            ids[cid],
            project.id,
            cid,
            s["status"],
            s["annotation_count"],
            s["priority"],
            False,
            s["review_status"],
            s["review_reason"],
            label_id,
            s["agreement"],
            row.data.get("id") or "",
            now,
            now,
            s["votes"],
        )


def _write(
    rows: list[Row],
    product_infos: dict,
    *,
    project_slug: str,
    overlap: int,
    label_source: str,
    created_by,
    result: ImportResult,
) -> None:
    # Files first (outside the transaction): an orphan content-addressed file is harmless, a row
    # pointing at a missing file is not.
    storing = time.perf_counter()
    product_rows = []
    first_of_sku: dict[str, Row] = {}
    for row in rows:
        first_of_sku.setdefault(row.data["sku"], row)
    for sku, processed in product_infos.items():
        info = processed.info
        name = gen_services.store_content(
            prefix="products",
            sha256=info.sha256,
            extension=info.extension,
            source_path=processed.path,
        )
        first = first_of_sku[sku]
        product_rows.append(
            gen_services.ProductRow(
                sku=sku,
                image=name,
                sha256=info.sha256,
                width=info.width,
                height=info.height,
                title=first.data.get("title") or "",
                category=first.data.get("category") or "",
                family=first.data.get("family") or sku,
            )
        )
    creative_rows: dict[str, gen_services.CreativeRow] = {}
    known_creatives: dict[str, int] = {}
    row_sha: list[tuple[Row, str]] = []
    for row in rows:
        sha = row.info.sha256
        row_sha.append((row, sha))
        if sha in creative_rows or sha in known_creatives:
            continue
        if row.creative_id is not None:
            known_creatives[sha] = row.creative_id
            continue
        if row.trusted:
            name = images.content_name("creatives", sha, row.image_ext or "png")
            thumb = images.content_name("thumbnails", sha, "webp")
        else:
            name = gen_services.store_content(
                prefix="creatives", sha256=sha, extension=row.image_ext, source_path=row.image_path
            )
            thumb = gen_services.store_content(
                prefix="thumbnails", sha256=sha, extension="webp", data=row.thumbnail
            )
        d = row.data
        creative_rows[sha] = gen_services.CreativeRow(
            sku=d["sku"],
            image=name,
            thumbnail=thumb,
            sha256=sha,
            width=row.info.width,
            height=row.info.height,
            prompt=d.get("prompt") or "",
            negative_prompt=d.get("negative_prompt") or "",
            seed=d.get("seed"),
            generator=d.get("generator") or "",
            generator_version=d.get("generator_version") or "",
            params=d.get("params") or {},
            external_id=d.get("id") or "",
        )

    started = time.perf_counter()
    result.store_seconds = started - storing
    with transaction.atomic():
        project = _ensure_project(project_slug, overlap, created_by)
        result.project = project
        labels = _label_slugs(project)
        source = get_label_source(label_source) if any(r.data.get("label") for r in rows) else None

        known = set(gen_services.product_ids_by_sku(r.sku for r in product_rows))
        product_ids = gen_services.bulk_get_or_create_products(product_rows)
        result.products_created = len({r.sku for r in product_rows} - known)
        product_ids.update(gen_services.product_ids_by_sku({r.data["sku"] for r in rows}))
        creative_ids, result.creatives_created = gen_services.bulk_get_or_create_creatives(
            creative_rows.values(), product_ids, assume_new=True
        )
        # Creatives inserted just now have no items yet; only the others need a look-up (all of
        # them if a concurrent import stored some of ours first).
        fresh = (
            set(creative_ids.values()) if result.creatives_created == len(creative_rows) else set()
        )
        creative_ids.update(known_creatives)

        # Items: one per (project, creative); counters set at insert for the rows' labels.
        existing_items: dict[int, int] = bulk.ids_by_key(
            Item, "creative", set(creative_ids.values()) - fresh, project=project
        )
        # First row per new item (a manifest may list the same image twice).
        new_items: dict[int, Row] = {}
        for row, sha in row_sha:
            cid = creative_ids[sha]
            if cid not in existing_items and cid not in new_items:
                new_items[cid] = row
        new_item_ids = dict(zip(new_items, bulk.allocate_ids(Item, len(new_items)), strict=True))
        if new_items:
            bulk.insert_rows(
                Item,
                ITEM_FIELDS,
                _item_values(new_items, new_item_ids, project, labels, source),
                new_parents={"creative": fresh},
            )
        result.created = len(new_items)
        result.skipped = len(rows) - len(new_items)

        now = timezone.now()
        # Label annotations of the label source, at most one per item (discarded ones included:
        # a label QA rejected is not re-added by a re-import).
        labeled = [(row, creative_ids[sha]) for row, sha in row_sha if row.data.get("label")]
        labels_by_class: dict[str, int] = {}
        if labeled:
            item_ids: dict[int, int] = dict(existing_items)
            item_ids.update(new_item_ids)
            old_item_ids = sorted({item_ids[cid] for _, cid in labeled if cid in existing_items})
            already: set[int] = set()
            for start in range(0, len(old_item_ids), bulk.LOOKUP_CHUNK):
                already.update(
                    Annotation.objects.filter(
                        annotator=source,
                        item_id__in=old_item_ids[start : start + bulk.LOOKUP_CHUNK],
                    ).values_list("item_id", flat=True)
                )
            to_add: dict[int, tuple] = {}
            for row, cid in labeled:
                item_id = item_ids[cid]
                if item_id in already or item_id in to_add:
                    continue
                if cid in new_items and new_items[cid] is not row:
                    continue  # duplicate image row: the first row's label was counted
                to_add[item_id] = (
                    item_id,
                    source.id,
                    labels[row.data["label"]],
                    f"imported (line {row.line})",
                    f"import:{item_id}",
                    "",
                    Annotation.Source.IMPORT,  # no lease, no per-row "submit" audit event
                    now,
                )
            with _sqlite_submit_trigger_off():
                bulk.insert_rows(
                    Annotation,
                    ANNOTATION_FIELDS,
                    to_add.values(),
                    skip_triggers={PG_SUBMIT_TRIGGER},
                    new_parents={"item": set(new_item_ids.values())},
                )
            result.labels_created = len(to_add)
            slug_of = {v: k for k, v in labels.items()}
            for values in to_add.values():
                slug = slug_of[values[2]]
                labels_by_class[slug] = labels_by_class.get(slug, 0) + 1
            old = set(existing_items.values())
            stale = sorted(i for i in to_add if i in old)
            if stale:
                # Existing items: the core service rebuilds votes/counters/consensus/status.
                from annotation import services

                services.recompute_items(item_ids=stale)
        AuditEvent.objects.create(
            project=project,
            actor=created_by,
            action="import",
            data={
                "rows": result.rows,
                "created": result.created,
                "skipped": result.skipped,
                "bad": result.bad,
                "labels": result.labels_created,
                "creatives_created": result.creatives_created,
                # Imported labels are Annotation rows with source "import" (no per-row "submit"
                # event, they have no lease): this event is their log entry.
                "label_source": source.username if source is not None else None,
                "labels_by_class": labels_by_class,
            },
        )
        committing = time.perf_counter()
    result.commit_seconds = time.perf_counter() - committing
    result.write_seconds = time.perf_counter() - started


@contextmanager
def _sqlite_submit_trigger_off():
    """SQLite: lift the annotation submit trigger for the bulk insert of `import` rows.

    Its `WHEN NEW.source = 'human'` is false for them, yet SQLite still enters the trigger
    program per row (~2.5 s of 3 s at 100k rows). Inside our transaction, which holds SQLite's
    write lock (BEGIN IMMEDIATE), nobody else can insert meanwhile; the trigger is re-created from
    its own stored SQL before commit, and a rollback restores it.
    """
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = %s",
            [SQLITE_SUBMIT_TRIGGER],
        )
        found = cursor.fetchone()
        if found is None:
            yield
            return
        cursor.execute(f"DROP TRIGGER {SQLITE_SUBMIT_TRIGGER}")
        yield
        # Django's SQLite cursor formats '%' only when params are given: the SQL stays literal.
        cursor.execute(found[0])


@contextmanager
def _gc_paused():
    """No cyclic garbage collection while the import builds millions of long-lived objects (rows,
    tuples, dicts): each full collection re-scans all of them, and they kept triggering (a third
    of the write phase at 1M rows). The import makes no reference cycles worth collecting."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _QueryTimer:
    def __init__(self):
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start


def check_project_options(*, project_slug, overlap) -> None:
    """ValueError naming the field (the API answers 400, the command a CommandError)."""
    max_slug = Project._meta.get_field("slug").max_length
    if not isinstance(project_slug, str) or not SLUG_RE.match(project_slug):
        shown = repr(project_slug)[:60]
        raise ValueError(f"project slug must be letters, digits, '-' or '_', got {shown}")
    if len(project_slug) > max_slug:
        raise ValueError(f"project slug must be at most {max_slug} characters")
    max_overlap = limits.max_overlap()
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= max_overlap:
        raise ValueError(f"overlap must be an integer between 1 and {max_overlap}")


def import_manifest(
    *,
    lines: Iterable[bytes | str],
    project_slug: str,
    resolve: Resolver,
    label_source: str = DEFAULT_LABEL_SOURCE,
    overlap: int = 1,
    skip_bad: bool = False,
    created_by=None,
    workers: int | None = None,
    source_name: str = "manifest",
) -> ImportResult:
    """Validate the whole manifest, then write it in one transaction.

    Raises ManifestError (nothing written) when a row is bad and `skip_bad` is false; with
    `skip_bad` the good rows are imported and the bad ones are in `result.errors`.
    Raises ValueError for a bad label source name.
    """
    began = time.perf_counter()
    workers = workers or int(os.environ.get("RFSTUDIO_IMPORT_WORKERS", "2"))
    timer = _QueryTimer()
    result = ImportResult()
    if not USERNAME_RE.match(label_source or ""):
        raise ValueError(f"invalid label source name {label_source!r}")
    check_project_options(project_slug=project_slug, overlap=overlap)
    with connection.execute_wrapper(timer), _gc_paused():
        project = Project.objects.filter(slug=project_slug).first()
        labels = _label_slugs(project)
        rows, errors = parse_manifest(lines, set(labels))
        result.rows = len(rows) + len({ln for ln, _ in errors})
        result.parse_seconds = time.perf_counter() - began
        more_errors, product_infos = validate(
            rows, resolve=resolve, project=project, workers=workers
        )
        result.validate_seconds = time.perf_counter() - began - result.parse_seconds
        errors += more_errors
        if errors and not skip_bad:
            raise ManifestError(errors, source_name)
        bad_lines = {ln for ln, _ in errors}
        rows = [r for r in rows if r.line not in bad_lines]
        result.errors = sorted(errors)
        result.bad = len(bad_lines)
        if rows or project is None:
            skus = {r.data["sku"] for r in rows}
            _write(
                rows,
                {sku: p for sku, p in product_infos.items() if sku in skus},
                project_slug=project_slug,
                overlap=overlap,
                label_source=label_source,
                created_by=created_by,
                result=result,
            )
        else:
            result.project = project
    result.db_seconds = timer.seconds + result.commit_seconds
    result.total_seconds = time.perf_counter() - began
    return result


def import_manifest_file(
    path: str | Path, *, images_root: str | Path | None = None, **kwargs
) -> ImportResult:
    """Command-line entry: paths are relative to the manifest's folder unless `images_root`."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError([(0, f"manifest {str(path)!r} not found")], str(path))
    resolve = path_resolver(images_root or path.parent)
    with path.open("rb") as fh:
        return import_manifest(lines=fh, resolve=resolve, source_name=str(path), **kwargs)
