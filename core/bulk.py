"""Bulk SQL helpers for imports of 100k–1M rows: COPY/executemany inserts, id allocation, and
key → id look-ups, each the fastest form per backend (PostgreSQL, SQLite).

Django's bulk_create builds one multi-row statement per ~70 rows on SQLite (999 bound
parameters) and instantiates a model per row; at 100k+ rows that dominates an import. These
helpers take plain tuples in a given column order instead.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Iterable

from django.db import connections, router, transaction
from django.db.models import DateField, JSONField
from django.db.models.constants import OnConflict
from django.utils import timezone

from core import pgcopy

# SQLite allows 32766 bound parameters per statement; stay well below for `IN (...)` look-ups.
LOOKUP_CHUNK = 5000
SQLITE_BATCH = 5000


def insert_rows(
    model,
    fields: list[str],
    rows: Iterable[tuple],
    *,
    ignore_conflicts=False,
    returning=None,
    skip_triggers: Collection[str] = (),
    new_parents: dict[str, Collection] | None = None,
) -> list[tuple] | None:
    """INSERT many rows (binary COPY on PostgreSQL, executemany on SQLite), in batches.

    `fields` may include "id" to insert explicit primary keys (see allocate_ids). `returning`
    (column names) with `ignore_conflicts` on PostgreSQL: the inserted rows' values of those
    columns; None where not supported.

    PostgreSQL checks the rows' foreign keys once per distinct key rather than once per row
    where it can (core.pgcopy): `skip_triggers` names INSERT triggers that do nothing for
    these rows, `new_parents` ({field name: keys}) parents this transaction inserted itself.

    Values are passed as given except JSON and date/time columns, which are adapted like the
    field's own get_db_prep_save does (memoised per column for a value repeated by identity, e.g.
    one `now` for all rows). Columns not given get their defaults; `auto_now(_add)` ones get now.
    """
    conn = connections[router.db_for_write(model)]
    fobjs = [model._meta.get_field(name) for name in fields]
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
    table = qn(model._meta.db_table)
    cols = ", ".join(qn(f.column) for f in fobjs)

    if conn.vendor == "postgresql" and ignore_conflicts:
        # COPY has no ON CONFLICT: stage into a temporary table, then INSERT ... SELECT.
        stage = qn(f"rfs_stage_{uuid.uuid4().hex[:12]}")
        with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
            cursor.execute(f"CREATE TEMP TABLE {stage} AS SELECT {cols} FROM {table} WITH NO DATA")
            try:
                pgcopy.copy_rows(
                    conn,
                    stage,
                    [f.column for f in fobjs],
                    rows,
                    extra=extra,
                    convert=_converters(fobjs, conn),
                    set_based_fk=False,
                )
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
        # COPY: one stream, no per-statement parsing (psycopg's client-side binding of a
        # many-row VALUES statement costs more than the server's work).
        parents = {model._meta.get_field(k).column: v for k, v in (new_parents or {}).items()}
        pgcopy.copy_rows(
            conn,
            model._meta.db_table,
            [f.column for f in fobjs],
            rows,
            extra=extra,
            convert=_converters(fobjs, conn),
            skip_triggers=skip_triggers,
            new_parents=parents,
        )
        return None
    with conn.cursor() as cursor:
        on_conflict = OnConflict.IGNORE if ignore_conflicts else None
        sql = "{} {} ({}) VALUES ({}) {}".format(
            conn.ops.insert_statement(on_conflict=on_conflict),
            table,
            cols,
            ", ".join(["%s"] * len(fobjs)),
            conn.ops.on_conflict_suffix_sql(fobjs, on_conflict, None, None) if on_conflict else "",
        ).strip()
        # executemany of one prepared statement: in-process, no round trips.
        batch: list = []
        for row in pgcopy.prepare_rows(rows, extra, _converters(fobjs, conn)):
            batch.append(row)
            if len(batch) >= SQLITE_BATCH:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
    return None


def _converters(fobjs, conn) -> dict[int, Callable]:
    """{position: function} adapting non-null JSON (to text) and date/time values (through the
    backend) as the field's own get_db_prep_save does.

    Each remembers its last values by identity: callers share one object across rows (one
    `now`, one votes dict per label) and pay for one conversion each.
    """
    out = {}
    for i, f in enumerate(fobjs):
        if isinstance(f, JSONField):
            encoder = f.encoder

            def to_json(value, encoder=encoder, memo={}):  # noqa: B006 — per-column memo
                hit = memo.get(id(value))
                if hit is not None and hit[0] is value:  # the entry holds `value`: id not reused
                    return hit[1]
                text = json.dumps(value, cls=encoder)
                if len(memo) >= 64:
                    memo.clear()
                memo[id(value)] = (value, text)
                return text

            out[i] = to_json
        elif isinstance(f, DateField):  # DateTimeField is a DateField

            def to_db(value, field=f, memo=[None, None]):  # noqa: B006 — per-column memo
                if value is memo[0]:
                    return memo[1]
                adapted = field.get_db_prep_save(value, conn)
                memo[0], memo[1] = value, adapted
                return adapted

            out[i] = to_db
    return out


def allocate_ids(model, count: int) -> list[int]:
    """`count` fresh primary keys for rows the caller will insert with explicit ids.

    Saves reading the new rows back to learn their ids (a look-up as costly as the insert).
    PostgreSQL: taken from the table's identity sequence (safe under concurrency; gaps are
    harmless). SQLite: must run inside the write transaction (BEGIN IMMEDIATE holds the
    database's only write lock), after the largest id ever used (`sqlite_sequence`, so ids of
    deleted rows are not reused, as AUTOINCREMENT promises).
    """
    if count <= 0:
        return []
    conn = connections[router.db_for_write(model)]
    table = model._meta.db_table
    pk = model._meta.pk.column
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            # The sequence is resolved once: pg_get_serial_sequence() per row costs 10× nextval.
            cursor.execute(
                "SELECT pg_get_serial_sequence(%s, %s)", [conn.ops.quote_name(table), pk]
            )
            sequence = cursor.fetchone()[0]
            cursor.execute(
                "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [sequence, count]
            )
            return [r[0] for r in cursor.fetchall()]
        if not conn.in_atomic_block:
            raise RuntimeError("allocate_ids on SQLite needs the caller's write transaction")
        qn = conn.ops.quote_name
        cursor.execute(
            f"SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
            f"COALESCE((SELECT max({qn(pk)}) FROM {qn(table)}), 0))",
            [table],
        )
        start = cursor.fetchone()[0] + 1
    return list(range(start, start + count))


def _chunks(seq: list, size: int = LOOKUP_CHUNK) -> Iterable[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def ids_by_key(model, key: str, keys: Iterable, **equal) -> dict:
    """{key value: id} for rows whose `key` column is in `keys` (and columns in `equal` match).

    Chunked `IN (...)` on SQLite; one join on PostgreSQL (pgcopy.key_list).
    """
    keys = list(set(keys))  # unsorted: sorting 1M strings costs a second and buys nothing
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
    source, value = pgcopy.key_list(keys, integer=integer)
    sql = (
        f"SELECT t.{col}, t.id FROM {qn(model._meta.db_table)} t "
        f"JOIN {source} AS k(v) ON t.{col} = k.v WHERE {' AND '.join(where)}"
    )
    # One statement: each one hash-joins against a full scan of the table.
    with (
        transaction.atomic(using=conn.alias),
        conn.cursor() as cursor,
        pgcopy.join_work_mem(cursor),
    ):
        cursor.execute(sql, [value, *params])
        out.update(cursor.fetchall())
    return out
