"""Reads of the feedback app."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Q

from annotation.models import Annotation, DatasetVersion, Item, Project

from .models import CreativeScore, Evaluation, FeedbackModel


class ModelNotFound(ObjectDoesNotExist):
    pass


def active_model(*, schema) -> FeedbackModel | None:
    return FeedbackModel.objects.filter(schema=schema, status=FeedbackModel.Status.ACTIVE).first()


def resolve_model(name: str | None, *, schema=None) -> FeedbackModel:
    """A model by name, or "latest" (newest with a checkpoint) / "active" (the active one; with
    several schemas, pass `schema`). Raises ModelNotFound with a readable message."""
    name = (name or "active").strip()
    usable = FeedbackModel.objects.exclude(checkpoint="")
    if schema is not None:
        usable = usable.filter(schema=schema)
    if name == "latest":
        model = usable.order_by("-created_at", "-id").first()
        if model is None:
            raise ModelNotFound("No trained RFNet model is registered yet.")
        return model
    if name == "active":
        actives = list(usable.filter(status=FeedbackModel.Status.ACTIVE)[:2])
        if not actives:
            raise ModelNotFound(
                "No RFNet model is active. Promote one (admin or API) or name a model."
            )
        if len(actives) > 1:
            raise ModelNotFound("Several schemas have an active model; name the model.")
        return actives[0]
    model = FeedbackModel.objects.filter(name=name).first()
    if model is None:
        raise ModelNotFound(f"No RFNet model named {name!r}.")
    if not model.checkpoint:
        raise ModelNotFound(f"Model {name!r} has no checkpoint.")
    return model


def resolve_dataset(name: str) -> DatasetVersion:
    version = DatasetVersion.objects.select_related("project__schema").filter(name=name).first()
    if version is None:
        raise DatasetVersion.DoesNotExist(f"No dataset version named {name!r}.")
    return version


def p_available_by_creative(
    *, creative_ids, model: FeedbackModel | None = None
) -> dict[int, float]:
    """The stored calibrated P(available) per creative (contract 1 of CONTRACTS.md).

    `model` defaults to the active model (of the only schema with one); creatives the model has
    not scored are absent from the result. The stored value is column `available` of the
    calibrated probabilities (feedback.ml.calibration.apply_calibration), written by
    services.store_scores."""
    if model is None:
        model = resolve_model("active")
    ids = list(creative_ids)
    rows = CreativeScore.objects.filter(model=model, creative_id__in=ids).values_list(
        "creative_id", "p_available"
    )
    return {creative_id: float(p) for creative_id, p in rows}


def model_list():
    return FeedbackModel.objects.select_related("schema", "dataset_version", "job")


def scores_for_creative(*, creative_id: int):
    return (
        CreativeScore.objects.filter(creative_id=creative_id)
        .select_related("model")
        .order_by("-model__status", "-model__created_at")
    )


def evaluations_for(*, model: FeedbackModel):
    return Evaluation.objects.filter(model=model).select_related("dataset_version")


def human_labels(item: Item) -> str | None:
    label = item.adjudicated_label or item.consensus_label
    return label.slug if label else None


def verdict_for_item(item: Item) -> dict | None:
    """RFNet's verdict on the item's creative by the active model of the project's schema,
    beside the human label. None when there is no active model or no score yet."""
    model = active_model(schema=item.project.schema)
    if model is None:
        return None
    score = CreativeScore.objects.filter(model=model, creative_id=item.creative_id).first()
    if score is None:
        return {"model": model, "score": None}
    human = human_labels(item)
    probs = sorted(score.probs.items(), key=lambda kv: kv[1], reverse=True)
    return {
        "model": model,
        "score": score,
        "probs": probs,
        "confidence": dict(score.probs).get(score.predicted_label, 0.0),
        "human": human,
        "agrees": None if human is None else human == score.predicted_label,
    }


def disagreements(*, project: Project, limit: int = 200) -> list[dict]:
    """Items whose human label (adjudicated, else consensus) differs from the active model's
    prediction, most confident disagreements first."""
    model = active_model(schema=project.schema)
    if model is None:
        return []
    items = (
        Item.objects.filter(project=project)
        .filter(Q(adjudicated_label__isnull=False) | Q(consensus_label__isnull=False))
        .select_related("creative", "consensus_label", "adjudicated_label")
    )
    scores = {
        s.creative_id: s
        for s in CreativeScore.objects.filter(
            model=model, creative_id__in=items.values("creative_id")
        )
    }
    rows = []
    for item in items:
        score = scores.get(item.creative_id)
        human = human_labels(item)
        if score is None or human is None or human == score.predicted_label:
            continue
        confidence = float(score.probs.get(score.predicted_label, 0.0))
        rows.append(
            {
                "item": item,
                "score": score,
                "human": human,
                "predicted": score.predicted_label,
                "confidence": confidence,
                "p_human": float(score.probs.get(human, 0.0)),
            }
        )
    rows.sort(key=lambda r: (-r["confidence"], r["item"].pk))
    return rows[:limit]


def votes_by_item(item_ids) -> dict[int, list[str]]:
    """Live (non-discarded) human votes per item, as slugs."""
    votes: dict[int, list[str]] = {}
    rows = Annotation.objects.filter(item_id__in=item_ids, discarded_at__isnull=True).values_list(
        "item_id", "label__slug"
    )
    for item_id, slug in rows:
        votes.setdefault(item_id, []).append(slug)
    return votes


def training_history(model: FeedbackModel) -> dict[str, list[tuple[float, float]]]:
    """Training curves: per metric name, (step, value) points. From the job's recorded metrics
    when the jobs app keeps them, else from the history stored with the model."""
    series: dict[str, list[tuple[float, float]]] = {}
    job = model.job
    if job is not None:
        series = _job_series(job)
    if not series:
        for i, epoch in enumerate(model.metrics.get("history", []) or []):
            step = epoch.get("epoch", i + 1)
            for key, value in epoch.items():
                if key != "epoch" and isinstance(value, int | float):
                    series.setdefault(key, []).append((float(step), float(value)))
    return series


def _job_series(job) -> dict[str, list[tuple[float, float]]]:
    from jobs.models import JobMetric

    series: dict[str, list[tuple[float, float]]] = {}
    for name, step, value in JobMetric.objects.filter(job=job).values_list("name", "step", "value"):
        series.setdefault(name, []).append((float(step), float(value)))
    return series
