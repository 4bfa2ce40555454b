"""ORM querysets compiled to SQL once per connection and re-run with other parameter values.

The labeling hot path (token auth, project look-up, submit's lease row) runs the same few
querysets thousands of times a minute; building and compiling them costs Django more CPU than
the database spends answering (~0.5–1 ms each with annotations and subqueries). A PreparedQuery
builds its queryset once with sentinel values, keeps the compiler's SQL and column layout, and
afterwards only substitutes the parameters and turns rows into model instances the way
`ModelIterable` does (select_related objects and annotations included).

    by_key = PreparedQuery(lambda key: Token.objects.select_related("user").filter(key=key))
    token = by_key.first(key="abc")

Sentinels are unusual values of the parameter's type; every occurrence of a sentinel in the
compiled parameters is replaced, so one argument may appear several times in the SQL.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from django.db import connections
from django.db.models.query import get_related_populators

_sentinel_ids = itertools.count(1)
_lock = threading.Lock()


class PreparedQuery:
    def __init__(self, build: Callable[..., object], *, ints: tuple[str, ...] = ()):
        """`build(**values)` returns the queryset; argument names listed in `ints` get integer
        sentinels, the others string sentinels."""
        self.build = build
        self.ints = set(ints)

    def _sentinels(self, names) -> dict:
        out = {}
        for name in names:
            n = next(_sentinel_ids)
            out[name] = -(10**15) - n if name in self.ints else f"\x00rfs-sentinel-{n}\x00"
        return out

    def _compiled(self, queryset_db: str, names: tuple[str, ...]):
        conn = connections[queryset_db]
        # Per connection object (one per thread): the compiler holds its connection's ops.
        cache = conn.__dict__.setdefault("_rfs_prepared", {})
        key = (id(self), names)
        hit = cache.get(key)
        if hit is not None:
            return hit
        sentinels = self._sentinels(names)
        queryset = self.build(**sentinels)
        compiler = queryset.query.get_compiler(using=queryset.db)
        sql, params = compiler.as_sql()
        slots = {
            name: [i for i, p in enumerate(params) if p == value]
            for name, value in sentinels.items()
        }
        missing = [name for name, at in slots.items() if not at]
        if missing:
            raise ValueError(f"PreparedQuery: argument(s) {missing} do not reach the SQL")
        klass_info, select = compiler.klass_info, compiler.select
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        plan = {
            "sql": sql,
            "params": list(params),
            "slots": slots,
            "compiler": compiler,
            "converters": compiler.get_converters([s[0] for s in select[: compiler.col_count]]),
            "model": klass_info["model"],
            "init_list": [f[0].target.attname for f in select[start:end]],
            "span": (start, end),
            "populators": get_related_populators(klass_info, select, queryset.db),
            "annotations": dict(compiler.annotation_col_map or {}),
        }
        with _lock:
            cache[key] = plan
        return plan

    def all(self, *, using: str = "default", **values) -> list:
        plan = self._compiled(using, tuple(sorted(values)))
        params = list(plan["params"])
        for name, value in values.items():
            for i in plan["slots"][name]:
                params[i] = value
        with connections[using].cursor() as cursor:
            cursor.execute(plan["sql"], params)
            rows = cursor.fetchall()
        if plan["converters"]:
            rows = plan["compiler"].apply_converters(rows, plan["converters"])
        start, end = plan["span"]
        model, init_list = plan["model"], plan["init_list"]
        out = []
        for row in rows:
            obj = model.from_db(using, init_list, row[start:end])
            for populator in plan["populators"]:
                populator.populate(row, obj)
            for attr, pos in plan["annotations"].items():
                setattr(obj, attr, row[pos])
            out.append(obj)
        return out

    def first(self, *, using: str = "default", **values):
        """The first row (the queryset should be ordered and sliced [:1] by `build`)."""
        rows = self.all(using=using, **values)
        return rows[0] if rows else None
