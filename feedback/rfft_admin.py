"""Admin for RFFT (imported by feedback/admin.py): "Fine-tune diffuser against this RFNet…" on RFNet
models and on diffusion models (feedback's proxy `FineTunableDiffuser`: generation is the lower
app and cannot know the job kind), "Evaluate generator…" on diffusion models, and the read-only
generator evaluations. Every action is a confirmation form (jobs.admin_actions) that enqueues
through jobs.services.enqueue_job."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from jobs.admin_actions import launch_job_action

from .rfft import EVALUATE_GENERATOR, RFFT
from .rfft_models import (
    ABJudgement,
    ABPair,
    EvaluationImage,
    FineTunableDiffuser,
    GeneratorEvaluation,
)


def _reward_initial(request, queryset) -> dict:
    model = queryset.first()
    return {"reward": model.name if model else "active", "base": "latest"}


def _base_initial(request, queryset) -> dict:
    model = queryset.first()
    return {"base": model.name if model else "latest", "reward": "active"}


def _eval_initial(request, queryset) -> dict:
    model = queryset.first()
    return {"model": model.name if model else "latest"}


finetune_against_rfnet = launch_job_action(
    RFFT,
    initial=_reward_initial,
    input_object=lambda request, queryset: queryset.first(),
    label="Fine-tune diffuser against this RFNet…",
    name="finetune_against_rfnet",
)
finetune_diffuser = launch_job_action(
    RFFT,
    initial=_base_initial,
    input_object=lambda request, queryset: queryset.first(),
    label="Fine-tune diffuser against an RFNet…",
    name="finetune_diffuser",
)
evaluate_generator = launch_job_action(
    EVALUATE_GENERATOR,
    initial=_eval_initial,
    input_object=lambda request, queryset: queryset.first(),
    label="Evaluate generator…",
    name="evaluate_generator",
)


@admin.register(FineTunableDiffuser)
class FineTunableDiffuserAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "parent", "reward_model", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    actions = [finetune_diffuser, evaluate_generator]
    readonly_fields = [f.name for f in FineTunableDiffuser._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # entries are registered by jobs and register_diffusion_model

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(GeneratorEvaluation)
class GeneratorEvaluationAdmin(admin.ModelAdmin):
    list_display = ["name", "model_name", "baseline_name", "judge_name", "created_at", "page"]
    search_fields = ["name", "model_name", "baseline_name"]
    readonly_fields = [f.name for f in GeneratorEvaluation._meta.fields]

    def page(self, obj) -> str:
        return format_html(
            '<a href="/feedback/generators/{}/">comparison</a> · '
            '<a href="/feedback/generators/{}/ab/">blind A/B</a>',
            obj.pk,
            obj.pk,
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class _ReadOnly(admin.ModelAdmin):
    """Evaluation images, blind pairs and judgements are written by the evaluation job and the A/B
    page; admin only reads them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EvaluationImage)
class EvaluationImageAdmin(_ReadOnly):
    list_display = ["evaluation", "side", "product", "seed", "p_reward", "p_judge"]
    list_filter = ["side"]
    list_select_related = ["evaluation", "product"]
    raw_id_fields = ["creative", "product"]


@admin.register(ABPair)
class ABPairAdmin(_ReadOnly):
    list_display = ["evaluation", "order", "a_on_left"]
    list_select_related = ["evaluation"]
    raw_id_fields = ["model_image", "baseline_image"]


@admin.register(ABJudgement)
class ABJudgementAdmin(_ReadOnly):
    list_display = ["pair", "reviewer", "preference", "model_label", "baseline_label", "created_at"]
    list_filter = ["preference"]
    list_select_related = ["pair", "reviewer"]
    raw_id_fields = ["pair"]
