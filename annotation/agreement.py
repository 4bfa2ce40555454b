"""Inter-annotator agreement: consensus rule, Fleiss' kappa, Krippendorff's alpha, and the
per-project/per-annotator statistics of the dashboard, computed from aggregate queries."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

# The consensus rule lives with the rest of an item's state (re-exported for callers here).
from annotation.item_state import consensus_of  # noqa: F401

# --- coefficients ---------------------------------------------------------------------------------


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa of an (items × categories) matrix of rating counts.

    Items may have different numbers of ratings (each item's observed agreement uses its own n);
    items with fewer than two ratings carry no agreement information and are ignored.
    With equal n per item this is exactly Fleiss (1971). Returns nan when undefined.
    """
    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        return math.nan
    n = m.sum(axis=1)
    m, n = m[n >= 2], n[n >= 2]
    if len(m) == 0:
        return math.nan
    p_item = ((m * (m - 1)).sum(axis=1)) / (n * (n - 1))
    p_bar = p_item.mean()
    p_cat = m.sum(axis=0) / m.sum()
    p_e = float((p_cat**2).sum())
    if math.isclose(p_e, 1.0):
        return math.nan  # everyone used one category: agreement is undefined
    return float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha(counts) -> float:
    """Nominal Krippendorff's alpha of an (items × categories) matrix of rating counts."""
    import krippendorff

    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        return math.nan
    m = m[m.sum(axis=1) >= 2]
    if len(m) == 0 or np.count_nonzero(m.sum(axis=0)) < 2:
        return math.nan
    return float(krippendorff.alpha(value_counts=m, level_of_measurement="nominal"))


def binarize(counts, column: int) -> np.ndarray:
    """Class `column` against the rest: an (items × 2) count matrix for per-class coefficients."""
    m = np.asarray(counts, dtype=np.float64)
    yes = m[:, column]
    return np.stack([yes, m.sum(axis=1) - yes], axis=1)


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def coefficients(counts, class_slugs: list[str]) -> dict:
    """alpha and kappa overall and per class (one-vs-rest), JSON-ready (nan → None)."""
    m = np.asarray(counts, dtype=np.float64).reshape(-1, len(class_slugs))
    multi = m[m.sum(axis=1) >= 2]
    out = {
        "items_with_2plus_votes": int(len(multi)),
        "krippendorff_alpha": _clean(krippendorff_alpha(multi)),
        "fleiss_kappa": _clean(fleiss_kappa(multi)),
        "per_class": {},
    }
    for j, slug in enumerate(class_slugs):
        b = binarize(multi, j) if len(multi) else np.zeros((0, 2))
        out["per_class"][slug] = {
            "krippendorff_alpha": _clean(krippendorff_alpha(b)),
            "fleiss_kappa": _clean(fleiss_kappa(b)),
        }
    return out


# --- project statistics (Django) -----------------------------------------------------------------


def vote_matrix(rows: Iterable[tuple[int, int, int]], class_ids: list[int]) -> np.ndarray:
    """(item_id, label_id, n) rows → items × classes count matrix (order of class_ids)."""
    col = {cid: j for j, cid in enumerate(class_ids)}
    per_item: dict[int, np.ndarray] = {}
    for item_id, label_id, n in rows:
        vec = per_item.get(item_id)
        if vec is None:
            vec = per_item[item_id] = np.zeros(len(class_ids))
        if label_id in col:
            vec[col[label_id]] += n
    if not per_item:
        return np.zeros((0, len(class_ids)))
    return np.stack(list(per_item.values()))


def project_agreement(*, project) -> dict:
    """Krippendorff's alpha and Fleiss' kappa for the project, overall and per class."""
    from django.db.models import Count

    from annotation.models import Annotation

    classes = list(project.schema.classes.values_list("id", "slug"))
    rows = (
        Annotation.objects.filter(item__project=project, discarded_at__isnull=True)
        .values_list("item_id", "label_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    m = vote_matrix(rows.iterator(chunk_size=10000), [c for c, _ in classes])
    return coefficients(m, [s for _, s in classes])


def annotator_stats(*, project) -> list[dict]:
    """Per annotator: labels, gold accuracy, agreement with consensus, labels/hour."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count, F, Max, Min, Q, Sum

    from annotation.models import Annotation

    live = Annotation.objects.filter(item__project=project, discarded_at__isnull=True)
    rows = (
        live.values("annotator_id")
        .annotate(
            labels=Count("id"),
            gold_total=Count("id", filter=Q(item__is_gold=True)),
            gold_correct=Count(
                "id", filter=Q(item__is_gold=True, label_id=F("item__gold_label_id"))
            ),
            cons_total=Count("id", filter=Q(item__consensus_label__isnull=False)),
            cons_agree=Count("id", filter=Q(label_id=F("item__consensus_label_id"))),
            duration=Sum("duration_ms"),
            first=Min("created_at"),
            last=Max("created_at"),
        )
        .order_by("-labels")
    )
    rows = list(rows)
    names = dict(
        get_user_model()
        .objects.filter(id__in=[r["annotator_id"] for r in rows])
        .values_list("id", "username")
    )
    out = []
    for r in rows:
        hours = (r["duration"] or 0) / 3_600_000
        if hours <= 0 and r["first"] and r["last"]:
            hours = (r["last"] - r["first"]).total_seconds() / 3600
        out.append(
            {
                "annotator_id": r["annotator_id"],
                "username": names.get(r["annotator_id"], "?"),
                "labels": r["labels"],
                "gold_total": r["gold_total"],
                "gold_accuracy": (r["gold_correct"] / r["gold_total"] if r["gold_total"] else None),
                "consensus_total": r["cons_total"],
                "consensus_agreement": (
                    r["cons_agree"] / r["cons_total"] if r["cons_total"] else None
                ),
                "labels_per_hour": (r["labels"] / hours) if hours > 0 else None,
            }
        )
    return out


def confusion_with_consensus(*, project) -> dict:
    """Annotator label (rows) × item consensus label (columns) counts, in schema order."""
    from django.db.models import Count

    from annotation.models import Annotation

    classes = list(project.schema.classes.values_list("id", "slug"))
    index = {cid: j for j, (cid, _) in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    rows = (
        Annotation.objects.filter(
            item__project=project, discarded_at__isnull=True, item__consensus_label__isnull=False
        )
        .values_list("label_id", "item__consensus_label_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    for label_id, cons_id, n in rows:
        if label_id in index and cons_id in index:
            matrix[index[label_id]][index[cons_id]] += n
    return {"classes": [s for _, s in classes], "matrix": matrix}


def label_distribution(*, project) -> dict[str, dict[str, int]]:
    """Per class: consensus counts of items and raw annotation counts."""
    from django.db.models import Count

    from annotation.models import Annotation, Item

    classes = list(project.schema.classes.values_list("id", "slug"))
    consensus = dict(
        Item.objects.filter(project=project, consensus_label__isnull=False)
        .values_list("consensus_label_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    votes = dict(
        Annotation.objects.filter(item__project=project, discarded_at__isnull=True)
        .values_list("label_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for cid, slug in classes:
        out[slug] = {"consensus": consensus.get(cid, 0), "votes": votes.get(cid, 0)}
    return dict(out)
