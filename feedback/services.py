"""Writes of the feedback app. Keyword-only functions, each owning its transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Item, LabelSchema, Project
from jobs.files import install_staged, staged_copy

from .analysis import summarize
from .models import CreativeScore, Evaluation, FeedbackModel

log = logging.getLogger(__name__)


def register_model(
    *,
    name_prefix: str,
    schema,
    class_names: Sequence[str],
    source_dir: Path,
    config: dict,
    metrics: dict,
    dataset_version=None,
    job=None,
    created_by=None,
) -> FeedbackModel:
    """Register a trained checkpoint as a candidate named "<name_prefix>-<n>".

    The folder is copied beside its final place, then renamed into place inside the transaction
    that creates the row, so `checkpoint` only ever names a complete folder. A retried job gets
    the model it registered before (one model per job is a database constraint)."""
    if job is not None:
        existing = FeedbackModel.objects.filter(job=job).first()
        if existing is not None:
            return existing
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise ValidationError(f"Checkpoint folder {source_dir} does not exist.")
    with staged_copy(source_dir, settings.RFSTUDIO_MODELS_DIR) as staging:
        for _ in range(50):
            n = FeedbackModel.objects.filter(name__startswith=f"{name_prefix}-").count() + 1
            name = f"{name_prefix}-{n}"
            while FeedbackModel.objects.filter(name=name).exists():
                n += 1
                name = f"{name_prefix}-{n}"
            try:
                with transaction.atomic():
                    model = FeedbackModel.objects.create(
                        name=name,
                        schema=schema,
                        class_names=list(class_names),
                        config=config,
                        metrics=metrics,
                        dataset_version=dataset_version,
                        job=job,
                        created_by=created_by,
                    )
                    install_staged(staging, name)
                    model.checkpoint = name
                    model.save(update_fields=["checkpoint"])
                return model
            except IntegrityError:
                if job is not None:
                    existing = FeedbackModel.objects.filter(job=job).first()
                    if existing is not None:
                        return existing
                if staging.exists():
                    continue  # the name was taken concurrently: try the next number
                raise
        raise ValidationError(f"Could not find a free model name for {name_prefix}.")


def promote_model(*, model: FeedbackModel) -> FeedbackModel:
    """Make `model` the active model of its schema, retiring the previous active one in the same
    transaction. The schema row lock serialises concurrent promotions."""
    with transaction.atomic():
        LabelSchema.objects.select_for_update().get(pk=model.schema_id)
        model = FeedbackModel.objects.select_for_update().get(pk=model.pk)
        if model.status == FeedbackModel.Status.ACTIVE:
            return model
        if not model.checkpoint:
            raise ValidationError(f"Model {model.name} has no checkpoint and cannot be promoted.")
        now = timezone.now()
        previous = list(
            FeedbackModel.objects.select_for_update()
            .filter(schema_id=model.schema_id, status=FeedbackModel.Status.ACTIVE)
            .exclude(pk=model.pk)
        )
        for old in previous:
            old.status = FeedbackModel.Status.RETIRED
            old.retired_at = now
            old.save(update_fields=["status", "retired_at"])
        model.status = FeedbackModel.Status.ACTIVE
        model.promoted_at = now
        model.save(update_fields=["status", "promoted_at"])
    # The queue order of "uncertainty" projects follows the active model.
    for project in Project.objects.filter(
        schema_id=model.schema_id, ordering=Project.Ordering.UNCERTAINTY, archived=False
    ):
        apply_uncertainty_priorities(project=project)
    return model


def retire_model(*, model: FeedbackModel) -> FeedbackModel:
    with transaction.atomic():
        model = FeedbackModel.objects.select_for_update().get(pk=model.pk)
        if model.status != FeedbackModel.Status.RETIRED:
            model.status = FeedbackModel.Status.RETIRED
            model.retired_at = timezone.now()
            model.save(update_fields=["status", "retired_at"])
    return model


def store_scores(*, model: FeedbackModel, creative_ids: Sequence[int], probs: np.ndarray) -> int:
    """Upsert one CreativeScore per creative in a single bulk statement."""
    probs = np.asarray(probs)
    if len(creative_ids) != len(probs):
        raise ValueError("creative_ids and probs differ in length")
    rows = []
    for creative_id, row in zip(creative_ids, probs, strict=True):
        verdict = summarize(row, model.class_names)
        rows.append(CreativeScore(creative_id=creative_id, model=model, **verdict))
    if not rows:
        return 0
    with transaction.atomic():
        CreativeScore.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["creative", "model"],
            update_fields=["probs", "p_available", "predicted_label", "confidence", "uncertainty"],
        )
    return len(rows)


def record_evaluation(
    *, model: FeedbackModel, dataset_version, split: str, metrics: dict, job=None
) -> Evaluation:
    with transaction.atomic():
        evaluation, _ = Evaluation.objects.update_or_create(
            model=model,
            dataset_version=dataset_version,
            split=split,
            defaults={"metrics": metrics, "job": job},
        )
    return evaluation


def apply_uncertainty_priorities(*, project: Project, config=None) -> int:
    """Queue order for `uncertainty` projects from the active model's CALIBRATED scores:
    feedback.ml.active.order_items mixes uncertainty with a random share, caps items per
    product per batch and keeps the audit slice out of uncertainty ordering; priority =
    position / n (lower is served first, < 1). Unscored items keep their priority (1.0 after
    set_project_ordering: behind the scored ones). Other orderings are left alone."""
    from annotation import services as annotation_services

    from .ml.active import ActiveConfig, order_items
    from .selectors import active_model

    if project.ordering != Project.Ordering.UNCERTAINTY:
        return 0
    model = active_model(schema=project.schema)
    if model is None:
        return 0
    scored = dict(
        CreativeScore.objects.filter(
            model=model, creative_id__in=Item.objects.filter(project=project).values("creative_id")
        ).values_list("creative_id", "uncertainty")
    )
    rows = [
        (item_id, creative_id, product_id)
        for item_id, creative_id, product_id in Item.objects.filter(project=project)
        .order_by("id")
        .values_list("id", "creative_id", "creative__product_id")
        if creative_id in scored
    ]
    if not rows:
        return 0
    if config is None:
        # settings.RFSTUDIO_ACTIVE_LEARNING: ActiveConfig fields (random_share, audit_share,
        # product_cap, batch); the seed is the project's, so one project's order is stable.
        options = dict(getattr(settings, "RFSTUDIO_ACTIVE_LEARNING", None) or {})
        config = ActiveConfig(**{"seed": project.pk, **options})
    positions = order_items(
        [r[0] for r in rows], [scored[r[1]] for r in rows], [r[2] for r in rows], config
    )
    n = len(positions)
    priorities = {item_id: round(pos / n, 9) for item_id, pos in positions.items()}
    annotation_services.set_item_priorities(project=project, priorities=priorities)
    return len(priorities)
