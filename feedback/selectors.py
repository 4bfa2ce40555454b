"""Reads of the feedback app."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import F, FilteredRelation, Q, prefetch_related_objects
from django.db.models.functions import Coalesce

from annotation.models import Annotation, DatasetVersion, Item, Project
from core import limits

from .models import CreativeScore, Evaluation, FeedbackModel

DISAGREEMENTS_PAGE = 50


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


@dataclass(frozen=True)
class DisagreementCursor:
    """Where a page of disagreements ends: `?after=<confidence>:<item id>` (keyset paging). The
    confidence is written with repr(), which round-trips a float exactly, so the next page's
    `WHERE` compares equal to the stored value."""

    confidence: float
    item_id: int

    def __str__(self) -> str:
        return f"{self.confidence!r}:{self.item_id}"

    @classmethod
    def parse(cls, value: str) -> DisagreementCursor:
        """Raises ValueError with a message a person can act on."""
        confidence, sep, item_id = (value or "").strip().partition(":")
        try:
            if not sep:
                raise ValueError
            parsed = cls(float(confidence), int(item_id))
        except ValueError:
            raise ValueError(
                "`after` must be <confidence>:<item id>, e.g. 0.93:1234; "
                f"got {(value or '')[:40]!r}."
            ) from None
        if not 0.0 <= parsed.confidence <= 1.0:  # also rejects nan
            raise ValueError("`after`: the confidence must be between 0 and 1.")
        if not 1 <= parsed.item_id <= limits.MAX_ID:
            raise ValueError("`after`: the item id must be a positive id.")
        return parsed


@dataclass
class DisagreementPage:
    rows: list[dict]
    after: DisagreementCursor | None  # where this page starts (None: the first page)
    next_after: DisagreementCursor | None  # the cursor of the next page, None on the last


def disagreements_queryset(*, project: Project, model: FeedbackModel):
    """Items whose human label (adjudicated, else consensus) differs from `model`'s prediction,
    most confident disagreements first (ties by item id), computed in SQL (one join to the
    model's scores; pages of a million-item project never load the other rows). The order is the
    stored `CreativeScore.confidence`, so PostgreSQL can walk `creativescore_conf_idx` and stop
    after a page instead of sorting every disagreement. Rows carry `human`, `predicted`,
    `confidence` and the score's `probs`; the page's creatives are loaded by
    `disagreement_rows`."""
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
        .annotate(confidence=F("score__confidence"), probs=F("score__probs"))
        .only("id", "creative_id")
        .order_by("-confidence", "id")
    )


def disagreements_page(
    *,
    project: Project,
    model: FeedbackModel,
    after: DisagreementCursor | None = None,
    limit: int = DISAGREEMENTS_PAGE,
) -> DisagreementPage:
    """One page of `disagreements_queryset` after `after` (keyset: a deep page starts at its
    cursor, where OFFSET re-read every row before it). Two queries: the page (one row more than
    `limit`, to know whether there is a next one; no COUNT) and its creatives."""
    queryset = disagreements_queryset(project=project, model=model)
    if after is not None:
        # (confidence, id) after the cursor in (desc, asc) order. The redundant `lte` is the
        # index range; the OR alone would be a filter over every row.
        tie = Q(confidence=after.confidence, pk__gt=after.item_id)
        queryset = queryset.filter(
            Q(confidence__lte=after.confidence), Q(confidence__lt=after.confidence) | tie
        )
    found = list(queryset[: limit + 1])
    rows = disagreement_rows(found[:limit])
    next_after = None
    if len(found) > limit:
        last = rows[-1]
        next_after = DisagreementCursor(last["confidence"], last["item"].pk)
    return DisagreementPage(rows=rows, after=after, next_after=next_after)


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
