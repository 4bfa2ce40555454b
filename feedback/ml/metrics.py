"""Classification metrics for RFNet (numpy + scikit-learn). JSON-safe: undefined values → None."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def average_precision(y_bin: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the precision-recall curve (sklearn's step-wise AP); None without positives."""
    if y_bin.sum() == 0:
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y_bin, score))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE over equal-width confidence bins (lo, hi]; confidence = max probability."""
    if len(y_true) == 0:
        return 0.0
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    available: str = "available",
) -> dict[str, Any]:
    """accuracy, macro_f1, per_class{slug: precision, recall, f1, ap, support}, available{...}
    (available vs. the rest, the paper's headline numbers), confusion (rows = truth), ece."""
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y), n):
        raise ValueError(f"probs must be (N={len(y)}, C={n}), got {probs.shape}")
    pred = probs.argmax(1) if len(y) else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y, pred, n)
    per_class: dict[str, dict[str, Any]] = {}
    f1s = []
    for k, name in enumerate(class_names):
        tp = int(cm[k, k])
        fp = int(cm[:, k].sum() - tp)
        fn = int(cm[k, :].sum() - tp)
        p, r, f = _prf(tp, fp, fn)
        support = int(cm[k].sum())
        per_class[name] = {
            "precision": p,
            "recall": r,
            "f1": f,
            "ap": average_precision((y == k).astype(int), probs[:, k]),
            "support": support,
        }
        if support:  # macro over classes present in the truth
            f1s.append(f)
    report: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "ece": expected_calibration_error(y, probs),
    }
    if available in class_names:
        a = list(class_names).index(available)
        yb, pb = y == a, pred == a
        p, r, f = _prf(int((yb & pb).sum()), int((~yb & pb).sum()), int((yb & ~pb).sum()))
        report["available"] = {
            "precision": p,
            "recall": r,
            "f1": f,
            "ap": average_precision(yb.astype(int), probs[:, a]),
            "support": int(yb.sum()),
        }
    return report


def model_human_agreement(
    model_labels: Sequence[Any], consensus_labels: Sequence[Any]
) -> dict[str, Any]:
    """Cohen's kappa (and raw agreement) between model predictions and the human consensus,
    to set beside human-vs-human agreement (same items, same label space)."""
    a, b = list(model_labels), list(consensus_labels)
    if len(a) != len(b):
        raise ValueError("model and consensus label lists differ in length")
    if not a:
        return {"kappa": None, "agreement": None, "n": 0}
    return {
        "kappa": cohen_kappa(a, b),
        "agreement": float(np.mean([x == y for x, y in zip(a, b, strict=True)])),
        "n": len(a),
    }


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    labels = sorted(set(a) | set(b), key=str)
    idx = {lab: i for i, lab in enumerate(labels)}
    cm = confusion_matrix(
        np.array([idx[x] for x in a]), np.array([idx[x] for x in b]), len(labels)
    ).astype(np.float64)
    n = cm.sum()
    po = np.trace(cm) / n
    pe = float((cm.sum(0) * cm.sum(1)).sum()) / n**2
    return 1.0 if pe == 1.0 else float((po - pe) / (1 - pe))
