"""Creative feature extractors (no Django, no downloads).

Each extractor has a `name`, a `version` (bumped when its output changes: cached rows of an older
version are recomputed) and `extract(creative: Image, product: Image | None, box) -> dict` of JSON
values. Numeric values feed the ranker; strings (OCR text) are shown to people.

- `VisualExtractor`: dominant/background colours, product-vs-background contrast, product area
  ratio, sharpness, saliency mass on the product. Where the product sits comes from the recorded
  placement box when there is one, else from masked template matching of the cut-out (the
  product's pixels are pasted back by the generators, so they are found as they are).
- `OcrExtractor`: text presence and text via rapidocr-onnxruntime (its wheel ships the models).
- `VlmExtractor` (vlm.py): a local transformers vision-language model prompted for a JSON object.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from feedback.ml.maps import placement_mask, spectral_residual_saliency, to_gray

WORK_SIZE = 128  # long side the visual features are computed at


def _resize_long(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    s = size / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)


def locate_product(
    creative: Image.Image, product: Image.Image, box: Sequence[float] | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """(mask in [0, 1] of the creative's size, box) of the product in the creative.

    The recorded box wins; without one the cut-out is matched (alpha as the template mask) at
    a few scales on a small copy, and the best match is scaled back."""
    w, h = creative.size
    if box is not None:
        return placement_mask(product, box, (w, h)), tuple(int(round(v)) for v in box)
    rgba = product.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda v: 255 if v >= 128 else 0).getbbox()
    if bbox is None:
        return np.zeros((h, w), np.float32), None
    cut = rgba.crop(bbox)
    small = _resize_long(creative.convert("RGB"), 96)
    sw, sh = small.size
    img = np.asarray(small, np.float32)
    found_at = []
    for frac in np.geomspace(0.1, 0.9, 18):  # ~13 % apart
        t = _resize_long(cut, max(4, int(frac * max(sw, sh))))
        tw, th = t.size
        if tw >= sw or th >= sh or tw < 4 or th < 4:
            continue
        arr = np.asarray(t, np.float32)
        mask = (arr[..., 3] >= 128).astype(np.float32)
        if mask.sum() < 8:
            continue
        res = cv2.matchTemplate(
            img, np.ascontiguousarray(arr[..., :3]), cv2.TM_SQDIFF, mask=np.dstack([mask] * 3)
        )
        res = res / mask.sum()
        _, _, loc, _ = cv2.minMaxLoc(np.nan_to_num(res, nan=np.inf, posinf=1e12))
        found_at.append((float(res[loc[1], loc[0]]), loc, (tw, th)))
    if not found_at:
        return np.zeros((h, w), np.float32), None
    # A smaller copy of a flat product also fits inside the product: of the scales that match
    # about as well as the best one (resampling noise ~10 levels per channel), take the largest.
    floor = min(f[0] for f in found_at) * 1.5 + 3 * 10.0**2
    best = max((f for f in found_at if f[0] <= floor), key=lambda f: f[2][0] * f[2][1])
    _, (x, y), (tw, th) = best
    s = w / sw
    found = (round(x * s), round(y * s), round((x + tw) * s), round((y + th) * s))
    return placement_mask(product, found, (w, h)), found


def dominant_colours(rgb: np.ndarray, k: int = 3) -> list[tuple[list[int], float]]:
    """k-means colours of the pixels, largest share first: [(rgb, share), ...]."""
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    k = max(1, min(k, len(np.unique(pixels, axis=0))))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)
    _, labels, centers = cv2.kmeans(pixels, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k) / len(labels)
    order = np.argsort(-counts)
    return [([int(v) for v in centers[i]], float(counts[i])) for i in order]


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)


class VisualExtractor:
    name = "visual"
    version = "1"

    def extract(self, creative: Image.Image, product: Image.Image | None = None, box=None) -> dict:
        img = _resize_long(creative.convert("RGB"), WORK_SIZE)
        rgb = np.asarray(img)
        h, w = rgb.shape[:2]
        if product is not None:
            scaled = None
            if box is not None:
                s = w / creative.size[0]
                scaled = [v * s for v in box]
            mask, _ = locate_product(img, product, scaled)
        else:
            mask = np.zeros((h, w), np.float32)
        fg = mask >= 0.5
        bg = ~fg
        if bg.sum() == 0:
            bg = np.ones_like(fg)
        gray = to_gray(rgb)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32) / [180.0, 255.0, 255.0]
        bg_rgb = rgb[bg].mean(0)
        values = {
            "brightness": float(gray.mean()),
            "saturation": float(hsv[..., 1].mean()),
            "warmth": float((rgb[..., 0].astype(np.float32) - rgb[..., 2]).mean() / 255.0),
            "colourfulness": _colourfulness(rgb),
            "background_r": float(bg_rgb[0] / 255),
            "background_g": float(bg_rgb[1] / 255),
            "background_b": float(bg_rgb[2] / 255),
            "background_brightness": float(gray[bg].mean()),
            "background_saturation": float(hsv[..., 1][bg].mean()),
            "product_area": float(fg.mean()),
            # Laplacian variance of the 8-bit gray image, log-compressed.
            "sharpness": float(np.log1p(cv2.Laplacian(gray * 255.0, cv2.CV_32F).var())),
        }
        colours = dominant_colours(rgb)
        values["dominant_colours"] = [{"rgb": c, "share": round(s, 4)} for c, s in colours]
        values["dominant_share"] = colours[0][1]
        if fg.any():
            lab = _lab(rgb)
            values["contrast_luma"] = float(abs(gray[fg].mean() - gray[bg].mean()))
            values["contrast_delta_e"] = float(
                np.linalg.norm(lab[fg].mean(0) - lab[bg].mean(0)) / 100.0
            )
            sal = spectral_residual_saliency(gray)
            values["saliency_on_product"] = float(sal[fg].sum() / max(sal.sum(), 1e-6))
        else:
            values.update(contrast_luma=0.0, contrast_delta_e=0.0, saliency_on_product=0.0)
        return values


def _colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003), scaled to about [0, 1]."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float((np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 255.0)


class OcrExtractor:
    """Text in the creative via rapidocr-onnxruntime (models ship in its wheel; CPU)."""

    name = "ocr"
    version = "1"
    _engine = None

    def __init__(self, min_score: float = 0.5) -> None:
        self.min_score = min_score

    @classmethod
    def engine(cls):
        if cls._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            cls._engine = RapidOCR()
        return cls._engine

    def extract(self, creative: Image.Image, product: Image.Image | None = None, box=None) -> dict:
        rgb = np.asarray(creative.convert("RGB"))
        result, _ = self.engine()(rgb[..., ::-1].copy())  # RapidOCR reads BGR like OpenCV
        lines, area = [], 0.0
        for quad, text, score in result or []:
            if float(score) < self.min_score:
                continue
            lines.append(str(text))
            q = np.asarray(quad, np.float32)
            area += float(cv2.contourArea(q))
        h, w = rgb.shape[:2]
        return {
            "has_text": float(bool(lines)),
            "text_boxes": float(len(lines)),
            "text_area": float(min(1.0, area / (w * h))),
            "text": " ".join(lines),
        }


EXTRACTORS = {"visual": VisualExtractor, "ocr": OcrExtractor}


def numeric(values: dict, prefix: str) -> dict[str, float]:
    """The numeric (float/int/bool) values of an extractor's output, as `prefix.key`."""
    out = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool | int | float) and np.isfinite(float(value)):
            out[f"{prefix}.{key}"] = float(value)
    return out
