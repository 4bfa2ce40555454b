"""Admin for every annotation model. Queue data is read-only here: items, leases, labels, reviews
and gold statistics are written by the services (annotation/services.py, rules in
annotation/item_state.py) and database triggers, never by a form. Admin actions call those
services: re-open or recompute items, switch a project's queue order; a project's `ordering` and
`overlap` edited in its form are applied by the services too (save_model)."""

from django import forms
from django.contrib import admin, messages

from core import limits, policy

from . import services
from .models import (
    Annotation,
    AnnotatorGoldStats,
    Assignment,
    AuditEvent,
    DatasetItem,
    DatasetVersion,
    Item,
    LabelClass,
    LabelSchema,
    Project,
    Review,
)

try:  # dataset-version / export actions (datasets helper)
    from . import admin_actions
except ImportError:  # pragma: no cover
    admin_actions = None

_ReadOnly = getattr(admin_actions, "ReadOnlyAdminMixin", object)


class LabelClassInline(admin.TabularInline):
    model = LabelClass
    extra = 0


@admin.register(LabelSchema)
class LabelSchemaAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [LabelClassInline]


@admin.register(LabelClass)
class LabelClassAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "schema", "hotkey", "order"]
    list_filter = ["schema"]
    search_fields = ["slug", "name"]
    list_select_related = ["schema"]


class ProjectAdminForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = [
            "name",
            "slug",
            "schema",
            "overlap",
            "lease_seconds",
            "instructions",
            "qa_sample_rate",
            "gold_rate",
            "ordering",
            "annotators",
            "created_by",
            "archived",
        ]

    def clean_overlap(self):
        overlap = self.cleaned_data["overlap"]
        if not 1 <= overlap <= limits.max_overlap():
            raise forms.ValidationError(f"Between 1 and {limits.max_overlap()}.")
        return overlap


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectAdminForm
    list_display = [
        "name",
        "slug",
        "overlap",
        "ordering",
        "gold_rate",
        "qa_sample_rate",
        "archived",
    ]
    list_filter = ["ordering", "archived", "schema"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["annotators"]
    raw_id_fields = ["created_by"]
    list_select_related = ["schema"]
    actions = [
        *(
            [admin_actions.create_dataset_version_action]
            if admin_actions and hasattr(admin_actions, "create_dataset_version_action")
            else []
        ),
        "order_fifo",
        "order_random",
        "order_uncertainty",
    ]

    def get_readonly_fields(self, request, obj=None):
        return ["schema"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        """Queue settings of an existing project change through the services, never by a plain
        save: `ordering` re-draws or resets every item's priority, `overlap` re-opens or
        finishes items (services.set_project_ordering / set_project_overlap)."""
        if not change:
            return super().save_model(request, obj, form, change)
        queue = {f: getattr(obj, f) for f in ("ordering", "overlap") if f in form.changed_data}
        stored = Project.objects.get(pk=obj.pk)
        obj.ordering, obj.overlap = stored.ordering, stored.overlap
        super().save_model(request, obj, form, change)
        if "overlap" in queue:
            services.set_project_overlap(project=obj, overlap=queue["overlap"], actor=request.user)
        if "ordering" in queue:
            services.set_project_ordering(
                project=obj, ordering=queue["ordering"], actor=request.user
            )

    def _set_ordering(self, request, queryset, ordering):
        for project in queryset:
            services.set_project_ordering(project=project, ordering=ordering, actor=request.user)
        self.message_user(
            request, f"{queryset.count()} project(s) now ordered by {ordering}.", messages.SUCCESS
        )

    @admin.action(description="Queue order: first in, first out", permissions=["change"])
    def order_fifo(self, request, queryset):
        self._set_ordering(request, queryset, Project.Ordering.FIFO)

    @admin.action(description="Queue order: random (re-draws every item)", permissions=["change"])
    def order_random(self, request, queryset):
        self._set_ordering(request, queryset, Project.Ordering.RANDOM)

    @admin.action(
        description="Queue order: most uncertain first (RFNet scores)", permissions=["change"]
    )
    def order_uncertainty(self, request, queryset):
        self._set_ordering(request, queryset, Project.Ordering.UNCERTAINTY)


@admin.action(
    description="Re-open items (discard their labels, back to the queue)", permissions=["queue"]
)
def reopen_items_action(modeladmin, request, queryset):
    n = services.reopen_items(
        item_ids=list(queryset.values_list("pk", flat=True)),
        actor=request.user,
        reason="admin",
    )
    modeladmin.message_user(request, f"Re-opened {n} finished item(s).", messages.SUCCESS)


@admin.action(description="Recompute state from live annotations (repair)", permissions=["queue"])
def recompute_items_action(modeladmin, request, queryset):
    n = services.recompute_items(item_ids=list(queryset.values_list("pk", flat=True)))
    modeladmin.message_user(request, f"Recomputed {n} item(s).", messages.SUCCESS)


class QueueDataAdmin(admin.ModelAdmin):
    """View-only rows of the queue; admin actions (which call services) still work."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # no data is ever lost

    def has_queue_permission(self, request):
        """Who may run the queue services' actions: ML engineers (and superusers; core.policy)."""
        return policy.is_ml_engineer(request.user)


@admin.register(Item)
class ItemAdmin(QueueDataAdmin):
    list_display = [
        "id",
        "project",
        "status",
        "annotation_count",
        "lease_count",
        "consensus_label",
        "agreement",
        "review_status",
        "is_gold",
    ]
    list_filter = ["project", "status", "review_status", "review_reason", "is_gold"]
    search_fields = ["=id", "external_id", "creative__product__sku", "creative__sha256"]
    list_select_related = ["project", "consensus_label"]
    raw_id_fields = ["creative"]
    actions = [reopen_items_action, recompute_items_action]
    show_full_result_count = False  # COUNT(*) over a million rows on every page


@admin.register(Assignment)
class AssignmentAdmin(QueueDataAdmin):
    list_display = ["id", "item_id", "project", "annotator", "status", "expires_at", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["=item__id", "annotator__username"]
    list_select_related = ["project", "annotator"]
    raw_id_fields = ["item", "annotator", "project"]
    show_full_result_count = False  # leases change only through the queue services


@admin.register(Annotation)
class AnnotationAdmin(QueueDataAdmin):
    list_display = ["id", "item_id", "annotator", "label", "discarded_at", "created_at"]
    list_filter = ["label", "discard_reason", "item__project"]
    search_fields = ["=item__id", "annotator__username", "idempotency_key"]
    list_select_related = ["annotator", "label"]
    raw_id_fields = ["item", "annotator"]
    show_full_result_count = False  # labels are never edited: QA relabels, annotators undo


@admin.register(Review)
class ReviewAdmin(QueueDataAdmin):  # reviews are made in the QA pages (services.review_item)
    list_display = ["id", "item_id", "reviewer", "action", "label", "created_at"]
    list_filter = ["action", "item__project"]
    search_fields = ["=item__id", "reviewer__username", "reason"]
    list_select_related = ["reviewer", "label"]
    raw_id_fields = ["item", "reviewer"]


@admin.register(AnnotatorGoldStats)
class AnnotatorGoldStatsAdmin(QueueDataAdmin):  # kept by the submit/undo services
    list_display = ["annotator", "project", "answered", "correct", "is_low"]
    list_filter = ["is_low", "project"]
    search_fields = ["annotator__username"]
    list_select_related = ["annotator", "project"]
    raw_id_fields = ["annotator"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the table itself refuses UPDATE/DELETE."""

    list_display = ["id", "created_at", "action", "project_id", "item_id_ref", "actor_id"]
    list_filter = ["action"]
    search_fields = ["=item_id_ref", "action"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DatasetVersion)
class DatasetVersionAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["name", "project", "item_count", "created_by", "created_at"]
    list_filter = ["project"]
    search_fields = ["name"]
    list_select_related = ["project", "created_by"]
    actions = [
        getattr(admin_actions, name)
        for name in ("export_dataset_jsonl_action", "export_dataset_parquet_action")
        if admin_actions and hasattr(admin_actions, name)
    ]


@admin.register(DatasetItem)
class DatasetItemAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["id", "version", "item_id", "label", "split", "votes", "agreement"]
    list_filter = ["split", "version"]
    search_fields = ["=item__id", "label"]
    list_select_related = ["version"]
    raw_id_fields = ["item", "creative", "version"]
    show_full_result_count = False
