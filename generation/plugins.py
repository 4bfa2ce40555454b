"""Hooks through which higher apps serve generation's jobs (apps import one way: generation
cannot import annotation). annotation registers both in its AppConfig.ready():

- "training_creatives": (dataset_version_name, label) -> list[Creative] — a frozen dataset
  version's creatives with that consensus label (what train_diffuser learns from);
- "push_to_project": (project_slug, creatives, actor) -> int — queue creatives for labelling.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ValidationError

_HOOKS: dict[str, Callable] = {}


def register(name: str, fn: Callable) -> None:
    _HOOKS[name] = fn


def get(name: str) -> Callable:
    try:
        return _HOOKS[name]
    except KeyError:
        raise ValidationError(
            f"No {name!r} provider is installed (the annotation app registers it)."
        ) from None
