"""Evaluation against baselines and serving (previews, the live API) of a registered ranker."""

from __future__ import annotations

import threading

import numpy as np

from generation.models import Creative

from .data import (
    Agg,
    build_lists,
    catalogue,
    group_by_list,
    segment_features_by_slug,
)
from .ml.metrics import EvalList, evaluate_lists, random_baseline
from .ml.ranker import CreativeRanker, smoothed_ctr
from .ml.training import score_lists
from .models import RankingModel

_MODELS: dict[tuple[str, str, str], CreativeRanker] = {}
_LOCK = threading.Lock()


def load_ranker(model: RankingModel, device: str = "cpu") -> CreativeRanker:
    """Loaded once per process (checkpoints are immutable)."""
    # By folder and creation time, not id: ids are reused after a database reset.
    key = (str(model.checkpoint_path), model.created_at.isoformat(), device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = CreativeRanker.from_pretrained(model.checkpoint_path, device=device)
        return _MODELS[key]


def encoder_of(model_config) -> RankingModel | None:
    name = model_config.encoder
    if not name:
        return None
    return RankingModel.objects.filter(kind=RankingModel.Kind.ENCODER, name=name).first()


def past_ctr_scores(lists, past: Agg, alpha: float, beta: float) -> list[np.ndarray]:
    """The "highest past CTR" baseline: each creative's smoothed CTR for that segment in the
    training window (the prior mean when it was never shown)."""
    out = []
    for lst in lists:
        slug = lst.key[0]
        out.append(
            np.array(
                [
                    smoothed_ctr(
                        past.get((slug, c), (0, 0))[1], past.get((slug, c), (0, 0))[0], alpha, beta
                    )
                    for c in lst.creative_ids
                ]
            )
        )
    return out


def evaluate(
    ranker: CreativeRanker,
    test: Agg,
    past: Agg,
    *,
    seg_features: dict | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> dict:
    """Metrics of the ranker on `test` lists (with ≥ 2 creatives) and the same for the
    "random" and "highest past CTR" baselines under `baselines`."""
    config = ranker.config
    cat = catalogue({c for _, c in test}, encoder_of(config))
    seg_features = {**segment_features_by_slug({s for s, _ in test}), **(seg_features or {})}
    groups = {k: v for k, v in group_by_list(test, cat).items() if len(v) >= 2}
    lists = build_lists(groups, cat, seg_features, config, agg=test)
    if not lists:
        raise ValueError("No (segment, product) list with two or more creatives to evaluate on.")
    scores, _ = score_lists(ranker, lists, device=device)
    evals = [EvalList(lst.key, lst.impressions, lst.clicks) for lst in lists]
    metrics = evaluate_lists(evals, scores)
    past_scores = past_ctr_scores(lists, past, config.alpha, config.beta)
    metrics["baselines"] = {
        "random": random_baseline(evals, seed=seed),
        "highest_past_ctr": evaluate_lists(evals, past_scores),
    }
    # Lists with a creative never shown to the segment before the test window (new creatives):
    # where past CTR knows nothing about some of the candidates.
    cold = [
        i
        for i, lst in enumerate(lists)
        if any((lst.key[0], c) not in past for c in lst.creative_ids)
    ]
    if cold:
        sub = [evals[i] for i in cold]
        metrics["new_creatives"] = {
            "ranker": evaluate_lists(sub, [scores[i] for i in cold]),
            "random": random_baseline(sub, seed=seed),
            "highest_past_ctr": evaluate_lists(sub, [past_scores[i] for i in cold]),
        }
    return metrics


def rank_products(
    model: RankingModel,
    *,
    segment,
    products,
    device: str = "cpu",
    explain: bool = True,
    top: int = 3,
) -> list[dict]:
    """Every creative of each product in the ranker's order for `segment`:
    [{product_id, sku, p_ctr, creatives: [{creative_id, score, rank, contributions}]}]."""
    from .ml.training import collate

    ranker = load_ranker(model, device)
    config = ranker.config
    product_ids = [p.pk for p in products]
    cids_by_product: dict[int, list[int]] = {}
    for cid, pid in (
        Creative.objects.filter(product_id__in=product_ids)
        .order_by("id")
        .values_list("id", "product_id")
    ):
        cids_by_product.setdefault(pid, []).append(cid)
    all_ids = [c for cs in cids_by_product.values() for c in cs]
    if not all_ids:
        return []
    cat = catalogue(all_ids, encoder_of(config))
    groups = {(segment.slug, pid): cids for pid, cids in cids_by_product.items()}
    lists = build_lists(groups, cat, {segment.slug: segment.features}, config)
    scores, p_ctrs = score_lists(ranker, lists, device=device)
    contribs = []
    if explain:
        for i in range(0, len(lists), 256):
            chunk = lists[i : i + 256]
            contribs += ranker.contributions(
                collate(chunk, config, device), config.creative_features, top=top
            )
    out = []
    for i, (lst, s) in enumerate(zip(lists, scores, strict=True)):
        order = np.argsort(-s, kind="mergesort")
        pid = cat.product_of[lst.creative_ids[0]]
        out.append(
            {
                "product_id": pid,
                "sku": lst.key[1],
                "p_ctr": p_ctrs[i],
                "creatives": [
                    {
                        "creative_id": lst.creative_ids[j],
                        "rank": r + 1,
                        "score": float(s[j]),
                        "contributions": contribs[i][j] if contribs else [],
                    }
                    for r, j in enumerate(order)
                ],
            }
        )
    return out
