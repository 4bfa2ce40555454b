"""Writes for products and creatives. Files go into default storage under content-addressed names
(see generation.images.content_name), so storing the same bytes twice is a no-op."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

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


def insert_rows(
    model, fields: list[str], rows: Iterable[tuple], *, ignore_conflicts=False, returning=None
) -> list[tuple] | None:
    """INSERT many rows with one prepared statement (executemany), in batches.

    `returning` (column names) with `ignore_conflicts` on PostgreSQL: the inserted rows' values
    of those columns (saves the caller a read-back of the new ids); None where not supported.

    Django's bulk_create builds one multi-row statement per ~70 rows on SQLite (999 bound
    parameters) and instantiates a model per row; at 100k+ rows that dominates the import. Values
    are passed as given except fields that need adapting (JSON, date/time), which go through the
    field's own get_db_prep_save. `created_at`-style auto_now_add fields must be in `fields`.
    """
    from django.db import connections, router
    from django.db.models import DateField, JSONField
    from django.db.models.constants import OnConflict

    conn = connections[router.db_for_write(model)]
    fobjs = [model._meta.get_field(name) for name in fields]
    # Columns not given (e.g. fields added later by another app owner) get their defaults.
    given = {f.name for f in fobjs}
    now = timezone.now()
    extra_fields, extra_values = [], []
    for f in model._meta.concrete_fields:
        if f.primary_key or f.name in given:
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            value = now
        elif f.has_default() or not f.null:
            value = f.get_default()
        else:
            value = None
        extra_fields.append(f)
        extra_values.append(value)
    fobjs += extra_fields
    extra = tuple(extra_values)
    qn = conn.ops.quote_name
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    sql = "{} {} ({}) VALUES ({}) {}".format(
        conn.ops.insert_statement(on_conflict=on_conflict),
        qn(model._meta.db_table),
        ", ".join(qn(f.column) for f in fobjs),
        ", ".join(["%s"] * len(fobjs)),
        conn.ops.on_conflict_suffix_sql(fobjs, on_conflict, None, None) if on_conflict else "",
    ).strip()
    prep = [
        i for i, f in enumerate(fobjs) if isinstance(f, (JSONField, DateField))
    ]  # DateTimeField is a DateField

    def adapt(row):
        if extra:
            row = tuple(row) + extra
        if not prep:
            return row
        row = list(row)
        for i in prep:
            row[i] = fobjs[i].get_db_prep_save(row[i], conn)
        return row

    if conn.vendor == "postgresql" and ignore_conflicts:
        # COPY has no ON CONFLICT: stage into a temporary table, then INSERT ... SELECT.
        import uuid

        cols = ", ".join(qn(f.column) for f in fobjs)
        table = qn(model._meta.db_table)
        stage = qn(f"rfs_stage_{uuid.uuid4().hex[:12]}")
        with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
            cursor.execute(f"CREATE TEMP TABLE {stage} AS SELECT {cols} FROM {table} WITH NO DATA")
            try:
                _copy_rows(cursor, f"COPY {stage} ({cols}) FROM STDIN", map(adapt, rows))
                back = ", ".join(qn(model._meta.get_field(n).column) for n in returning or ())
                cursor.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} "
                    "ON CONFLICT DO NOTHING" + (f" RETURNING {back}" if back else "")
                )
                out = [tuple(r) for r in cursor.fetchall()] if back else None
            finally:
                cursor.execute(f"DROP TABLE IF EXISTS {stage}")
        return out
    if conn.vendor == "postgresql":
        # COPY: one stream, no per-statement query parsing (psycopg's client-side binding of a
        # many-row VALUES statement costs more than the server's work). Row triggers still fire.
        copy_sql = "COPY {} ({}) FROM STDIN".format(
            qn(model._meta.db_table), ", ".join(qn(f.column) for f in fobjs)
        )

        def flush(cursor, batch):
            def run_copy(sql, params, many, context):
                with cursor.cursor.copy(sql) as copy:
                    for row in batch:
                        copy.write_row(row)

            # Through Django's execute wrappers so that query timers/loggers see the COPY.
            cursor._execute_with_wrappers(copy_sql, None, False, executor=run_copy)

        size = 20000
    else:
        # SQLite: executemany of one prepared statement (in-process, no round trips); psycopg
        # pipelines executemany too.

        def flush(cursor, batch):
            cursor.executemany(sql, batch)

        size = 5000
    batch: list = []
    with conn.cursor() as cursor:
        for row in rows:
            batch.append(adapt(row))
            if len(batch) >= size:
                flush(cursor, batch)
                batch = []
        if batch:
            flush(cursor, batch)


def _copy_rows(cursor, copy_sql: str, rows: Iterable, size: int = 20000) -> None:
    """COPY rows through Django's execute wrappers (so query timers/loggers see it)."""
    batch: list = []

    def flush():
        def run_copy(sql, params, many, context):
            with cursor.cursor.copy(sql) as copy:
                for row in batch:
                    copy.write_row(row)

        cursor._execute_with_wrappers(copy_sql, None, False, executor=run_copy)

    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            flush()
            batch = []
    if batch:
        flush()


