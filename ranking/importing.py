"""Import aggregated impression logs (`import_impressions FILE [--format jsonl|csv|parquet]`).

One row: {"day": "2026-11-01", "segment": "young-urban", "sku": "SKU-1", "creative": "<manifest
id>", "impressions": 120, "clicks": 7[, "segment_features": {...}]}. `creative` is the creative's
external id from its import manifest (`generation.Creative.external_id`), looked up within the
product `sku` (external ids are unique per manifest, not globally).

Streaming, all or nothing: rows are parsed one at a time and sent in batches to a temporary
staging table (binary COPY on PostgreSQL, executemany on SQLite), so memory stays flat for 10M
rows. Every row is checked (fields, duplicates of one (day, segment, creative) key, unknown or
ambiguous creatives); any bad row raises ImpressionImportError listing them by line and the
transaction rolls back: nothing is written. Then one `INSERT … SELECT … ON CONFLICT DO UPDATE`
writes the logs.

Concurrency: idempotent per (day, segment, creative): a re-import replaces that key's counts
(unique constraint + ON CONFLICT DO UPDATE; two concurrent imports of one key serialise on the
row and the later commit wins). New segments are inserted ON CONFLICT DO NOTHING, so two imports
naming a new segment both succeed.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.db import IntegrityError, connection, transaction

FORMATS = ("jsonl", "csv", "parquet")
FIELDS = ("day", "segment", "sku", "creative", "impressions", "clicks")
OPTIONAL = ("segment_features",)
BATCH = 50_000
MAX_ERRORS = 200  # kept in full; the rest are counted
SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")
STAGE = "ranking_impression_stage"


class ImpressionImportError(Exception):
    """Bad rows; nothing was written. `errors`: [(line, message)] by line, `total` bad rows."""

    def __init__(self, errors: list[tuple[int, str]], total: int | None = None, unit="line"):
        self.errors = sorted(errors)
        self.total = total if total is not None else len(self.errors)
        shown = "; ".join(f"{unit} {ln}: {msg}" for ln, msg in self.errors[:20])
        more = f" (+{self.total - 20} more)" if self.total > 20 else ""
        super().__init__(f"{self.total} bad row(s): {shown}{more}. Nothing was imported.")


@dataclass
class ImportResult:
    rows: int = 0
    segments_created: int = 0
    seconds: float = 0.0
    errors: list = field(default_factory=list)
    # Wall time per phase: parse + stage (COPY), check (keys, duplicates), write (upsert + commit).
    phases: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"Unknown format {fmt!r} (use one of {', '.join(FORMATS)}).")
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    raise ValueError(f"Cannot tell the format of {path.name}; pass --format jsonl|csv|parquet.")


# --- reading: (line number, raw dict or error message) ------------------------------------------
def read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict | str]]:
    if fmt == "jsonl":
        yield from _read_jsonl(path)
    elif fmt == "csv":
        yield from _read_csv(path)
    else:
        yield from _read_parquet(path)


def _read_jsonl(path: Path):
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield n, f"invalid JSON ({exc})"
                continue
            yield n, data if isinstance(data, dict) else "not a JSON object"


def _read_csv(path: Path):
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            yield 1, f"header lacks column(s) {', '.join(missing)}"
            return
        for row in reader:
            if None in row:
                yield reader.line_num, "more values than header columns"
                continue
            raw = {k: v for k, v in row.items() if v not in ("", None) or k in FIELDS}
            features = raw.get("segment_features")
            if features:
                try:
                    raw["segment_features"] = orjson.loads(features)
                except orjson.JSONDecodeError:
                    yield reader.line_num, "segment_features is not valid JSON"
                    continue
            yield reader.line_num, raw


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        yield 1, f"not a Parquet file ({exc})"
        return
    n = 0
    for batch in pf.iter_batches(batch_size=BATCH):
        for raw in batch.to_pylist():
            n += 1
            if isinstance(raw.get("day"), dt.date):
                raw["day"] = raw["day"].isoformat()
            yield n, {k: v for k, v in raw.items() if v is not None or k in FIELDS}


# --- validation ----------------------------------------------------------------------------------
def _count(value, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer")
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    if value >= 2**62:
        raise ValueError(f"{name} is too large")
    return value


def parse_row(raw: dict) -> tuple:
    """(day, segment, sku, creative, impressions, clicks, segment_features | None) or ValueError
    naming the field."""
    missing = [f for f in FIELDS if raw.get(f) in (None, "")]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    unknown = set(raw) - set(FIELDS) - set(OPTIONAL)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    try:
        day = dt.date.fromisoformat(str(raw["day"]))
    except ValueError:
        raise ValueError(f"day must be YYYY-MM-DD, got {raw['day']!r}")
    segment = raw["segment"]
    if not isinstance(segment, str) or not SLUG.match(segment):
        raise ValueError("segment must be a slug (letters, digits, - and _; at most 100)")
    sku, creative = raw["sku"], raw["creative"]
    if not isinstance(sku, str) or len(sku) > 128:
        raise ValueError("sku must be a string of at most 128 characters")
    if not isinstance(creative, str | int) or len(str(creative)) > 200:
        raise ValueError("creative must be the creative's manifest id (at most 200 characters)")
    impressions = _count(raw["impressions"], "impressions")
    clicks = _count(raw["clicks"], "clicks")
    if clicks > impressions:
        raise ValueError(f"clicks ({clicks}) exceed impressions ({impressions})")
    features = raw.get("segment_features")
    if features is not None and not isinstance(features, dict):
        raise ValueError("segment_features must be a JSON object")
    return day, segment, sku, str(creative), impressions, clicks, features


# --- writing -------------------------------------------------------------------------------------
def import_impressions(
    *, path: str | Path, fmt: str | None = None, batch: int = BATCH, log=None
) -> ImportResult:
    """Import one file; see the module docstring. Raises ImpressionImportError (nothing written)
    or ValueError for an unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No such file: {path}")
    fmt = detect_format(path, fmt)
    unit = "row" if fmt == "parquet" else "line"
    began = time.perf_counter()
    result = ImportResult()
    with transaction.atomic(), connection.cursor() as cursor:
        _create_stage(cursor)
        try:
            errors, bad, result.rows, features = _stage_rows(
                cursor, read_rows(path, fmt), batch=batch
            )
            t = time.perf_counter()
            result.phases["parse_stage"] = t - began
            if not bad:
                more, more_bad = _check_keys(cursor)
                errors += more
                bad += more_bad
            result.phases["check"] = time.perf_counter() - t
            if bad:
                raise ImpressionImportError(errors[:MAX_ERRORS], bad, unit=unit)
            t = time.perf_counter()
            result.segments_created = _ensure_segments(cursor, features)
            _upsert(cursor)
            result.phases["write"] = time.perf_counter() - t
        finally:
            if connection.vendor != "postgresql":  # PostgreSQL drops them ON COMMIT/rollback
                cursor.execute(f"DROP TABLE IF EXISTS temp.{STAGE}_keys")
                cursor.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")
    result.seconds = time.perf_counter() - began
    result.phases["commit"] = result.seconds - sum(result.phases.values())
    if log:
        log(f"{result.rows} rows in {result.seconds:.1f}s ({result.rate:,.0f} rows/s)")
    return result


