"""Reads for the generator evaluation pages: the next blind pair for a reviewer and the figures
of an evaluation, including what QA's A/B judgements say (human usable rate, preference)."""

from __future__ import annotations

from collections import Counter

from .rfft_models import ABJudgement, ABPair, EvaluationImage, GeneratorEvaluation


def evaluations():
    return GeneratorEvaluation.objects.order_by("-created_at", "-id")


def next_pair(*, evaluation: GeneratorEvaluation, reviewer) -> ABPair | None:
    """The first pair (in the evaluation's random order) this reviewer has not judged."""
    return (
        ABPair.objects.filter(evaluation=evaluation)
        .exclude(judgements__reviewer=reviewer)
        .select_related("model_image__creative", "baseline_image__creative", "model_image__product")
        .order_by("order", "id")
        .first()
    )


def pair_progress(*, evaluation: GeneratorEvaluation, reviewer) -> tuple[int, int]:
    total = ABPair.objects.filter(evaluation=evaluation).count()
    done = ABJudgement.objects.filter(pair__evaluation=evaluation, reviewer=reviewer).count()
    return done, total


def human_figures(*, evaluation: GeneratorEvaluation) -> dict:
    """Preference and human-judged usable rate per side, from every reviewer's verdicts."""
    rows = list(
        ABJudgement.objects.filter(pair__evaluation=evaluation).values_list(
            "preference", "model_label", "baseline_label"
        )
    )
    n = len(rows)
    prefs = Counter(r[0] for r in rows)
    return {
        "judgements": n,
        "prefer_model": prefs["model"] / n if n else None,
        "prefer_baseline": prefs["baseline"] / n if n else None,
        "same": prefs["same"] / n if n else None,
        "usable_model": sum(r[1] == "available" for r in rows) / n if n else None,
        "usable_baseline": sum(r[2] == "available" for r in rows) / n if n else None,
    }


def comparison_grid(*, evaluation: GeneratorEvaluation) -> list[dict]:
    """One row per (product, seed): the model's and the baseline's creative with both verdicts."""
    images = (
        EvaluationImage.objects.filter(evaluation=evaluation)
        .select_related("creative", "product")
        .order_by("prompt_index", "seed", "side")
    )
    cells: dict[tuple[int, int], dict] = {}
    for im in images:
        row = cells.setdefault((im.prompt_index, im.seed), {"product": im.product, "seed": im.seed})
        row[im.side] = im
    return list(cells.values())