def _chunks(seq: list, size: int = LOOKUP_CHUNK) -> Iterable[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def ids_by_key(model, key: str, keys: Iterable, **equal) -> dict:
    """{key value: id} for rows whose `key` column is in `keys` (and columns in `equal` match).

    Chunked `IN (...)` on SQLite; on PostgreSQL one array parameter (`= ANY(%s)`), because
    psycopg parses thousands of placeholders in Python on every statement.
    """
    from django.db import connections, router

    keys = sorted(set(keys))
    out: dict = {}
    if not keys:
        return out
    conn = connections[router.db_for_read(model)]
    if conn.vendor != "postgresql":
        for chunk in _chunks(keys):
            out.update(
                model.objects.filter(**{f"{key}__in": chunk}, **equal).values_list(key, "id")
            )
        return out
    qn = conn.ops.quote_name
    field = model._meta.get_field(key)
    col = qn(field.column)
    target = getattr(field, "target_field", field)
    integer = target.get_internal_type() in {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "IntegerField",
        "PositiveIntegerField",
    }
    # A join on unnest() (hash join) rather than `col = ANY(array)`: right after a bulk insert
    # the planner's statistics are stale and ANY() over a seq scan is rows × keys comparisons.
    where = ["TRUE"]
    params: list = []
    for name, value in equal.items():
        where.append(f"t.{qn(model._meta.get_field(name).column)} = %s")
        params.append(getattr(value, "pk", value))
    sql = (
        f"SELECT t.{col}, t.id FROM {qn(model._meta.db_table)} t "
        f"JOIN unnest(%s::{'bigint' if integer else 'text'}[]) AS k(v) ON t.{col} = k.v "
        f"WHERE {' AND '.join(where)}"
    )
    with conn.cursor() as cursor:
        # Big chunks: each statement may hash-join against a full scan of the table.
        for chunk in _chunks(keys, 250000):
            cursor.execute(sql, [chunk, *params])
            out.update(cursor.fetchall())
    return out


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
                ["sku", "title", "category", "image", "sha256", "width", "height", "created_at"],
                (
                    (r.sku, r.title, r.category, r.image, r.sha256, r.width, r.height, now)
                    for r in new
                ),
                ignore_conflicts=True,
            )
            have.update(product_ids_by_sku([p.sku for p in new]))
    return have


def bulk_get_or_create_creatives(
    rows: Iterable[CreativeRow], product_ids: dict[str, int]
) -> tuple[dict[str, int], int]:
    """Insert creatives whose sha256 is new; returns (sha256 → id, number inserted)."""
    rows = {r.sha256: r for r in rows}
    with transaction.atomic():
        have = creative_ids_by_sha(rows)
        now = timezone.now()
        new = [r for sha, r in rows.items() if sha not in have]
        if new:
            inserted = insert_rows(
                Creative,
                CREATIVE_FIELDS,
                (_creative_values(r, product_ids, now) for r in new),
                ignore_conflicts=True,
                returning=["sha256", "id"],
            )
            if inserted is None:
                have.update(creative_ids_by_sha([c.sha256 for c in new]))
            else:
                have.update(inserted)
                if len(inserted) < len(new):  # a concurrent import stored some of them first
                    have.update(
                        creative_ids_by_sha([c.sha256 for c in new if c.sha256 not in have])
                    )
    return have, len(new)


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