def _create_stage(cursor) -> None:
    cols = (
        "line bigint NOT NULL, day date NOT NULL, segment text NOT NULL, sku text NOT NULL, "
        "ext text NOT NULL, impressions bigint NOT NULL, clicks bigint NOT NULL"
    )
    # Left over by an earlier import in this (outer) transaction, e.g. in tests.
    cursor.execute(f"DROP TABLE IF EXISTS {_temp()}.{STAGE}_keys")
    cursor.execute(f"DROP TABLE IF EXISTS {_temp()}.{STAGE}")
    on_commit = "ON COMMIT DROP" if connection.vendor == "postgresql" else ""
    cursor.execute(f"CREATE TEMP TABLE {STAGE} ({cols}) {on_commit}")


def _temp() -> str:
    return "pg_temp" if connection.vendor == "postgresql" else "temp"


def _stage_rows(cursor, rows: Iterable[tuple[int, dict | str]], *, batch: int):
    errors: list[tuple[int, str]] = []
    bad = total = 0
    features: dict[str, dict] = {}
    pending: list[tuple] = []
    for line, raw in rows:
        total += 1
        if isinstance(raw, str):
            message = raw
        else:
            try:
                day, segment, sku, ext, imp, clk, feats = parse_row(raw)
            except ValueError as exc:
                message = str(exc)
            else:
                if feats is not None:
                    features[segment] = feats
                else:
                    features.setdefault(segment, None)
                if not bad:  # after the first bad row only validation continues
                    pending.append((line, day, segment, sku, ext, imp, clk))
                    if len(pending) >= batch:
                        _flush(cursor, pending)
                        pending = []
                continue
        bad += 1
        if len(errors) < MAX_ERRORS:
            errors.append((line, message))
    if pending and not bad:
        _flush(cursor, pending)
    return errors, bad, total, features


