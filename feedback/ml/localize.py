"""Find the product in a generated creative from the two images alone (OpenCV, no Django).

Generation pipelines paste the product's own pixels back into the creative, so the cut-out is
present in the image at some position and scale (possibly lit differently, partly covered or cut
off by the frame). Masked normalised cross-correlation of the cut-out against the creative over a
geometric range of scales finds it. This gives every creative a product box (hence a `placed`
map and a placement mask) whether or not the manifest recorded where the generator put the
product: the same input at training and serving time, for our generator and for anyone else's.

The search runs on small copies (the creative's longer side is `work_side` pixels), then refines
the best scale on a finer grid: a few milliseconds per creative on one CPU core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Relative size of the product (longer side / creative's longer side) searched over.
MIN_SCALE = 0.06
MAX_SCALE = 1.15
# Below this masked correlation the product is considered not found (no box).
MIN_SCORE = 0.35
NOISE_MARGIN = 1.5


@dataclass(frozen=True)
class Localization:
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), creative pixels, opaque bbox
    score: float  # masked normalised correlation in [-1, 1] at the best position/scale


def _tight_rgba(product: Image.Image) -> np.ndarray:
    rgba = product.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda v: 255 if v >= 128 else 0).getbbox()
    return np.asarray(rgba.crop(bbox) if bbox else rgba, dtype=np.uint8)


def _match(
    image: np.ndarray, templ: np.ndarray, mask: np.ndarray, pad: int
) -> tuple[float, int, int]:
    """Best (score, x, y) of templ (top-left, unpadded image coordinates)."""
    import cv2

    th, tw = templ.shape[:2]
    h, w = image.shape[:2]
    if th > h + 2 * pad or tw > w + 2 * pad or mask.sum() < 16:
        return -1.0, 0, 0
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    # Zero-mean normalised correlation over the product's pixels: robust to the lighting gain
    # and haze pipelines apply, and a flat wall does not correlate with a textured product.
    res = cv2.matchTemplate(padded, templ, cv2.TM_CCOEFF_NORMED, mask=mask)
    res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
    _, best, _, loc = cv2.minMaxLoc(res)
    return float(best), int(loc[0]) - pad, int(loc[1]) - pad


def _prepare(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / 255.0


def _scales(lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(np.linspace(np.log(lo), np.log(hi), n))


def locate_product(
    creative: Image.Image,
    product: Image.Image,
    *,
    work_side: int = 112,
    min_score: float = MIN_SCORE,
) -> Localization | None:
    """The box of the product's opaque pixels in the creative, or None when not found."""
    import cv2

    rgb = np.asarray(creative.convert("RGB"), dtype=np.uint8)
    H, W = rgb.shape[:2]
    cut = _tight_rgba(product)
    ch, cw = cut.shape[:2]
    if ch < 2 or cw < 2:
        return None
    k = work_side / max(H, W)
    small = cv2.resize(
        rgb, (max(8, round(W * k)), max(8, round(H * k))), interpolation=cv2.INTER_AREA
    )
    img = _prepare(small)
    side = max(small.shape[:2])

    def at_scale(s: float) -> tuple[float, int, int, int, int]:
        long_px = s * side
        f = long_px / max(ch, cw)
        tw, th = max(3, round(cw * f)), max(3, round(ch * f))
        t = cv2.resize(cut, (tw, th), interpolation=cv2.INTER_AREA)
        templ = _prepare(t[..., :3])
        mask = (t[..., 3] >= 128).astype(np.float32)
        mask3 = np.repeat(mask[..., None], 3, axis=2)
        pad = max(tw, th) * 3 // 4  # products cut off by the frame still match
        score, x, y = _match(img, templ, mask3, pad)
        # A few-pixel template correlates well with anything: the spurious maximum of a
        # correlation over n pixels is ~1/sqrt(n), so small scales must beat that margin.
        return score - NOISE_MARGIN / np.sqrt(max(mask.sum(), 1.0)), x, y, tw, th

    best = (-2.0, 0, 0, 0, 0, 0.0)
    for s in _scales(MIN_SCALE, MAX_SCALE, 16):
        score, x, y, tw, th = at_scale(float(s))
        if score > best[0]:
            best = (score, x, y, tw, th, float(s))
    s0 = best[5]
    for s in _scales(s0 / 1.1, s0 * 1.1, 4):
        score, x, y, tw, th = at_scale(float(s))
        if score > best[0]:
            best = (score, x, y, tw, th, float(s))
    score, x, y, tw, th, _ = best
    if score < min_score:
        return None
    box = (x / k, y / k, (x + tw) / k, (y + th) / k)
    return Localization(box=tuple(round(v, 1) for v in box), score=round(score, 4))


def box_features(box: Sequence[float] | None, size: tuple[int, int]) -> np.ndarray:
    """Ten numbers about a box relative to the frame (the bench's box-only control)."""
    if box is None:
        return np.zeros(10, np.float32)
    w, h = size
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
    return np.array(
        [
            x0 / w,
            y0 / h,
            x1 / w,
            y1 / h,
            bw / w,
            bh / h,
            bw * bh / (w * h),
            bw / bh,
            float(x0 < 0 or y0 < 0 or x1 > w or y1 > h),
            1.0,
        ],
        np.float32,
    )
