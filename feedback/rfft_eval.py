"""Generator evaluation figures that do not trust the reward (no Django; numpy + PIL).

- usable rate: share of images whose P(available) (feedback.rfft_reward.p_available) is ≥ the
  threshold, computed separately with the reward RFNet and with an independent judge RFNet;
- diversity per product: the mean pairwise cosine distance between background feature vectors
  of that product's images (a coarse colour layout + a colour histogram of the pixels outside the
  product) and the entropy of the product's pooled background colour histogram. A generator
  collapsing onto one background shows as both falling; `diversity_ratio` is the model's
  mean pairwise distance over the baseline's on the same products, prompts and seeds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

HIST_BINS = 8  # per RGB channel: 512 colour cells
LAYOUT = 8  # background colour layout grid (LAYOUT x LAYOUT cells)


@dataclass
class Generated:
    """One evaluated image: which product/prompt/seed it was generated for and its scores."""

    product: str  # SKU
    seed: int
    prompt: str
    image: Image.Image
    background: np.ndarray  # (H, W) bool, True outside the product (1 − placed alpha)
    p_reward: float | None = None
    p_judge: float | None = None


def _hist(pixels: np.ndarray) -> np.ndarray:
    q = (pixels.astype(np.int64) * HIST_BINS) // 256
    idx = (q[:, 0] * HIST_BINS + q[:, 1]) * HIST_BINS + q[:, 2]
    return np.bincount(idx, minlength=HIST_BINS**3).astype(np.float64)


def background_features(image: Image.Image, background: np.ndarray) -> np.ndarray:
    """Unit-norm vector: background colour layout (product cells filled with the background
    mean) ‖ square-rooted background colour histogram."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    bg = background.astype(bool)
    if bg.shape != rgb.shape[:2]:
        raise ValueError(f"background mask {bg.shape} does not match image {rgb.shape[:2]}")
    pixels = rgb[bg] if bg.any() else rgb.reshape(-1, 3)
    mean = pixels.mean(0)
    filled = np.where(bg[..., None], rgb, mean)
    layout = (
        np.asarray(
            Image.fromarray(filled.astype(np.uint8)).resize((LAYOUT, LAYOUT), Image.BOX), np.float32
        ).ravel()
        / 255.0
    )
    hist = _hist(pixels)
    hist = np.sqrt(hist / max(1.0, hist.sum()))
    layout = layout / (np.linalg.norm(layout) + 1e-8)
    feat = np.concatenate([layout, hist / (np.linalg.norm(hist) + 1e-8)])
    return feat / (np.linalg.norm(feat) + 1e-8)


def mean_pairwise_distance(features: Sequence[np.ndarray]) -> float | None:
    if len(features) < 2:
        return None
    f = np.stack(features)
    sims = f @ f.T
    iu = np.triu_indices(len(f), 1)
    return float(np.mean(1.0 - sims[iu]))


def histogram_entropy(images: Sequence[Image.Image], backgrounds: Sequence[np.ndarray]) -> float:
    """Entropy (bits) of the pooled background colour histogram of a product's images."""
    total = np.zeros(HIST_BINS**3)
    for im, bg in zip(images, backgrounds, strict=True):
        rgb = np.asarray(im.convert("RGB"))
        total += _hist(rgb[bg.astype(bool)] if bg.any() else rgb.reshape(-1, 3))
    p = total / max(1.0, total.sum())
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def summarise(items: Sequence[Generated], threshold: float = 0.5) -> dict:
    """Figures of one model's images (see the module docstring)."""
    by_product: dict[str, list[Generated]] = defaultdict(list)
    for it in items:
        by_product[it.product].append(it)
    per_product = {}
    for sku, rows in sorted(by_product.items()):
        feats = [background_features(r.image, r.background) for r in rows]
        per_product[sku] = {
            "n": len(rows),
            "pairwise_distance": mean_pairwise_distance(feats),
            "hist_entropy": histogram_entropy(
                [r.image for r in rows], [r.background for r in rows]
            ),
            "usable_reward": _rate([r.p_reward for r in rows], threshold),
            "usable_judge": _rate([r.p_judge for r in rows], threshold),
        }
    dists = [
        v["pairwise_distance"] for v in per_product.values() if v["pairwise_distance"] is not None
    ]
    ents = [v["hist_entropy"] for v in per_product.values()]
    return {
        "n_images": len(items),
        "usable_rate_reward": _rate([i.p_reward for i in items], threshold),
        "usable_rate_judge": _rate([i.p_judge for i in items], threshold),
        "mean_p_reward": _mean([i.p_reward for i in items]),
        "mean_p_judge": _mean([i.p_judge for i in items]),
        "diversity": float(np.mean(dists)) if dists else None,
        "hist_entropy": float(np.mean(ents)) if ents else None,
        "per_product": per_product,
    }


def compare(model: dict, baseline: dict | None) -> dict:
    """Adds the ratios to the baseline (same products, prompts, seeds) to `model`'s summary."""
    out = dict(model)
    if baseline is None:
        out["diversity_ratio"] = None
        return out
    out["diversity_ratio"] = _ratio(model.get("diversity"), baseline.get("diversity"))
    out["hist_entropy_ratio"] = _ratio(model.get("hist_entropy"), baseline.get("hist_entropy"))
    for key in ("usable_rate_reward", "usable_rate_judge"):
        a, b = model.get(key), baseline.get(key)
        out[f"{key}_delta"] = None if a is None or b is None else a - b
    return out


def _rate(values, threshold: float) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean([v >= threshold for v in vals])) if vals else None


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _ratio(a, b) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return float(a / b)
