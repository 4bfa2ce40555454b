"""Admin actions that launch jobs, for every app:

    from jobs.admin_actions import launch_job_action

    class DatasetVersionAdmin(admin.ModelAdmin):
        actions = [launch_job_action(
            "rfnet_train",
            initial=lambda queryset: {"dataset_version": queryset.first().pk},
            input_object=lambda queryset: queryset.first(),
        )]

The action first shows a confirmation page with the kind's parameter form (pre-filled by
`initial`; the callables take (queryset) or (request, queryset)); submitting validates it,
enqueues once (the page carries an idempotency key, so a double-click makes one job) and
redirects to /jobs/<id>/. Only ML engineers (and superusers) may launch.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from . import services
from .kinds import get_kind
from .params import _to_json, initial_params
from .permissions import can_manage_jobs

PREFIX = "job"


def launch_job_action(
    kind: str,
    *,
    label: str | None = None,
    initial: Callable | None = None,  # ([request,] queryset) -> dict of field initials
    inputs: Callable | None = None,  # ([request,] queryset) -> lineage JSON
    input_object: Callable | None = None,  # ([request,] queryset) -> model instance | None
    name: str | None = None,
    description: str | None = None,  # alias of label
):
    label = label or description

    def action(modeladmin, request, queryset):
        job_kind = get_kind(kind)
        if not can_manage_jobs(request.user):
            modeladmin.message_user(
                request, "Only ML engineers may launch jobs.", level=messages.ERROR
            )
            return None
        form_class = job_kind.params_form
        start = {
            **initial_params(job_kind),
            **(_call(initial, request, queryset) if initial else {}),
        }
        error = None
        if request.POST.get("post") == "yes":
            # FILES: a kind's form may take an upload (it stores it and keeps a JSON-able name).
            form = form_class(request.POST, request.FILES, prefix=PREFIX) if form_class else None
            if form is None or form.is_valid():
                params = _to_json(form.cleaned_data) if form is not None else {}
                try:
                    job = services.enqueue_job(
                        kind=kind,
                        params=params,
                        requested_by=request.user,
                        idempotency_key=request.POST.get("job_key") or None,
                        inputs=_call(inputs, request, queryset) if inputs else None,
                        input_object=_call(input_object, request, queryset)
                        if input_object
                        else None,
                    )
                except ValidationError as exc:
                    error = " ".join(exc.messages)
                else:
                    modeladmin.message_user(request, f"Job #{job.pk} ({kind}) queued.")
                    return HttpResponseRedirect(job.get_absolute_url())
        else:
            form = form_class(initial=start, prefix=PREFIX) if form_class else None
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": f"Launch: {job_kind.title}",
            "kind": job_kind,
            "form": form,
            "error": error,
            "queryset": queryset,
            "opts": modeladmin.model._meta,
            "action_name": action.__name__,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "job_key": request.POST.get("job_key") or uuid.uuid4().hex,
        }
        return TemplateResponse(request, "jobs/admin_launch.html", context)

    action.__name__ = name or f"launch_{kind}"
    return admin.action(description=label or f"Launch job: {get_kind_title(kind)}")(action)


def _call(fn: Callable, request, queryset):
    try:
        n = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        n = 2
    return fn(request, queryset) if n >= 2 else fn(queryset)


def get_kind_title(kind: str) -> str:
    try:
        return get_kind(kind).title
    except ValidationError:  # registered later (another app's ready()) - fine
        return kind.replace("_", " ")
