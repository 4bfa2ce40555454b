"""Two-stage creative ranker.

Stage one (the ad ranker's view): an MLP over segment and product features predicts the
<segment, product> CTR. Stage two (the creative ranker, run in parallel in Peri-CR): an MLP
(128-64-32) over segment features, creative features and embeddings, plus an embedding of the
stage-one pCTR quantised by JAC, ⌊K·log_{r+1}(1 + r·pCTR)⌋ (K = 8192), scores each creative of a
(segment, product) list. Stage one's pCTR enters stage two detached: the creative ranker is
conditioned on it, it does not train it.

Loss per batch of lists (VAM-HBM): list-wise softmax cross-entropy of the creative scores against
the list's Beta-smoothed CTRs normalised to a distribution, + 0.5 · MSE between σ(score) and the
smoothed CTR, + stage one's impression-weighted binary cross-entropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import RankerConfig


def smoothed_ctr(clicks, impressions, alpha: float = 2.04, beta: float = 54.06):
    """Beta-smoothed CTR (clicks + α) / (impressions + α + β)."""
    return (clicks + alpha) / (impressions + alpha + beta)


def jac_bucket(p_ctr: torch.Tensor, buckets: int = 8192, r: float = 100.0) -> torch.Tensor:
    """⌊K·log_{r+1}(1 + r·pCTR)⌋, clamped to [0, K-1] (pCTR = 1 would give K)."""
    x = torch.log1p(r * p_ctr.clamp(0, 1)) / math.log1p(r)
    return torch.floor(buckets * x).long().clamp(0, buckets - 1)


def listwise_loss(
    scores: torch.Tensor,
    target_ctr: torch.Tensor,
    mask: torch.Tensor,
    mse_weight: float = 0.5,
) -> tuple[torch.Tensor, dict]:
    """scores, target_ctr, mask: (B, L). Softmax CE per list against target_ctr / Σ target_ctr,
    averaged over lists, + mse_weight · MSE(σ(score), target_ctr) over real creatives."""
    mask = mask.bool()
    neg = torch.finfo(scores.dtype).min
    log_p = F.log_softmax(scores.masked_fill(~mask, neg), dim=-1)
    q = target_ctr * mask
    q = q / q.sum(-1, keepdim=True).clamp_min(1e-12)
    ce = -(q * log_p.masked_fill(~mask, 0.0)).sum(-1).mean()
    err = (torch.sigmoid(scores) - target_ctr) ** 2
    mse = (err * mask).sum() / mask.sum().clamp_min(1)
    return ce + mse_weight * mse, {"listwise_ce": float(ce.detach()), "mse": float(mse.detach())}


def _mlp(d_in: int, hidden: list[int], dropout: float) -> nn.Sequential:
    layers, d = [], d_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
        d = h
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers)


@dataclass
class Batch:
    segment: torch.Tensor  # (B, S)
    product: torch.Tensor  # (B, P)
    creative: torch.Tensor  # (B, L, C) creative features ⊕ embedding
    mask: torch.Tensor  # (B, L) real creatives
    impressions: torch.Tensor | None = None  # (B, L)
    clicks: torch.Tensor | None = None  # (B, L)

    def to(self, device, non_blocking: bool = False) -> Batch:
        """On `device` (accelerate's prepared data loader calls this)."""
        return Batch(
            *(
                None if t is None else t.to(device, non_blocking=non_blocking)
                for t in (
                    self.segment,
                    self.product,
                    self.creative,
                    self.mask,
                    self.impressions,
                    self.clicks,
                )
            )
        )


class CreativeRanker(nn.Module):
    def __init__(self, config: RankerConfig) -> None:
        super().__init__()
        self.config = config
        s = len(config.segment_features)
        p = len(config.product_features)
        c = len(config.creative_features) + config.embedding_dim
        self.stage1 = _mlp(s + p, config.stage1_hidden, config.dropout)
        self.jac = nn.Embedding(config.jac_buckets, config.jac_dim)
        nn.init.normal_(self.jac.weight, std=0.01)
        self.stage2 = _mlp(s + c + config.jac_dim + 1, config.hidden, config.dropout)

    def forward(
        self,
        batch: Batch,
        creative_proj: torch.Tensor | None = None,
        return_loss: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(creative scores (B, L) — logits of the creative's CTR, stage-one logits (B,)), or
        with `return_loss` (training through accelerate/DDP) `loss(batch)`.

        The creative stage's first layer is applied in parts, W·[seg, creative, cond] =
        W_c·creative + (W_s·seg + W_j·cond + b): the list-level part once per list instead of
        once per creative, and no (B, L, ·) concatenation. `creative_proj` = W_c·creative may be
        passed precomputed (`project_creatives`): it depends on the creative alone, so a server
        can cache it per creative."""
        if return_loss:
            return self.loss(batch)
        cfg = self.config
        logit1 = self.stage1(torch.cat([batch.segment, batch.product], -1)).squeeze(-1)
        p_ctr = torch.sigmoid(logit1).detach()
        jac = self.jac(jac_bucket(p_ctr, cfg.jac_buckets, cfg.jac_r))
        cond = torch.cat([jac, logit1.detach()[:, None]], -1)
        first = self.stage2[0]
        s = batch.segment.shape[-1]
        c = batch.creative.shape[-1]
        w_s, w_c, w_j = first.weight[:, :s], first.weight[:, s : s + c], first.weight[:, s + c :]
        list_part = batch.segment @ w_s.T + cond @ w_j.T + first.bias
        if creative_proj is None:
            creative_proj = batch.creative @ w_c.T
        h = creative_proj + list_part[:, None]
        return self.stage2[1:](h).squeeze(-1), logit1

    def project_creatives(self, creative: torch.Tensor) -> torch.Tensor:
        """W_c·creative for (…, C) normalised creative inputs (see forward)."""
        s = len(self.config.segment_features)
        w = self.stage2[0].weight
        return creative @ w[:, s : s + creative.shape[-1]].T

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        scores, logit1 = self(batch)
        imp, clk, mask = batch.impressions, batch.clicks, batch.mask
        target = smoothed_ctr(clk, imp, cfg.alpha, cfg.beta)
        loss2, parts = listwise_loss(scores, target, mask, cfg.mse_weight)
        # Stage one: binomial log-likelihood of the list's clicks, per impression.
        li = (imp * mask).sum(-1)
        lc = (clk * mask).sum(-1)
        bce = -(lc * F.logsigmoid(logit1) + (li - lc) * F.logsigmoid(-logit1)).sum() / li.sum()
        parts["stage1_bce"] = float(bce.detach())
        return loss2 + bce, parts

    @torch.no_grad()
    def score(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        self.eval()
        scores, logit1 = self(batch)
        return scores.cpu().numpy(), torch.sigmoid(logit1).cpu().numpy()

    def contributions(self, batch: Batch, names: list[str], top: int = 3) -> list[list]:
        """Per creative, the `top` inputs (creative features and embedding as a whole) that most
        raised or lowered its score relative to the list's average creative: gradient × (x − x̄)."""
        self.eval()
        x = batch.creative.clone().requires_grad_(True)
        scores, _ = self(Batch(batch.segment, batch.product, x, batch.mask))
        (grad,) = torch.autograd.grad(scores[batch.mask.bool()].sum(), x)
        m = batch.mask[..., None].float()
        mean = (batch.creative * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)
        contrib = (grad * (batch.creative - mean)).detach()
        n_named = len(names)
        parts = contrib[..., :n_named]
        if contrib.shape[-1] > n_named:
            parts = torch.cat([parts, contrib[..., n_named:].sum(-1, keepdim=True)], -1)
            names = [*names, "embedding"]
        out = []
        for b in range(parts.shape[0]):
            row = []
            for i in range(parts.shape[1]):
                if not batch.mask[b, i]:
                    row.append([])
                    continue
                v = parts[b, i]
                order = torch.argsort(v.abs(), descending=True)[:top]
                row.append([[names[j], round(float(v[j]), 4)] for j in order.tolist()])
            out.append(row)
        return out

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items()},
            str(folder / "model.safetensors"),
        )

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu") -> CreativeRanker:
        from safetensors.torch import load_file

        model = cls(RankerConfig.load(folder))
        model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
        return model.to(device).eval()
