"""Post-hoc calibration of RFNet's class probabilities (temperature scaling, Guo et al. 2017).

The one definition of RFNet's probabilities: `apply_calibration(logits, calibration)`. The
calibrated P(available) is its column `available_index`; the database scores, the API, the QA
pages, the queue ordering, the generation gate and the RFFT reward all read that number.
The class-weighted loss and the auxiliary binary head skew raw softmax values; a single
temperature fitted on `val` after training corrects the over/under-confidence without changing
any argmax (so accuracy and F1 are unchanged).

The fitted calibration is a small JSON dict saved beside the weights (`calibration.json`):
{"method": "temperature", "temperature": T, "n": ..., "nll_before": ..., "nll_after": ...,
 "ece_before": ..., "ece_after": ...}.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import expected_calibration_error

CALIBRATION_NAME = "calibration.json"


def apply_calibration(logits: torch.Tensor, calibration: dict[str, Any] | None) -> torch.Tensor:
    """Calibrated class probabilities [N, C] from logits [N, C] (differentiable)."""
    logits = logits.float()
    if calibration and calibration.get("method") == "temperature":
        logits = logits / float(calibration["temperature"])
    elif calibration and calibration.get("method") not in (None, "none"):
        raise ValueError(f"unknown calibration method {calibration.get('method')!r}")
    return torch.softmax(logits, dim=-1)


def p_available(
    logits: torch.Tensor, calibration: dict[str, Any] | None, available_index: int
) -> torch.Tensor:
    """Calibrated P(available) [N] (differentiable; the RFFT reward and the generation gate)."""
    return apply_calibration(logits, calibration)[:, available_index]


def fit_temperature(
    logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, *, max_iter: int = 200
) -> dict[str, Any]:
    """Fit T > 0 minimising the NLL of softmax(logits / T) on held-out (val) data."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError("fit_temperature needs logits [N, C] and N labels, N > 0")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t) or t <= 0:
        t = 1.0
    t = min(max(t, 0.05), 20.0)
    before = torch.softmax(z, -1).numpy()
    after = torch.softmax(z / t, -1).numpy()
    return {
        "method": "temperature",
        "temperature": round(t, 6),
        "n": len(y),
        "nll_before": round(float(F.cross_entropy(z, y)), 6),
        "nll_after": round(float(F.cross_entropy(z / t, y)), 6),
        "ece_before": round(expected_calibration_error(y.numpy(), before), 6),
        "ece_after": round(expected_calibration_error(y.numpy(), after), 6),
    }
