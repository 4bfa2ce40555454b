"""Offline ranking metrics on aggregated logs (numpy).

A *list* is one (segment, product) pair in the evaluation window: its creatives with their
impressions, clicks and the model's scores.

- AUC: impression-weighted ROC AUC — every click is a positive, every unclicked impression a
  negative, each carrying its creative's score (ties count ½).
- GAUC: AUC per list, averaged with the list's impressions as weight, over lists that have both
  clicks and unclicked impressions.
- NDCG@k: per list, gain = the creative's observed CTR (linear gain), discount 1/log2(rank + 1),
  divided by the ideal ordering's DCG; mean over lists with a non-zero ideal.
- NSCTR (AAAI 2024): the observed CTR of the model's top creative, averaged over lists weighted
  by the list's impressions (every creative of a list was shown, so each top creative has
  observed impressions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class EvalList:
    key: tuple  # (segment, product)
    impressions: np.ndarray  # (L,)
    clicks: np.ndarray  # (L,)


def weighted_auc(scores, positives, negatives) -> float | None:
    s = np.asarray(scores, np.float64)
    p = np.asarray(positives, np.float64)
    n = np.asarray(negatives, np.float64)
    total_p, total_n = p.sum(), n.sum()
    if total_p <= 0 or total_n <= 0:
        return None
    order = np.argsort(s, kind="mergesort")
    s, p, n = s[order], p[order], n[order]
    uniq, start = np.unique(s, return_index=True)
    p_u = np.add.reduceat(p, start)
    n_u = np.add.reduceat(n, start)
    below = np.concatenate([[0.0], np.cumsum(n_u)[:-1]])
    return float((p_u * (below + 0.5 * n_u)).sum() / (total_p * total_n))


def ndcg_at_k(scores, gains, k: int) -> float | None:
    scores = np.asarray(scores, np.float64)
    gains = np.asarray(gains, np.float64)
    k = min(k, len(gains))
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = (np.sort(gains)[::-1][:k] * discount).sum()
    if ideal <= 0:
        return None
    order = np.argsort(-scores, kind="mergesort")[:k]
    return float((gains[order] * discount).sum() / ideal)


def evaluate_lists(lists: Sequence[EvalList], scores: Sequence[np.ndarray]) -> dict:
    all_s, all_p, all_n = [], [], []
    gauc_num = gauc_den = 0.0
    ndcg = {1: [], 3: []}
    ns_num = ns_den = 0.0
    for lst, s in zip(lists, scores, strict=True):
        s = np.asarray(s, np.float64)
        imp = lst.impressions.astype(np.float64)
        clk = lst.clicks.astype(np.float64)
        all_s.append(s)
        all_p.append(clk)
        all_n.append(imp - clk)
        g = weighted_auc(s, clk, imp - clk)
        if g is not None:
            gauc_num += g * imp.sum()
            gauc_den += imp.sum()
        ctr = np.divide(clk, imp, out=np.zeros_like(clk), where=imp > 0)
        for k in ndcg:
            v = ndcg_at_k(s, ctr, k)
            if v is not None:
                ndcg[k].append(v)
        top = int(np.argmax(s))
        if imp[top] > 0:
            ns_num += imp.sum() * ctr[top]
            ns_den += imp.sum()
    auc = (
        weighted_auc(np.concatenate(all_s), np.concatenate(all_p), np.concatenate(all_n))
        if (all_s)
        else None
    )
    return {
        "auc": auc,
        "gauc": gauc_num / gauc_den if gauc_den else None,
        "ndcg@1": float(np.mean(ndcg[1])) if ndcg[1] else None,
        "ndcg@3": float(np.mean(ndcg[3])) if ndcg[3] else None,
        "nsctr": ns_num / ns_den if ns_den else None,
        "lists": len(lists),
        "impressions": int(sum(int(lst.impressions.sum()) for lst in lists)),
    }


def random_baseline(lists: Sequence[EvalList], *, draws: int = 20, seed: int = 0) -> dict:
    """Expected metrics of a uniformly random order (mean over `draws` random scorings)."""
    rng = np.random.default_rng(seed)
    runs = [
        evaluate_lists(lists, [rng.random(len(lst.clicks)) for lst in lists]) for _ in range(draws)
    ]
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    out["lists"], out["impressions"] = runs[0]["lists"], runs[0]["impressions"]
    return out