def _flush(cursor, rows: list[tuple]) -> None:
    if connection.vendor == "postgresql":
        cols = "line, day, segment, sku, ext, impressions, clicks"
        with cursor.cursor.copy(f"COPY {STAGE} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "date", "text", "text", "text", "int8", "int8"])
            for row in rows:
                copy.write_row(row)
    else:
        cursor.executemany(
            f"INSERT INTO {STAGE} VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(r[0], r[1].isoformat(), *r[2:]) for r in rows],
        )


def _check_keys(cursor) -> tuple[list[tuple[int, str]], int]:
    """Unknown/ambiguous creatives and keys repeated in the file, by line."""
    cursor.execute(f"CREATE INDEX {STAGE}_key ON {STAGE} (sku, ext)")
    _key_map(cursor)
    errors: list[tuple[int, str]] = []
    bad = 0
    cursor.execute(
        f"SELECT s.line, s.sku, s.ext, k.n FROM {STAGE} s "
        f"LEFT JOIN {STAGE}_keys k ON k.sku = s.sku AND k.ext = s.ext "
        "WHERE k.id IS NULL OR k.n > 1 ORDER BY s.line"
    )
    for line, sku, ext, n in cursor.fetchall():
        bad += 1
        if len(errors) < MAX_ERRORS:
            what = "no creative" if n is None else f"{n} creatives"
            errors.append((line, f"{what} with manifest id {ext!r} for product {sku!r}"))
    cursor.execute(
        f"SELECT s.line, d.first FROM {STAGE} s JOIN ("
        f"  SELECT day, segment, sku, ext, min(line) AS first FROM {STAGE} "
        "   GROUP BY day, segment, sku, ext HAVING count(*) > 1"
        ") d ON d.day = s.day AND d.segment = s.segment AND d.sku = s.sku AND d.ext = s.ext "
        "WHERE s.line <> d.first ORDER BY s.line"
    )
    for line, first in cursor.fetchall():
        bad += 1
        if len(errors) < MAX_ERRORS:
            errors.append((line, f"repeats the (day, segment, creative) of line {first}"))
    return errors, bad


def _key_map(cursor) -> None:
    """{STAGE}_keys: (sku, manifest id) → creative id and how many creatives match."""
    temp = "ON COMMIT DROP" if connection.vendor == "postgresql" else ""
    cursor.execute(
        f"CREATE TEMP TABLE {STAGE}_keys {temp} AS "
        "SELECT p.sku AS sku, c.external_id AS ext, min(c.id) AS id, count(*) AS n "
        "FROM generation_creative c JOIN generation_product p ON p.id = c.product_id "
        f"JOIN (SELECT DISTINCT sku, ext FROM {STAGE}) w "
        "ON w.sku = p.sku AND w.ext = c.external_id "
        "GROUP BY p.sku, c.external_id"
    )
    cursor.execute(f"CREATE UNIQUE INDEX {STAGE}_keys_key ON {STAGE}_keys (sku, ext)")


def _ensure_segments(cursor, features: dict[str, dict | None]) -> int:
    from .models import Segment

    existing = set(Segment.objects.filter(slug__in=list(features)).values_list("slug", flat=True))
    new = [
        Segment(slug=slug, name=slug.replace("-", " ").replace("_", " "), features=f or {})
        for slug, f in features.items()
        if slug not in existing
    ]
    created = Segment.objects.bulk_create(new, ignore_conflicts=True)
    for slug, feats in features.items():  # the file's description wins (latest row)
        if feats is not None and slug in existing:
            Segment.objects.filter(slug=slug).update(features=feats)
    return len(created)


def _upsert(cursor) -> None:
    """One INSERT … SELECT … ON CONFLICT DO UPDATE from the staging table.

    On PostgreSQL, as in core.pgcopy, the foreign keys are checked per distinct parent
    instead of per row when the role may set session_replication_role and the table's only
    INSERT triggers are its own FK checks: the parents (the creatives and segments the staging
    rows resolved to) are locked FOR KEY SHARE first — the lock the RI trigger takes, so a
    concurrent DELETE waits for this transaction and then fails — and counted, so one deleted
    since the look-up aborts the import; then the row triggers are skipped for the INSERT."""
    fast = _set_based_fk(cursor)
    if fast:
        cursor.execute(
            f"WITH l AS (SELECT c.id FROM generation_creative c JOIN {STAGE}_keys k ON k.id = c.id "
            f"WHERE k.n = 1 FOR KEY SHARE OF c) SELECT count(*), "
            f"(SELECT count(*) FROM {STAGE}_keys WHERE n = 1) FROM l"
        )
        locked, wanted = cursor.fetchone()
        cursor.execute(
            "WITH l AS (SELECT g.id FROM ranking_segment g "
            f"JOIN (SELECT DISTINCT segment FROM {STAGE}) s ON s.segment = g.slug "
            f"FOR KEY SHARE OF g) SELECT count(*), (SELECT count(DISTINCT segment) FROM {STAGE}) "
            "FROM l"
        )
        seg_locked, seg_wanted = cursor.fetchone()
        if locked != wanted or seg_locked != seg_wanted:
            raise IntegrityError("A creative or segment of the logs was deleted during the import.")
        cursor.execute("SELECT current_setting('session_replication_role')")
        previous = cursor.fetchone()[0]
        cursor.execute("SET LOCAL session_replication_role = replica")
    cursor.execute(
        "INSERT INTO ranking_impressionlog (day, segment_id, creative_id, impressions, clicks) "
        "SELECT s.day, g.id, k.id, s.impressions, s.clicks "
        f"FROM {STAGE} s JOIN ranking_segment g ON g.slug = s.segment "
        f"JOIN {STAGE}_keys k ON k.sku = s.sku AND k.ext = s.ext WHERE true "
        "ON CONFLICT (segment_id, creative_id, day) DO UPDATE "
        "SET impressions = excluded.impressions, clicks = excluded.clicks"
    )
    if fast:
        cursor.execute("SELECT set_config('session_replication_role', %s, true)", [previous])


def _set_based_fk(cursor) -> bool:
    if connection.vendor != "postgresql":
        return False
    from core.pgcopy import may_disable_triggers, table_layout

    layout = table_layout(cursor, "ranking_impressionlog")
    own_checks_only = all(layout.triggers_on_insert.values())
    return layout.unsupported is None and own_checks_only and may_disable_triggers(cursor)
