"""RFNet's verdicts as ranking inputs: the one place ranking reads P(available)."""

from __future__ import annotations

from collections.abc import Iterable

from feedback.models import CreativeScore, FeedbackModel


def scoring_model() -> FeedbackModel | None:
    """The active RFNet model, else the newest one that has scores."""
    active = FeedbackModel.objects.filter(status=FeedbackModel.Status.ACTIVE).first()
    if active is not None:
        return active
    return FeedbackModel.objects.filter(scores__isnull=False).order_by("-created_at").first()


def rfnet_p_available(*, creative_ids: Iterable[int], model=None) -> dict[int, dict]:
    """{creative_id: {"p_available", "probs", "label", "model"}} from stored scores.

    `p_available` and `probs` are the calibrated values feedback.services.store_scores writes
    (the same P(available) as feedback.selectors.p_available_by_creative)."""
    model = model or scoring_model()
    if model is None:
        return {}
    rows = CreativeScore.objects.filter(
        model=model, creative_id__in=list(creative_ids)
    ).values_list("creative_id", "p_available", "probs", "predicted_label")
    return {
        cid: {"p_available": p, "probs": probs or {}, "label": label, "model": model.name}
        for cid, p, probs, label in rows
    }


def scores_version(model=None) -> tuple:
    """What changes when RFNet's stored verdicts do (serving caches key on it): the scoring
    model and (count, max id) of its scores."""
    from django.db.models import Count, Max

    model = model or scoring_model()
    if model is None:
        return (None,)
    agg = CreativeScore.objects.filter(model=model).aggregate(n=Count("id"), m=Max("id"))
    return (model.pk, agg["n"], agg["m"])
