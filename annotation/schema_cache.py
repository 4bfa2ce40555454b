"""Label classes per schema, cached per process (they change rarely; every next/submit needs them).

Invalidated by signals in this process and after SCHEMA_CACHE_SECONDS everywhere else."""

import threading
import time
from dataclasses import dataclass

SCHEMA_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Choice:
    id: int
    slug: str
    name: str
    hotkey: str
    description: str


@dataclass(frozen=True)
class SchemaChoices:
    schema_id: int
    choices: tuple[Choice, ...]
    by_slug: dict
    by_id: dict


_cache: dict[int, tuple[float, SchemaChoices]] = {}
_lock = threading.Lock()


def schema_choices(schema_id: int) -> SchemaChoices:
    now = time.monotonic()
    hit = _cache.get(schema_id)
    if hit is not None and now - hit[0] < SCHEMA_CACHE_SECONDS:
        return hit[1]
    from .models import LabelClass

    rows = LabelClass.objects.filter(schema_id=schema_id).order_by("order", "id")
    choices = tuple(Choice(c.id, c.slug, c.name, c.hotkey, c.description) for c in rows)
    value = SchemaChoices(
        schema_id,
        choices,
        {c.slug: c for c in choices},
        {c.id: c for c in choices},
    )
    with _lock:
        _cache[schema_id] = (now, value)
    return value


def clear_schema_cache() -> None:
    with _lock:
        _cache.clear()
