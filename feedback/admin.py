"""Admin: the model registry (promote, retire, evaluate, score) and "Training datasets" (dataset
versions seen from feedback, with the "Train RFNet" action). Job launches go through
jobs.admin_actions.launch_job_action: a confirmation form with the job's parameters, then the
job page."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from jobs.admin_actions import launch_job_action

from . import services
from .jobs import EVALUATE, SCORE, TRAIN
from .models import CreativeScore, Evaluation, FeedbackModel, TrainingDataset
from .rfft_admin import finetune_against_rfnet  # RFFT (issue 10); also registers its admins


def _dataset_initial(request, queryset) -> dict:
    version = queryset.first()
    return {"dataset": version.name if version else ""}


def _model_initial(request, queryset) -> dict:
    model = queryset.first()
    return {"model": model.name if model else "active"}


train_rfnet = launch_job_action(
    TRAIN,
    initial=_dataset_initial,
    input_object=lambda request, queryset: queryset.first(),
    label="Train RFNet on this dataset version",
)
evaluate_rfnet = launch_job_action(
    EVALUATE, initial=_model_initial, label="Evaluate on a dataset version"
)
score_creatives = launch_job_action(
    SCORE, initial=_model_initial, label="Score creatives with this model"
)


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "item_count", "created_at", "models_trained"]
    list_filter = ["project"]
    search_fields = ["name"]
    actions = [train_rfnet]

    def models_trained(self, obj) -> int:
        return obj.feedback_models.count()

    def has_add_permission(self, request) -> bool:
        return False  # versions are frozen by annotation's create_dataset_version

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class EvaluationInline(admin.TabularInline):
    model = Evaluation
    extra = 0
    can_delete = False
    fields = ["dataset_version", "split", "accuracy", "macro_f1", "created_at"]
    readonly_fields = fields

    def accuracy(self, obj):
        return obj.metrics.get("accuracy")

    def macro_f1(self, obj):
        return obj.metrics.get("macro_f1")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FeedbackModel)
class FeedbackModelAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "schema", "dataset_version", "accuracy", "macro_f1", "page"]
    list_filter = ["status", "schema"]
    search_fields = ["name"]
    readonly_fields = [
        "name",
        "schema",
        "class_names",
        "dataset_version",
        "job",
        "checkpoint",
        "status",
        "config",
        "metrics",
        "created_by",
        "created_at",
        "promoted_at",
        "retired_at",
    ]
    inlines = [EvaluationInline]
    actions = ["promote", "retire", evaluate_rfnet, score_creatives, finetune_against_rfnet]

    def accuracy(self, obj):
        return obj.metrics.get("accuracy")

    def macro_f1(self, obj):
        return obj.metrics.get("macro_f1")

    @admin.display(description="Page")
    def page(self, obj):
        return format_html('<a href="/feedback/models/{}/">metrics</a>', obj.name)

    def has_add_permission(self, request) -> bool:
        return False  # models are registered by training jobs

    @admin.action(description="Promote to active (retires the current active model)")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to promote.", messages.ERROR)
            return
        try:
            model = services.promote_model(model=queryset.get())
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        self.message_user(request, f"{model.name} is now active.", messages.SUCCESS)

    @admin.action(description="Retire")
    def retire(self, request, queryset):
        for model in queryset:
            services.retire_model(model=model)
        self.message_user(request, f"Retired {queryset.count()} model(s).", messages.SUCCESS)


@admin.register(CreativeScore)
class CreativeScoreAdmin(admin.ModelAdmin):
    list_display = ["creative", "model", "predicted_label", "p_available", "uncertainty", "created"]
    list_filter = ["model", "predicted_label"]
    list_select_related = ["model"]
    raw_id_fields = ["creative"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    """Read-only: evaluations are written by the rfnet_evaluate job."""

    list_display = ["model", "dataset_version", "split", "accuracy", "macro_f1", "created_at"]
    list_filter = ["split", "dataset_version"]
    search_fields = ["model__name", "dataset_version__name"]
    list_select_related = ["model", "dataset_version"]
    readonly_fields = ["model", "dataset_version", "split", "metrics", "job", "created_at"]

    @admin.display(description="accuracy")
    def accuracy(self, obj):
        return obj.metrics.get("accuracy")

    @admin.display(description="macro-F1")
    def macro_f1(self, obj):
        return obj.metrics.get("macro_f1")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
