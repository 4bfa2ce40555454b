"""Admin: segments (with "Preview ranking…"), logs, features, and the encoder/ranker registry
(read-only: rows are written by imports and jobs). Launches go through
jobs.admin_actions.launch_job_action."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from jobs.admin_actions import launch_job_action

from .jobs import FEATURES, PREVIEW, TRAIN_ENCODER, TRAIN_RANKER
from .models import (
    CreativeEmbedding,
    CreativeFeatures,
    ImpressionLog,
    PreviewEntry,
    RankingModel,
    Segment,
)


def _segments_initial(request, queryset) -> dict:
    return {"segment": ",".join(queryset.values_list("slug", flat=True)), "model": "latest"}


preview_ranking = launch_job_action(
    PREVIEW, initial=_segments_initial, label="Preview ranking…", name="preview_ranking"
)
train_ranker = launch_job_action(TRAIN_RANKER, label="Train a creative ranker on all logs")
train_encoder = launch_job_action(TRAIN_ENCODER, label="Train the creative encoder")
extract_features = launch_job_action(FEATURES, label="Extract creative features")


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "features", "preview"]
    search_fields = ["slug", "name"]
    actions = [preview_ranking, train_ranker, train_encoder, extract_features]

    @admin.display(description="Preview")
    def preview(self, obj):
        return format_html('<a href="/ranking/preview/?segment={}">page</a>', obj.slug)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImpressionLog)
class ImpressionLogAdmin(ReadOnlyAdmin):
    list_display = ["day", "segment", "creative", "impressions", "clicks"]
    list_filter = ["segment", "day"]
    list_select_related = ["segment"]
    raw_id_fields = ["creative"]
    date_hierarchy = "day"


@admin.register(CreativeFeatures)
class CreativeFeaturesAdmin(ReadOnlyAdmin):
    list_display = ["creative", "extractor", "version", "error", "created_at"]
    list_filter = ["extractor", "version"]
    raw_id_fields = ["creative"]


@admin.register(RankingModel)
class RankingModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "ndcg3", "gauc", "recall5", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name"]
    readonly_fields = ["name", "kind", "config", "metrics", "checkpoint", "job", "created_by"]

    @admin.display(description="NDCG@3")
    def ndcg3(self, obj):
        return obj.metrics.get("ndcg@3")

    @admin.display(description="GAUC")
    def gauc(self, obj):
        return obj.metrics.get("gauc")

    @admin.display(description="recall@5 (held-out)")
    def recall5(self, obj):
        return (obj.metrics.get("heldout") or {}).get("recall@5")


@admin.register(CreativeEmbedding)
class CreativeEmbeddingAdmin(ReadOnlyAdmin):
    list_display = ["creative", "encoder"]
    list_filter = ["encoder"]
    list_select_related = ["encoder"]
    raw_id_fields = ["creative"]
    exclude = ["vector"]


@admin.register(PreviewEntry)
class PreviewEntryAdmin(ReadOnlyAdmin):
    list_display = ["segment", "model", "product", "rank", "score", "p_ctr", "created_at"]
    list_filter = ["segment", "model"]
    list_select_related = ["segment", "model", "product"]
    raw_id_fields = ["product", "creative", "job"]
