"""Reads of the feedback app."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import F, FilteredRelation, FloatField, Func, Q, prefetch_related_objects
from django.db.models.functions import Coalesce

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


class _JSONFloat(Func):
    """`json_column[key_expression]` as a float, the key being another column's value (Django's
    key transforms take constant keys only). NULL when the key is absent."""

    output_field = FloatField()
    arity = 2

    def as_postgresql(self, compiler, connection, **extra):
        (data, data_params), (key, key_params) = (
            compiler.compile(e) for e in self.get_source_expressions()
        )
        return f"(({data}) ->> ({key}))::double precision", (*data_params, *key_params)

    def as_sqlite(self, compiler, connection, **extra):
        (data, data_params), (key, key_params) = (
            compiler.compile(e) for e in self.get_source_expressions()
        )
        # Quoted member name: slugs may contain '-'.
        sql = f"CAST(json_extract({data}, '$.\"' || ({key}) || '\"') AS REAL)"
        return sql, (*data_params, *key_params)


def disagreements_queryset(*, project: Project, model: FeedbackModel):
    """Items whose human label (adjudicated, else consensus) differs from `model`'s prediction,
    most confident disagreements first, computed in SQL (one join to the model's scores; pages
    of a million-item project never load the other rows). Rows carry `human`, `predicted`,
    `confidence` (the model's probability for its prediction) and the score's `probs`; the
    page's creatives are loaded by `disagreement_rows`, so the sort handles narrow rows."""
    return (
        Item.objects.filter(project=project)
        .annotate(
            score=FilteredRelation(
                "creative__rfnet_scores", condition=Q(creative__rfnet_scores__model=model)
            ),
            human=Coalesce("adjudicated_label__slug", "consensus_label__slug"),
            predicted=F("score__predicted_label"),
        )
        .filter(human__isnull=False, predicted__isnull=False)
        .filter(~Q(predicted=F("human")))
        .annotate(
            confidence=Coalesce(_JSONFloat(F("score__probs"), F("predicted")), 0.0),
            probs=F("score__probs"),
        )
        .only("id", "creative_id")
        .order_by("-confidence", "id")
    )


def disagreements(
    *, project: Project, limit: int = 50, offset: int = 0, model: FeedbackModel | None = None
) -> list[dict]:
    """One page of `disagreements_queryset` for the active model (empty without one)."""
    model = model or active_model(schema=project.schema)
    if model is None:
        return []
    return disagreement_rows(
        disagreements_queryset(project=project, model=model)[offset : offset + limit]
    )


def disagreement_rows(items) -> list[dict]:
    """Template rows for one page of `disagreements_queryset` (one more query: its creatives)."""
    items = list(items)
    prefetch_related_objects(items, "creative")
    return [
        {
            "item": item,
            "human": item.human,
            "predicted": item.predicted,
            "confidence": float(item.confidence),
            "p_human": float((item.probs or {}).get(item.human, 0.0)),
        }
        for item in items
    ]


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
