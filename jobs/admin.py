from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from . import services
from .models import Job, JobArtifact, JobMetric, Worker
from .permissions import can_manage_jobs


class JobArtifactInline(admin.TabularInline):
    model = JobArtifact
    extra = 0
    can_delete = False
    readonly_fields = ["name", "file", "size", "sha256", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id", "kind", "status", "progress", "attempt", "worker_id", "requested_by", "created_at",
        "page",
    ]  # fmt: skip
    list_filter = ["kind", "status", "queue", "worker_id"]
    search_fields = ["id", "kind", "idempotency_key", "worker_id", "task_result_id"]
    date_hierarchy = "created_at"
    inlines = [JobArtifactInline]
    actions = ["cancel_jobs", "retry_jobs"]
    readonly_fields = [f.name for f in Job._meta.fields if f.name != "id"]
    exclude = ["input_type", "input_id"]

    def has_add_permission(self, request):
        return False  # jobs are launched through their app's actions or launch_job

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.display(description="progress")
    def progress(self, obj):
        return f"{obj.step}/{obj.total}" if obj.total else obj.step

    @admin.display(description="page")
    def page(self, obj):
        return format_html('<a href="{}">open</a>', obj.get_absolute_url())

    def _guard(self, request) -> bool:
        if not can_manage_jobs(request.user):
            self.message_user(request, "Only ML engineers may do that.", level=messages.ERROR)
            return False
        return True

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        if self._guard(request):
            for job_id in queryset.values_list("pk", flat=True):
                services.cancel_job(job_id=job_id, by=request.user)
            self.message_user(request, f"Cancel requested for {queryset.count()} job(s).")

    @admin.action(description="Retry selected jobs")
    def retry_jobs(self, request, queryset):
        if not self._guard(request):
            return
        done, skipped = 0, []
        for job_id in queryset.values_list("pk", flat=True):
            try:
                services.retry_job(job_id=job_id, by=request.user)
                done += 1
            except ValidationError:
                skipped.append(f"#{job_id}")
        self.message_user(request, f"Queued {done} job(s) again.")
        if skipped:
            self.message_user(
                request, f"Not retryable: {', '.join(skipped)}", level=messages.WARNING
            )


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "hostname", "device", "backend", "last_seen", "current_job"]
    readonly_fields = [f.name for f in Worker._meta.fields]


@admin.register(JobMetric)
class JobMetricAdmin(admin.ModelAdmin):
    list_display = ["job", "name", "step", "value", "attempt"]
    list_filter = ["name"]
    raw_id_fields = ["job"]


@admin.register(JobArtifact)
class JobArtifactAdmin(admin.ModelAdmin):
    """Read-only: artifacts are written by the running job (atomically), never by hand."""

    list_display = ["name", "job", "size", "sha256", "created_at"]
    list_filter = ["job__kind"]
    search_fields = ["name", "sha256", "job__id"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]
    readonly_fields = ["job", "name", "file", "size", "sha256", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
