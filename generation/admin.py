"""Admin: products (with "Generate creatives…" and "Recurrent generation…" launching jobs),
creatives (read-mostly) and the diffusion-model registry (entries are written by
register_diffusion_model and jobs; admin only archives/restores)."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from jobs.admin_actions import launch_job_action

from . import registry
from .models import Creative, DiffusionModel, Generation, Product


def _products_initial(request, queryset) -> dict:
    skus = list(queryset.values_list("sku", flat=True)[:1000])
    return {"skus": ",".join(skus), "model": "latest"}


def _products_inputs(request, queryset) -> dict:
    return {"products": list(queryset.values_list("sku", flat=True)[:1000])}


generate_creatives = launch_job_action(
    "generate",
    initial=_products_initial,
    inputs=_products_inputs,
    label="Generate creatives…",
    name="generate_creatives",
)
# recurrent_generate is feedback's kind: named, not imported (apps import one way).
recurrent_generation = launch_job_action(
    "recurrent_generate",
    initial=_products_initial,
    inputs=_products_inputs,
    label="Recurrent generation (regenerate what RFNet rejects)…",
    name="recurrent_generation",
)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "title", "category", "width", "height", "generated", "created_at"]
    list_filter = ["category"]
    search_fields = ["sku", "title", "sha256"]
    show_full_result_count = False
    actions = [generate_creatives, recurrent_generation]

    @admin.display(description="Generated")
    def generated(self, obj):
        url = reverse("generation-product", args=[obj.sku])
        return format_html('<a href="{}">creatives</a>', url)


@admin.register(Creative)
class CreativeAdmin(admin.ModelAdmin):
    list_display = ["id", "product", "generator", "width", "height", "created_at"]
    list_filter = ["generator"]
    search_fields = ["=id", "sha256", "external_id", "product__sku", "prompt"]
    list_select_related = ["product"]
    raw_id_fields = ["product"]
    readonly_fields = ["sha256", "width", "height", "created_at"]
    show_full_result_count = False


@admin.action(description="Archive (hidden from 'latest')")
def archive(modeladmin, request, queryset):
    for model in queryset:
        registry.set_status(model=model, status=DiffusionModel.Status.ARCHIVED)
    modeladmin.message_user(request, f"Archived {queryset.count()} model(s).", messages.SUCCESS)


@admin.action(description="Restore to ready")
def restore(modeladmin, request, queryset):
    for model in queryset:
        registry.set_status(model=model, status=DiffusionModel.Status.READY)
    modeladmin.message_user(request, f"Restored {queryset.count()} model(s).", messages.SUCCESS)


@admin.register(DiffusionModel)
class DiffusionModelAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "short_checksum", "parent", "reward_model", "job",
                    "created_at"]  # fmt: skip
    list_filter = ["status"]
    search_fields = ["name", "checksum", "reward_model"]
    list_select_related = ["parent", "job"]
    actions = [archive, restore]
    readonly_fields = [f.name for f in DiffusionModel._meta.fields]

    @admin.display(description="Checksum")
    def short_checksum(self, obj):
        return obj.checksum[:12]

    def has_add_permission(self, request):
        return False  # entries come from register_diffusion_model and jobs (validated folders)

    def has_change_permission(self, request, obj=None):
        # Rows belong to services; the change permission only unlocks the archive actions.
        return obj is None and super().has_change_permission(request)


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "product", "model", "group", "attempt", "seed", "score", "kept"]
    list_filter = ["kept", "model"]
    list_select_related = ["product", "model", "job"]
    raw_id_fields = ["creative", "product", "job", "model"]
    search_fields = ["product__sku"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
