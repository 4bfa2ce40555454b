"""Job parameters: validated by the kind's form, stored as JSON, re-cleaned at run time (so a
ModelChoiceField gives the runner a model instance again)."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from .kinds import JobKind

#: Parameters the runner itself understands, accepted for every distributed kind.
NUM_PROCESSES = "num_processes"


def _to_json(value: Any) -> Any:
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, models.QuerySet):
        return [obj.pk for obj in value]
    if isinstance(value, list | tuple | set):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def bound_form(kind: JobKind, params: dict | None) -> forms.Form | None:
    """Missing keys take the field's initial value, so {"steps": 10} is a complete request from
    the API or the command line."""
    if kind.params_form is None:
        return None
    form = kind.params_form()
    data = {
        name: form.get_initial_for_field(field, name)
        for name, field in form.fields.items()
        if form.get_initial_for_field(field, name) is not None
    }
    data.update(params or {})
    return kind.params_form(data=data)


def clean_params(kind: JobKind, params: dict | None) -> tuple[dict, dict]:
    """Return (cleaned, json_params) or raise ValidationError with per-field messages."""
    params = dict(params or {})
    num_processes = params.pop(NUM_PROCESSES, None)
    extra: dict = {}
    if num_processes not in (None, ""):
        try:
            n = int(num_processes)
        except (TypeError, ValueError):
            raise ValidationError({NUM_PROCESSES: ["Enter a whole number."]})
        if n < 1:
            raise ValidationError({NUM_PROCESSES: ["Must be at least 1."]})
        if n > 1 and not kind.distributed:
            raise ValidationError({NUM_PROCESSES: [f"{kind.name} runs in a single process."]})
        extra[NUM_PROCESSES] = n
    form = bound_form(kind, params)
    if form is None:
        if params:
            names = ", ".join(sorted(params))
            raise ValidationError(f"{kind.name} takes no parameters (got {names}).")
        return dict(extra), dict(extra)
    if not form.is_valid():
        raise ValidationError(
            {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        )
    unknown = set(params) - set(form.fields)
    if unknown:
        raise ValidationError(
            f"Unknown parameter(s) for {kind.name}: {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(form.fields)}."
        )
    cleaned = {**form.cleaned_data, **extra}
    return cleaned, _to_json(cleaned)


def initial_params(kind: JobKind) -> dict:
    """Each field's initial value, for confirmation forms and the CLI's help."""
    if kind.params_form is None:
        return {}
    form = kind.params_form()
    return {name: form.get_initial_for_field(f, name) for name, f in form.fields.items()}
