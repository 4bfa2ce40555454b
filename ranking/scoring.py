"""Evaluation against baselines and serving (previews, the live API) of a registered ranker."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from generation.models import Creative

from .data import (
    Agg,
    build_lists,
    catalogue,
    group_by_list,
    segment_features_by_slug,
    segment_vector,
)
from .ml.metrics import EvalList, evaluate_lists, random_baseline
from .ml.ranker import CreativeRanker, smoothed_ctr
from .ml.serving import CreativeStage
from .ml.training import score_lists
from .models import RankingModel
from .selectors import catalogue_version

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


# --- serving ---------------------------------------------------------------------------------
# A served catalogue per (ranker, device): the CreativeStage of every product with creatives,
# rebuilt when catalogue_version() changes or after STAGE_TTL_SECONDS (rows rewritten in place).
# Concurrency: built outside the lock (two requests may both build one; the last stored wins,
# both are correct), swapped in under it; a CreativeStage is read-only once built.
STAGE_TTL_SECONDS = 600.0
MAX_SERVED = 4  # rankers kept per process (two side by side on the preview page, and spares)
_SERVED: dict[tuple[str, str, str], ServedCatalogue] = {}


@dataclass
class ServedCatalogue:
    version: tuple
    built_at: float  # time.monotonic()
    stage: CreativeStage
    product_ids: np.ndarray  # (P,) product of each stage row
    sku: list[str]  # (P,)
    creative_ids: np.ndarray  # (P, L) creative of each column; -1 = padding
    row_of: dict[int, int]  # product id → stage row


def _build_served(ranker: CreativeRanker, encoder, version: tuple) -> ServedCatalogue | None:
    cids_by_product: dict[int, list[int]] = {}
    for cid, pid in Creative.objects.order_by("product_id", "id").values_list("id", "product_id"):
        cids_by_product.setdefault(pid, []).append(cid)
    if not cids_by_product:
        return None
    cat = catalogue([c for cs in cids_by_product.values() for c in cs], encoder)
    groups = {("", pid): cids for pid, cids in cids_by_product.items()}
    lists = build_lists(groups, cat, {}, ranker.config)
    counts = np.array([len(lst.creative_ids) for lst in lists], np.int64)
    width, n_in = int(counts.max()), lists[0].creatives.shape[1]
    creatives = np.zeros((len(lists), width, n_in), np.float32)
    creative_ids = np.full((len(lists), width), -1, np.int64)
    for i, lst in enumerate(lists):  # once per catalogue version, not per request
        creatives[i, : counts[i]] = lst.creatives
        creative_ids[i, : counts[i]] = lst.creative_ids
    stage = CreativeStage(ranker, np.stack([lst.product for lst in lists]), creatives, counts)
    product_ids = np.array(list(cids_by_product), np.int64)
    return ServedCatalogue(
        version=version,
        built_at=time.monotonic(),
        stage=stage,
        product_ids=product_ids,
        sku=[lst.key[1] for lst in lists],
        creative_ids=creative_ids,
        row_of={int(pid): i for i, pid in enumerate(product_ids)},
    )


def served_catalogue(model: RankingModel, device: str = "cpu") -> ServedCatalogue | None:
    """The ranker's precomputed creative stage over the current catalogue (None: no creatives)."""
    ranker = load_ranker(model, device)
    encoder = encoder_of(ranker.config)
    version = catalogue_version(encoder=encoder)
    key = (str(model.checkpoint_path), model.created_at.isoformat(), device)
    with _LOCK:
        hit = _SERVED.get(key)
    if (
        hit is not None
        and hit.version == version
        and time.monotonic() - hit.built_at < STAGE_TTL_SECONDS
    ):
        return hit
    built = _build_served(ranker, encoder, version)
    with _LOCK:
        _SERVED.pop(key, None)
        if built is not None:
            _SERVED[key] = built  # newest last: the oldest built goes first
            while len(_SERVED) > MAX_SERVED:
                _SERVED.pop(next(iter(_SERVED)))
    return built


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
    [{product_id, sku, p_ctr, creatives: [{creative_id, score, rank, contributions}]}].

    Scores come from the served catalogue (one batched forward for all the products); the
    Python below only shapes the answer."""
    served = served_catalogue(model, device)
    if served is None:
        return []
    rows = [served.row_of[p.pk] for p in products if p.pk in served.row_of]
    if not rows:
        return []
    config = served.stage.ranker.config
    seg = segment_vector(segment.features, config)
    ranked = served.stage.rank(seg, rows)
    contribs: list = []
    if explain:
        for i in range(0, len(rows), 256):
            contribs += served.stage.contributions(
                seg, rows[i : i + 256], config.creative_features, top=top
            )
    out = []
    for i, row in enumerate(rows):
        cids = served.creative_ids[row]
        order = ranked.order[i, : ranked.counts[i]]
        out.append(
            {
                "product_id": int(served.product_ids[row]),
                "sku": served.sku[row],
                "p_ctr": float(ranked.p_ctr[i]),
                "creatives": [
                    {
                        "creative_id": int(cids[j]),
                        "rank": r + 1,
                        "score": float(ranked.scores[i, j]),
                        "contributions": contribs[i][j] if contribs else [],
                    }
                    for r, j in enumerate(order.tolist())
                ],
            }
        )
    return out
