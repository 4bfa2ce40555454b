"""Admin actions for dataset versions (the core helper's admin attaches them):

- `create_dataset_version_action` on the Project admin: one `create_dataset_version` job per
  selected project (a worker freezes it: no heavy work in requests), named
  `<slug>-<UTC timestamp>`, default parameters (CLI/API for custom ones).
- `export_dataset_jsonl_action` / `export_dataset_parquet_action` on the DatasetVersion admin:
  a streamed download of the one selected version.
- `ReadOnlyAdminMixin`: versions and their rows cannot be added, changed or deleted in the admin.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.html import format_html

from annotation import exporting
from annotation import jobs as annotation_jobs
from core.policy import is_ml_engineer
from jobs.services import enqueue_job


@admin.action(description="Create a dataset version (defaults: 0.8/0.1/0.1, seed 0)")
def create_dataset_version_action(modeladmin, request, queryset):
    if not is_ml_engineer(request.user):
        modeladmin.message_user(request, "Only ML engineers create versions.", messages.ERROR)
        return None
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    for project in queryset:
        name = f"{project.slug}-{stamp}"
        try:
            job = enqueue_job(
                kind=annotation_jobs.DATASET,
                params={"project": project.slug, "name": name},
                requested_by=request.user,
            )
        except ValidationError as exc:
            modeladmin.message_user(request, "; ".join(exc.messages), messages.ERROR)
            continue
        modeladmin.message_user(
            request,
            format_html('Freezing {} in <a href="/jobs/{}/">job #{}</a>.', name, job.pk, job.pk),
            messages.SUCCESS,
        )
    return None


def _export(modeladmin, request, queryset, fmt):
    if not is_ml_engineer(request.user):
        modeladmin.message_user(request, "Only ML engineers export datasets.", messages.ERROR)
        return None
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one dataset version.", messages.ERROR)
        return None
    version = queryset.get()
    response = StreamingHttpResponse(
        exporting.iter_export(version, fmt), content_type=exporting.CONTENT_TYPES[fmt]
    )
    response["Content-Disposition"] = f'attachment; filename="{exporting.filename(version, fmt)}"'
    return response


@admin.action(description="Export as JSON lines")
def export_dataset_jsonl_action(modeladmin, request, queryset):
    return _export(modeladmin, request, queryset, "jsonl")


@admin.action(description="Export as Parquet")
def export_dataset_parquet_action(modeladmin, request, queryset):
    return _export(modeladmin, request, queryset, "parquet")


class ReadOnlyAdminMixin:
    """Dataset versions are immutable: view only in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
