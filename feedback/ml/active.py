"""Active-learning queue order (plain numpy, no Django; the bench simulates with the same code).

Pure uncertainty sampling is biased: it serves near-duplicates of one confusing product, never
revisits what the model is confidently wrong about, and the labels it collects are no unbiased
test set. The order built here therefore mixes:

- uncertainty: normalised entropy of the CALIBRATED class probabilities, highest first;
- a random share (default 20%): each slot is, with that probability, the next item of an
  independent random permutation (covers confident mistakes, keeps the label set representative);
- a per-product cap per batch: at most `product_cap` items of one product in every `batch` of
  consecutive slots (the overflow moves to later batches);
- an audit slice: a fixed, hash-chosen share of items (default 5%) kept OUT of uncertainty
  ordering; they are served in random order among the random share, so their labels are an
  unbiased sample of the queue (the held-out evaluation set of active learning).

`order_items` returns positions; the queue priority is position / n (lower is served first).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RANDOM_SHARE = 0.2
AUDIT_SHARE = 0.05
PRODUCT_CAP = 3
BATCH = 50


@dataclass(frozen=True)
class ActiveConfig:
    random_share: float = RANDOM_SHARE  # share of slots served from a random permutation
    audit_share: float = AUDIT_SHARE  # share of items in the audit slice (random order only)
    product_cap: int | None = PRODUCT_CAP  # max items of one product per batch (None: no cap)
    batch: int = BATCH  # slots per batch for the cap
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_share <= 1.0 or not 0.0 <= self.audit_share <= 1.0:
            raise ValueError("random_share and audit_share must be between 0 and 1")
        if self.product_cap is not None and self.product_cap < 1:
            raise ValueError("product_cap must be >= 1 (or None)")
        if self.batch < 1:
            raise ValueError("batch must be >= 1")


def entropy_uncertainty(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy in [0, 1] per row of (calibrated) probabilities [N, C]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    p = p / p.sum(1, keepdims=True)
    c = p.shape[1]
    return (-(p * np.log(p)).sum(1) / np.log(c)) if c > 1 else np.zeros(len(p))


def in_audit(item_id: int, share: float, seed: int = 0) -> bool:
    """Stable audit-slice membership from a hash of the item id (no stored state needed)."""
    if share <= 0:
        return False
    h = hashlib.sha256(f"audit:{seed}:{int(item_id)}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < share


def order_items(
    item_ids: Sequence[int],
    uncertainty: Sequence[float],
    products: Sequence[int | str] | None = None,
    config: ActiveConfig | None = None,
) -> dict[int, int]:
    """{item id: queue position (0 first)} for the mixed order described in the module doc."""
    cfg = config or ActiveConfig()
    ids = [int(i) for i in item_ids]
    n = len(ids)
    if n == 0:
        return {}
    unc = np.asarray(uncertainty, dtype=np.float64)
    prod = list(products) if products is not None else ids
    rng = np.random.default_rng(cfg.seed)
    audit = {i for i in ids if in_audit(i, cfg.audit_share, cfg.seed)}
    # Uncertainty list: highest first, ties by id; audit items never enter it.
    by_unc = [ids[k] for k in sorted(range(n), key=lambda k: (-unc[k], ids[k]))]
    by_unc = [i for i in by_unc if i not in audit]
    randomised = [ids[k] for k in rng.permutation(n)]
    draws = rng.random(n)
    used: set[int] = set()
    merged: list[int] = []
    iu = ir = 0
    for slot in range(n):
        want_random = draws[slot] < cfg.random_share or iu >= len(by_unc)
        src, pos = (randomised, ir) if want_random else (by_unc, iu)
        while pos < len(src) and src[pos] in used:
            pos += 1
        if pos >= len(src):  # that source is exhausted: take from the other
            want_random = not want_random
            src, pos = (randomised, ir) if want_random else (by_unc, iu)
            while pos < len(src) and src[pos] in used:
                pos += 1
        item = src[pos]
        used.add(item)
        merged.append(item)
        if want_random:
            ir = pos + 1
        else:
            iu = pos + 1
    if cfg.product_cap is not None:
        merged = _cap_per_batch(merged, dict(zip(ids, prod, strict=True)), cfg)
    return {item: k for k, item in enumerate(merged)}


def _cap_per_batch(order: list[int], product_of: dict[int, int | str], cfg: ActiveConfig):
    """Stable re-packing so no batch of `cfg.batch` slots holds more than `cfg.product_cap`
    items of one product; overflow waits (in order) for the next batch with room."""
    out: list[int] = []
    waiting = list(order)
    while waiting:
        count: dict = defaultdict(int)
        batch, rest = [], []
        for item in waiting:
            p = product_of[item]
            if len(batch) < cfg.batch and count[p] < cfg.product_cap:
                batch.append(item)
                count[p] += 1
            else:
                rest.append(item)
        if not batch:  # cannot happen (cap >= 1), guard against an endless loop
            batch, rest = rest[: cfg.batch], rest[cfg.batch :]
        out.extend(batch)
        waiting = rest
    return out
