"""The creative stage at request time, from matrices precomputed per catalogue (no Django).

Peri-CR runs the creative ranker beside ad ranking inside the request's budget, so everything
that depends on the creative or the product alone is computed once per (ranker, catalogue
snapshot) by `CreativeStage(...)`: the standardised inputs, each creative's share of the creative
stage's first layer W_c·x (products × creatives × hidden), and each product's share of stage
one's first layer. A request brings the segment's features and the products to rank and costs
one batched forward under `torch.inference_mode`: stage one for those products, the JAC
embedding of their pCTR, the list-level share of the first layer, then the rest of the creative
MLP over every creative, a chunk of lists at a time so the activations stay in cache, and one
argsort. There is no Python loop per creative or per product; the outputs equal
`CreativeRanker.forward` on the same lists (up to float summation order).

Memory: products × max creatives per product × (inputs + hidden) float32, e.g. 1,000 × 20 ×
(143 + 128) ≈ 22 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .ranker import Batch, CreativeRanker, jac_bucket
from .training import _norm

# Rows (creatives) per chunk of the creative MLP: 1,024 × 128 float32 activations = 512 KB.
CHUNK_ROWS = 1024


@dataclass
class Ranked:
    rows: np.ndarray  # (n,) product rows of the stage, in request order
    scores: np.ndarray  # (n, L) creative scores; -inf at padding
    p_ctr: np.ndarray  # (n,) stage-one pCTR of (segment, product)
    order: np.ndarray  # (n, L) creative columns best first (padding last)
    counts: np.ndarray  # (n,) creatives of each product


def _plan(layers) -> list[tuple[str, torch.Tensor | None, torch.Tensor | None]]:
    """An eval-mode MLP tail as (op, Wᵀ, b) steps; dropout is the identity at eval."""
    plan = []
    for m in layers:
        if isinstance(m, nn.Linear):
            plan.append(("linear", m.weight.detach().T.contiguous(), m.bias.detach()))
        elif isinstance(m, nn.ReLU):
            plan.append(("relu", None, None))
        elif not isinstance(m, nn.Dropout):
            raise TypeError(f"unsupported layer {type(m).__name__} in the creative stage")
    return plan


def _run(plan, h: torch.Tensor) -> torch.Tensor:
    """Apply the plan in place where possible (h is a fresh activation, never an input)."""
    for op, wt, b in plan:
        h = h.relu_() if op == "relu" else torch.addmm(b, h, wt)
    return h


class CreativeStage:
    """One ranker over a fixed set of products and their creatives.

    product: (P, product inputs) raw; creatives: (P, L, creative inputs ⊕ embedding) raw, rows
    past a product's count are padding; counts: (P,) creatives per product."""

    def __init__(
        self,
        ranker: CreativeRanker,
        product: np.ndarray,
        creatives: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        cfg = ranker.config
        self.ranker = ranker.eval()
        self.counts = np.asarray(counts, np.int64)
        n_prod, width = creatives.shape[0], creatives.shape[1]
        self.width = width
        mask = np.arange(width)[None] < self.counts[:, None]
        crea = _norm(creatives.reshape(n_prod * width, -1), cfg.norms.get("creative"))
        crea = crea.reshape(n_prod, width, -1) * mask[..., None]  # padding: zeros
        device = next(ranker.parameters()).device
        # Plain tensors (not inference tensors): contributions() differentiates through them.
        with torch.no_grad():
            self.product = torch.from_numpy(_norm(product, cfg.norms.get("product"))).to(device)
            self.creative = torch.from_numpy(np.ascontiguousarray(crea, np.float32)).to(device)
            self.mask = torch.from_numpy(mask).to(device)
            self.proj = ranker.project_creatives(self.creative).contiguous()
            n_seg = len(cfg.segment_features)
            first1 = ranker.stage1[0]
            self.s1_seg_wt = first1.weight[:, :n_seg].T.contiguous()
            self.s1_prod = (self.product @ first1.weight[:, n_seg:].T + first1.bias).contiguous()
            self.s1_plan = _plan(ranker.stage1[1:])
            first2 = ranker.stage2[0]
            n_crea = self.creative.shape[-1]
            self.s2_seg_wt = first2.weight[:, :n_seg].T.contiguous()
            self.s2_cond_wt = first2.weight[:, n_seg + n_crea :].T.contiguous()
            self.s2_bias = first2.bias.detach().clone()
            self.s2_plan = _plan(ranker.stage2[1:])
        self.device = device

    def __len__(self) -> int:
        return len(self.counts)

    def segment_tensor(self, segment: np.ndarray) -> torch.Tensor:
        norms = self.ranker.config.norms.get("segment")
        return torch.from_numpy(_norm(np.asarray(segment, np.float32)[None], norms)).to(self.device)

    @torch.inference_mode()
    def rank(self, segment: np.ndarray, rows=None) -> Ranked:
        """Score and order every creative of `rows` (default: every product) for one segment's
        raw feature vector (in the ranker's segment_features order)."""
        cfg = self.ranker.config
        seg = self.segment_tensor(segment)  # (1, S)
        idx = None if rows is None else torch.as_tensor(np.asarray(rows, np.int64))
        n = len(self) if idx is None else len(idx)
        s1 = self.s1_prod if idx is None else self.s1_prod.index_select(0, idx.to(self.device))
        logit1 = _run(self.s1_plan, s1 + seg @ self.s1_seg_wt).squeeze(-1)
        p_ctr = torch.sigmoid(logit1)
        jac = self.ranker.jac(jac_bucket(p_ctr, cfg.jac_buckets, cfg.jac_r))
        cond = torch.cat([jac, logit1[:, None]], -1)
        list_part = torch.addmm(seg @ self.s2_seg_wt + self.s2_bias, cond, self.s2_cond_wt)
        scores = torch.empty(n, self.width, device=self.device)
        step = max(1, CHUNK_ROWS // max(1, self.width))
        for i in range(0, n, step):  # a chunk of lists, not a loop per creative
            if idx is None:
                proj = self.proj[i : i + step]
            else:
                proj = self.proj.index_select(0, idx[i : i + step].to(self.device))
            h = torch.add(proj, list_part[i : i + step, None]).view(-1, proj.shape[-1])
            scores[i : i + step] = _run(self.s2_plan, h).view(-1, self.width)
        mask = self.mask if idx is None else self.mask.index_select(0, idx.to(self.device))
        scores.masked_fill_(~mask, float("-inf"))
        order = torch.argsort(scores, dim=-1, descending=True, stable=True)
        rows_out = np.arange(n) if idx is None else idx.numpy()
        return Ranked(
            rows=rows_out,
            scores=scores.cpu().numpy(),
            p_ctr=p_ctr.cpu().numpy(),
            order=order.cpu().numpy(),
            counts=self.counts[rows_out],
        )

    def contributions(self, segment: np.ndarray, rows, names: list[str], top: int = 3) -> list:
        """CreativeRanker.contributions for `rows` (gradient × (input − the list's mean))."""
        idx = torch.as_tensor(np.asarray(rows, np.int64), device=self.device)
        seg = self.segment_tensor(segment).expand(len(idx), -1)
        batch = Batch(
            seg,
            self.product.index_select(0, idx),
            self.creative.index_select(0, idx),
            self.mask.index_select(0, idx).float(),
        )
        return self.ranker.contributions(batch, names, top=top)
