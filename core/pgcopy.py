"""PostgreSQL bulk inserts: binary COPY, and foreign keys checked per key set instead of per row.

Two costs dominate a 100k–1M-row import on PostgreSQL once the rows are built:

- Text COPY makes the client format and the server parse every value; binary COPY sends them in
  their wire format (a third of the client's and the server's time for the item table).
- Foreign keys. Each inserted row queues one RI trigger event per foreign key, run at commit as
  one SPI query each (~4 µs): 100k labeled import rows carry 7 keys, 3 s of commit.

`copy_rows(..., set_based_fk=True)` runs the COPY with triggers off, as `pg_restore
--disable-triggers` does (`SET LOCAL session_replication_role = replica`: superuser, or
`GRANT SET ON PARAMETER session_replication_role` on PostgreSQL 15+), then enforces each foreign key
of the inserted columns itself, once per distinct referenced value: the parents are locked
`FOR KEY SHARE` (the lock the RI trigger takes, so a concurrent DELETE of a parent waits for this
transaction and then fails on our committed rows) and a missing parent raises IntegrityError in the
caller's transaction, which therefore never commits a dangling key.

It only does so when it understands every trigger an INSERT on the table would fire: the table's
own single-column FK checks (replaced by the set check) and the triggers the caller names as no-ops
for its rows (`skip_triggers`). Anything else (a new audit trigger, a deferrable unique constraint's
recheck, a multi-column key) keeps the ordinary row-level path, as does a role that may not set
session_replication_role. Either way the database refuses a dangling key; only the cost differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

COPY_BATCH = 20000
# Column types sent in binary (psycopg dumps these Python values natively). Others: text COPY.
BINARY_TYPES = {
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "bool",
    "varchar",
    "text",
    "bpchar",
    "timestamptz",
    "timestamp",
    "date",
    "jsonb",
}
INTEGER_TYPES = {"int2", "int4", "int8"}
TEXT_TYPES = {"varchar", "text", "bpchar"}
# pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
TRIGGER_TYPE_INSERT = 1 << 2
# Separates text keys in one string parameter (see key_list).
KEY_SEPARATOR = "\x1f"
# Joins of up to millions of keys against a table: with the default 4 MB the hash join spills to
# disk in batches (measured: locking 1M parents 4.2 s → 2.1 s).
JOIN_WORK_MEM = "128MB"


def key_list(keys: Collection, *, integer: bool) -> tuple[str, object]:
    """(SQL set-returning expression with one %s, its parameter) for a list of keys.

    The keys travel as ONE text parameter split by the server (`string_to_array`): psycopg adapts
    a 100k-element array parameter in Python at ~3 µs per element, more than a join costs. Text
    keys that contain the separator take the (slower) array parameter."""
    if integer:
        return "unnest(string_to_array(%s, ',')::bigint[])", ",".join(map(str, keys))
    if not any(KEY_SEPARATOR in k for k in keys):
        return f"unnest(string_to_array(%s, chr({ord(KEY_SEPARATOR)})))", KEY_SEPARATOR.join(keys)
    return "unnest(%s::text[])", list(keys)


@contextmanager
def join_work_mem(cursor, size: str = JOIN_WORK_MEM):
    """Raise work_mem for the statements inside (transaction-local, restored after)."""
    cursor.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", [size])
    previous = cursor.fetchone()[0]
    yield
    cursor.execute("SELECT set_config('work_mem', %s, true)", [previous])


@dataclass
class ForeignKey:
    name: str
    column: str  # in the table being inserted into
    parent_table: str
    parent_column: str
    parent_type: str  # pg type name of the referenced column


@dataclass
class TableLayout:
    types: dict[str, tuple[int, str]]  # column -> (type oid, type name)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    # Triggers an INSERT fires in origin mode: name -> is one of this table's own FK checks.
    triggers_on_insert: dict[str, bool] = field(default_factory=dict)
    # Why the per-key-set path is impossible (None: possible, given permission and skip_triggers).
    unsupported: str | None = None


def table_layout(cursor, table: str) -> TableLayout:
    """Column types, foreign keys and INSERT triggers of `table` (3 catalog queries, run per bulk
    insert, so a migration that adds a trigger is seen at once)."""
    cursor.execute(
        "SELECT a.attname, a.atttypid, t.typname FROM pg_attribute a "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        [table],
    )
    layout = TableLayout(types={name: (oid, typname) for name, oid, typname in cursor.fetchall()})
    cursor.execute(
        "SELECT c.conname, cardinality(c.conkey), ca.attname, c.confrelid::regclass::text, "
        "  pa.attname, pt.typname "
        "FROM pg_constraint c "
        "JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = c.conkey[1] "
        "JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1] "
        "JOIN pg_type pt ON pt.oid = pa.atttypid "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'f'",
        [table],
    )
    for name, n_columns, column, parent, parent_column, parent_type in cursor.fetchall():
        if n_columns != 1:
            layout.unsupported = f"multi-column foreign key {name}"
        elif parent_type not in INTEGER_TYPES | TEXT_TYPES:
            layout.unsupported = f"foreign key {name} on a {parent_type} column"
        layout.foreign_keys.append(ForeignKey(name, column, parent, parent_column, parent_type))
    # Every enabled trigger an INSERT fires, and whether it is one of this table's FK checks.
    # tgenabled: O fires in origin mode (skipped by replica), A always, R only in replica, D never.
    cursor.execute(
        "SELECT t.tgname, t.tgenabled, "
        "  COALESCE(c.contype = 'f' AND c.conrelid = t.tgrelid, FALSE) "
        "FROM pg_trigger t LEFT JOIN pg_constraint c ON c.oid = t.tgconstraint "
        "WHERE t.tgrelid = %s::regclass AND t.tgtype & %s <> 0 AND t.tgenabled <> 'D'",
        [table, TRIGGER_TYPE_INSERT],
    )
    for name, enabled, own_fk_check in cursor.fetchall():
        if enabled == "R":
            layout.unsupported = f"trigger {name} fires only in replica mode"
        elif enabled == "O":
            layout.triggers_on_insert[name] = own_fk_check
    return layout


def may_disable_triggers(cursor) -> bool:
    """May the current role `SET session_replication_role` (superuser, or granted on
    PostgreSQL 15+)? Asked per bulk insert: the role can change (SET ROLE, a reconnect)."""
    if cursor.db.pg_version >= 150000:
        cursor.execute(
            "SELECT current_setting('is_superuser') = 'on' "
            "OR has_parameter_privilege('session_replication_role', 'SET')"
        )
    else:
        cursor.execute("SELECT current_setting('is_superuser') = 'on'")
    return bool(cursor.fetchone()[0])


def copy_rows(
    conn,
    table: str,
    columns: list[str],
    rows: Iterable,
    *,
    extra: tuple = (),
    convert: dict[int, Callable] | None = None,
    set_based_fk: bool = True,
    skip_triggers: Collection[str] = (),
    new_parents: dict[str, Collection] | None = None,
    batch_size: int = COPY_BATCH,
) -> bool:
    """COPY `rows` (sequences in `columns` order, then `extra` appended to each) into `table`.

    `convert`: {position: function} applied to non-null values (core.bulk passes the
    Django fields' JSON/date adaptation); json/jsonb values without one may be JSON text or
    objects for json.dumps.

    `set_based_fk`: check foreign keys per distinct key (module docstring) where possible.
    `skip_triggers`: names of the table's INSERT triggers that do nothing for these rows (the
    caller's promise, e.g. a trigger whose WHEN clause is false for them).
    `new_parents`: {fk column: keys} of parent rows this transaction inserted itself; they exist
    and nobody else can see them yet, so they need neither a check nor a lock.
    Returns whether the foreign keys were checked per key set (False: by the row triggers).
    """
    qn = conn.ops.quote_name
    with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
        layout = table_layout(cursor, table)
        binary = all(layout.types[c][1] in BINARY_TYPES for c in columns)
        fast = (
            set_based_fk
            and layout.unsupported is None
            and all(own or name in skip_triggers for name, own in layout.triggers_on_insert.items())
            and may_disable_triggers(cursor)
        )
        checks: list[tuple[ForeignKey, int, set]] = []
        if fast:
            position = {c: i for i, c in enumerate(columns)}
            checks = [(fk, position.get(fk.column), set()) for fk in layout.foreign_keys]
            if any(at is None for _, at, _ in checks):
                # A key column left to its default: let the row-level check see that value.
                fast, checks = False, []
        convert = dict(convert or {})
        for i, c in enumerate(columns):
            if layout.types[c][1] == "jsonb" and binary:
                convert[i] = _jsonb_binary(convert.get(i, _json_text))
            elif layout.types[c][1] in ("json", "jsonb"):
                convert.setdefault(i, _json_text)
        rows = prepare_rows(rows, extra, convert, [(at, values.add) for _, at, values in checks])
        types = [_binary_type(*layout.types[c]) for c in columns]
        sql = f"COPY {qn(table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN" + (
            " (FORMAT BINARY)" if binary else ""
        )
        if fast:
            cursor.execute("SELECT current_setting('session_replication_role')")
            previous = cursor.fetchone()[0]
            cursor.execute("SET LOCAL session_replication_role = replica")
        # An error below aborts the transaction; its rollback restores the setting.
        _copy(cursor, sql, rows, types if binary else None, batch_size)
        if fast:
            cursor.execute("SELECT set_config('session_replication_role', %s, true)", [previous])
            for fk, _, values in checks:
                values.difference_update((new_parents or {}).get(fk.column, ()))
                _lock_parents(cursor, table, fk, values)
    return fast


def prepare_rows(rows: Iterable, extra: tuple, convert: dict, collect=()) -> Iterable:
    """One pass per row: append `extra`, convert non-null values ({position: function}), feed
    the values at `collect`'s positions to their `add` functions (foreign keys)."""
    convert = list(convert.items())
    for row in rows:
        row = [*row, *extra]
        for i, fn in convert:
            value = row[i]
            if value is not None:
                row[i] = fn(value)
        for at, add in collect:
            value = row[at]
            if value is not None:
                add(value)
        yield row


def _json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _jsonb_binary(to_text: Callable) -> Callable:
    """jsonb's binary wire format (version byte 1 + the JSON text), memoised by identity: rows
    share value objects (one votes dict per label)."""
    memo: dict[int, tuple[object, bytes]] = {}

    def encode(value):
        hit = memo.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        if len(memo) >= 64:
            memo.clear()
        out = b"\x01" + to_text(value).encode()
        memo[id(value)] = (value, out)
        return out

    return encode


def _binary_type(oid: int, name: str):
    if name == "jsonb":
        # Pre-encoded bytes go through psycopg's bytea dumper unchanged; the server reads them
        # with jsonb's receive function (binary COPY does not check the declared type).
        return "bytea"
    return oid


def _copy(cursor, sql: str, rows: Iterable, types, batch_size: int) -> None:
    """COPY through Django's execute wrappers (so query timers and loggers see it)."""
    batch: list = []

    def flush():
        def run_copy(sql, params, many, context):
            # Raw psycopg underneath: map its errors to Django's (IntegrityError, ...) as
            # CursorWrapper.execute does.
            with cursor.db.wrap_database_errors, cursor.cursor.copy(sql) as copy:
                if types is not None:
                    copy.set_types(types)
                for row in batch:
                    copy.write_row(row)

        cursor._execute_with_wrappers(sql, None, False, executor=run_copy)

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
            batch = []
    if batch:
        flush()


def _lock_parents(cursor, table: str, fk: ForeignKey, values: set) -> None:
    """Lock the referenced rows FOR KEY SHARE; IntegrityError naming a key that has none."""
    if not values:
        return
    qn = cursor.db.ops.quote_name
    source, param = key_list(values, integer=fk.parent_type in INTEGER_TYPES)
    col = qn(fk.parent_column)
    with join_work_mem(cursor):
        cursor.execute(
            f"SELECT p.{col} FROM {fk.parent_table} p JOIN {source} AS k(v) ON p.{col} = k.v "
            "FOR KEY SHARE OF p",
            [param],
        )
        found = {row[0] for row in cursor.fetchall()}
    if len(found) < len(values):
        absent = sorted(values - found, key=str)
        raise IntegrityError(
            f'insert or update on table "{table}" violates foreign key constraint "{fk.name}"\n'
            f"DETAIL:  Key ({fk.column})=({absent[0]}) is not present in table "
            f'"{fk.parent_table}"' + (f" ({len(absent)} keys in all)." if len(absent) > 1 else ".")
        )
