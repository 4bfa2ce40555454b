"""Admin for every annotation model. Writes that change queue state go through services (the
"re-open items" action); counters maintained by triggers/services are read-only here."""

from django.contrib import admin, messages

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


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
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
    actions = (
        [admin_actions.create_dataset_version_action]
        if admin_actions and hasattr(admin_actions, "create_dataset_version_action")
        else []
    )


@admin.action(description="Re-open items (discard their labels, back to the queue)")
def reopen_items_action(modeladmin, request, queryset):
    n = services.reopen_items(
        item_ids=list(queryset.values_list("pk", flat=True)),
        actor=request.user,
        reason="admin",
    )
    modeladmin.message_user(request, f"Re-opened {n} finished item(s).", messages.SUCCESS)


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
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
    readonly_fields = [
        "annotation_count",
        "votes",
        "lease_count",
        "lease_expires_at",
        "consensus_label",
        "agreement",
        "flagged_low_gold",
        "created_at",
        "updated_at",
    ]
    actions = [reopen_items_action]
    show_full_result_count = False  # COUNT(*) over a million rows on every page


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "item_id", "project", "annotator", "status", "expires_at", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["=item__id", "annotator__username"]
    list_select_related = ["project", "annotator"]
    raw_id_fields = ["item", "annotator", "project"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):
        return False  # leases change only through the queue services


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "item_id", "annotator", "label", "discarded_at", "created_at"]
    list_filter = ["label", "discard_reason", "item__project"]
    search_fields = ["=item__id", "annotator__username", "idempotency_key"]
    list_select_related = ["annotator", "label"]
    raw_id_fields = ["item", "annotator"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):
        return False  # labels are never edited: QA relabels, annotators undo

    def has_delete_permission(self, request, obj=None):
        return False  # no data is ever lost


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "item_id", "reviewer", "action", "label", "created_at"]
    list_filter = ["action", "item__project"]
    search_fields = ["=item__id", "reviewer__username", "reason"]
    list_select_related = ["reviewer", "label"]
    raw_id_fields = ["item", "reviewer"]


@admin.register(AnnotatorGoldStats)
class AnnotatorGoldStatsAdmin(admin.ModelAdmin):
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
