"""Ranker training on (segment, product) lists (no Django: the caller builds `ListData`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .config import RankerConfig
from .ranker import Batch, CreativeRanker


@dataclass
class ListData:
    key: tuple  # (segment slug, product sku)
    segment: np.ndarray  # (S,)
    product: np.ndarray  # (P,)
    creatives: np.ndarray  # (L, C) creative features ⊕ embedding, in config order
    creative_ids: list = field(default_factory=list)
    impressions: np.ndarray | None = None  # (L,)
    clicks: np.ndarray | None = None  # (L,)


def fit_norms(lists: list[ListData]) -> dict:
    """Mean/std of each input vector over the training lists (std 1 where constant)."""

    def stats(rows):
        x = np.stack(rows).astype(np.float64) if rows else np.zeros((1, 0))
        std = x.std(0)
        return {"mean": x.mean(0).tolist(), "std": np.where(std > 1e-8, std, 1.0).tolist()}

    return {
        "segment": stats([lst.segment for lst in lists]),
        "product": stats([lst.product for lst in lists]),
        "creative": stats([row for lst in lists for row in lst.creatives]),
    }


def _norm(x: np.ndarray, n: dict) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if not n or not len(n["mean"]):
        return x
    # float32 throughout (float64 norms would promote the whole batch).
    x = x - np.asarray(n["mean"], np.float32)
    x *= np.float32(1.0) / np.asarray(n["std"], np.float32)
    return x


def collate(lists: list[ListData], config: RankerConfig, device: str = "cpu") -> Batch:
    """Pad the lists into one Batch, inputs standardised with the config's norms (one vectorised
    pass over all creatives: this is on the serving path)."""
    norms = config.norms
    b = len(lists)
    lens = np.fromiter((len(lst.creatives) for lst in lists), np.int64, count=b)
    L = int(lens.max())
    rows = _norm(np.concatenate([lst.creatives for lst in lists]), norms.get("creative"))
    if (lens == L).all():
        crea = rows.reshape(b, L, -1)
        mask = np.ones((b, L), np.float32)
    else:
        crea = np.zeros((b, L, rows.shape[1]), np.float32)
        list_idx = np.repeat(np.arange(b), lens)
        pos = np.arange(len(rows)) - np.repeat(np.cumsum(lens) - lens, lens)
        crea[list_idx, pos] = rows
        mask = (np.arange(L)[None] < lens[:, None]).astype(np.float32)
    imp = np.zeros((b, L), np.float32)
    clk = np.zeros((b, L), np.float32)
    for i, lst in enumerate(lists):
        if lst.impressions is not None:
            imp[i, : lens[i]] = lst.impressions
            clk[i, : lens[i]] = lst.clicks
    seg = _norm(np.stack([lst.segment for lst in lists]), norms.get("segment"))
    prod = _norm(np.stack([lst.product for lst in lists]), norms.get("product"))

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(device)

    return Batch(t(seg), t(prod), t(crea), t(mask), t(imp), t(clk))


def train_ranker(
    train: list[ListData],
    config: RankerConfig,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str = "cpu",
    reporter=None,
    val: list[ListData] | None = None,
) -> tuple[CreativeRanker, list[dict]]:
    if not train:
        raise ValueError("No training lists (no impression logs in the training window).")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config.norms = fit_norms(train)
    model = CreativeRanker(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, -(-len(train) // batch_size))
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    history, step = [], 0
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order), batch_size):
            batch = collate([train[j] for j in order[i : i + batch_size]], config, device)
            loss, parts = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if reporter is not None:
                reporter.progress(step, total, phase=f"epoch {epoch + 1}/{epochs}")
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
        if val:
            with torch.no_grad():
                model.eval()
                row["val_loss"] = float(model.loss(collate(val, config, device))[0])
        history.append(row)
        if reporter is not None:
            for key, value in row.items():
                if key != "epoch":
                    reporter.metric(key, value, step=epoch + 1)
    return model.eval(), history


def score_lists(
    model: CreativeRanker, lists: list[ListData], *, batch_size: int = 256, device: str = "cpu"
) -> tuple[list[np.ndarray], list[float]]:
    """Per list, the creative scores (in list order) and the stage-one pCTR."""
    scores, p_ctrs = [], []
    for i in range(0, len(lists), batch_size):
        chunk = lists[i : i + batch_size]
        s, p = model.score(collate(chunk, model.config, device))
        for j, lst in enumerate(chunk):
            scores.append(s[j, : len(lst.creatives)])
            p_ctrs.append(float(p[j]))
    return scores, p_ctrs
