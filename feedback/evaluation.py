"""Evaluate a checkpoint on dataset rows: the classification report of feedback.ml.metrics plus a
reliability diagram and RFNet-vs-human agreement beside human-vs-human agreement."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from .analysis import agreement_report, calibration_bins
from .ml.metrics import classification_report
from .samples import dataset_rows, row_samples
from .selectors import votes_by_item


class EvaluationError(ValueError):
    pass


# The params key under which a generator records which mechanism produced a creative's defect
# (bench/othergen.py writes "label:mechanism"); evaluations report accuracy per value.
MECHANISM_PARAM = "mechanism"


def slice_report(
    groups: dict[str, Sequence[str | None]],
    y_true: Sequence[int],
    y_pred: Sequence[int],
    class_names: Sequence[str],
) -> dict[str, list[dict]]:
    """Where the model fails: for each grouping (e.g. product family, generator mechanism) one
    row per value — n, accuracy and the class most often predicted wrongly — worst first.
    Rows with no value for a grouping are left out of it; a grouping with no values is absent."""
    out = {}
    for name, keys in groups.items():
        by_key = defaultdict(list)
        for key, t, p in zip(keys, y_true, y_pred, strict=True):
            if key not in (None, ""):
                by_key[str(key)].append((t, p))
        rows = []
        for key, pairs in by_key.items():
            wrong = Counter(class_names[p] for t, p in pairs if p != t)
            rows.append(
                {
                    "key": key,
                    "n": len(pairs),
                    "accuracy": 1.0 - sum(wrong.values()) / len(pairs),
                    "confused_with": wrong.most_common(1)[0][0] if wrong else None,
                }
            )
        if rows:
            out[name] = sorted(rows, key=lambda r: (r["accuracy"], -r["n"], r["key"]))
    return out


def evaluate_rows(scorer, rows: Sequence, class_names: Sequence[str], *, batch_size=32) -> dict:
    kept, samples = row_samples(rows, class_names)
    if not samples:
        raise EvaluationError(
            "No evaluable items: the rows are empty, their images are missing, or their labels "
            f"are not classes of the model ({', '.join(class_names)})."
        )
    detailed = scorer.score_detailed(samples, batch_size=batch_size)
    probs = np.asarray(detailed["probs"], dtype=np.float64)  # calibrated
    y_true = [s.label for s in samples]
    report = classification_report(y_true, probs, list(class_names))
    report = _jsonable(report)
    if "logits" in detailed and scorer.calibration is not None:
        raw = classification_report(y_true, _softmax(detailed["logits"]), list(class_names))
        report["ece_uncalibrated"] = _jsonable(raw["ece"])
    report["calibration"] = calibration_bins(y_true, probs)
    predicted = probs.argmax(axis=1)
    predictions = [class_names[i] for i in predicted]
    report["slices"] = slice_report(
        {
            "family": [r.creative.product.group_key for r in kept],
            "mechanism": [(r.creative.params or {}).get(MECHANISM_PARAM) for r in kept],
        },
        y_true,
        predicted.tolist(),
        class_names,
    )
    votes = votes_by_item([r.item_id for r in kept])
    report["agreement"] = agreement_report([votes.get(r.item_id, []) for r in kept], predictions)
    report["n"] = len(samples)
    report["skipped"] = len(rows) - len(samples)
    report["class_names"] = list(class_names)
    return report


def _softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate_version(scorer, version, class_names, *, split: str = "test", batch_size=32) -> dict:
    if split not in ("test", "all"):
        raise EvaluationError(f"Unknown split {split!r}: use test or all.")
    rows = dataset_rows(version, ["test"] if split == "test" else None)
    if not rows:
        raise EvaluationError(f"Dataset version {version.name} has no {split} items.")
    report = evaluate_rows(scorer, rows, class_names, batch_size=batch_size)
    report["dataset"] = version.name
    report["split"] = split
    return report


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        v = float(value)
        return None if np.isnan(v) else v
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
