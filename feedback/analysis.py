"""Numbers about predictions and votes: score summaries, calibration bins, agreement between
humans and between RFNet and humans. Plain numpy, no Django (the callers fetch the rows)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def summarize(probs: Sequence[float], class_names: Sequence[str], available="available") -> dict:
    """One creative's verdict from its class probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    p = np.clip(p, 0.0, 1.0)
    total = float(p.sum()) or 1.0
    p = p / total
    k = int(p.argmax())
    nonzero = p[p > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum())
    uncertainty = entropy / math.log(len(p)) if len(p) > 1 else 0.0
    probs_by_slug = {slug: round(float(v), 6) for slug, v in zip(class_names, p, strict=True)}
    return {
        "probs": probs_by_slug,
        "p_available": probs_by_slug.get(available, 0.0),
        "predicted_label": class_names[k],
        # Exactly the stored probs entry (rounded alike): pages compare the two.
        "confidence": probs_by_slug[class_names[k]],
        "uncertainty": round(min(max(uncertainty, 0.0), 1.0), 6),
    }


def calibration_bins(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Reliability diagram data: per confidence bin, mean confidence, accuracy and count."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return []
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    bins = []
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for i in range(n_bins):
        lo, hi = edges[i], edges[i + 1]
        mask = (conf > lo) & (conf <= hi) if i else (conf >= lo) & (conf <= hi)
        n = int(mask.sum())
        bins.append(
            {
                "lo": round(float(lo), 3),
                "hi": round(float(hi), 3),
                "count": n,
                "confidence": round(float(conf[mask].mean()), 4) if n else None,
                "accuracy": round(float(correct[mask].mean()), 4) if n else None,
            }
        )
    return bins


def _pairwise(votes: Sequence[str]) -> float | None:
    n = len(votes)
    if n < 2:
        return None
    agreeing = sum(c * (c - 1) for c in Counter(votes).values())
    return agreeing / (n * (n - 1))


def fleiss_kappa(vote_lists: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa generalised to a varying number of raters per item (items with < 2 votes
    are ignored)."""
    items = [v for v in vote_lists if len(v) >= 2]
    if not items:
        return None
    p_bar = float(np.mean([_pairwise(v) for v in items]))
    counts: Counter = Counter()
    total = 0
    for v in items:
        counts.update(v)
        total += len(v)
    p_e = sum((c / total) ** 2 for c in counts.values())
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else 0.0
    return (p_bar - p_e) / (1.0 - p_e)


def agreement_report(vote_lists: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict:
    """Human-vs-human agreement beside RFNet-vs-human agreement on the same items: those with at
    least two human votes. Pairwise agreement is the chance that two raters picked the same
    class; for RFNet it is the share of human votes that match its prediction."""
    pairs = [(v, p) for v, p in zip(vote_lists, predictions, strict=True) if len(v) >= 2]
    if not pairs:
        return {"items": 0}
    human = [_pairwise(v) for v, _ in pairs]
    rfnet = [sum(1 for x in v if x == p) / len(v) for v, p in pairs]
    majority = []
    for v, p in pairs:
        top = Counter(v).most_common()
        if len(top) == 1 or top[0][1] > top[1][1]:
            majority.append(float(top[0][0] == p))
    return {
        "items": len(pairs),
        "human_human_pairwise": round(float(np.mean(human)), 4),
        "rfnet_human_pairwise": round(float(np.mean(rfnet)), 4),
        "human_fleiss_kappa": _round(fleiss_kappa([v for v, _ in pairs])),
        # RFNet counted as one more rater.
        "with_rfnet_fleiss_kappa": _round(fleiss_kappa([[*v, p] for v, p in pairs])),
        "rfnet_vs_majority": round(float(np.mean(majority)), 4) if majority else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
