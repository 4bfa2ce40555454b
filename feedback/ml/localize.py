"""Find the product in a generated creative from the two images alone (OpenCV, no Django).

Generation pipelines paste the product's own pixels back into the creative, so the cut-out is
present in the image at some position and scale (possibly lit differently, partly covered or cut
off by the frame). Masked normalised cross-correlation of the cut-out against the creative over a
geometric range of scales finds it. This gives every creative a product box (hence a `placed`
map and a placement mask) whether or not the manifest recorded where the generator put the
product: the same input at training and serving time, for our generator and for anyone else's.

A cut-out of one flat colour (a drawn or rendered product without texture) has nothing for a
zero-mean correlation to correlate: it is matched by its silhouette instead, correlating the
cut-out's alpha (with a ring of background around it) against how close each pixel of the
creative is to the product's colour.

The search runs on small copies (the creative's longer side is `work_side` pixels, large
templates on a half-size copy), then refines the best scale and position on a finer grid.
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
# The coarse pass only takes templates at least this long (pixels); smaller ones run at full
# work resolution, where they are cheap anyway.
COARSE_MIN_PX = 12
REFINE_CANDIDATES = 3
# A cut-out whose colour varies less than this (largest per-channel std over its opaque pixels,
# in [0, 1]) is matched by its silhouette. Textured products (the real cut-outs, othergen's)
# measure 0.09 and above, so they keep the correlation of their pixels.
FLAT_STD = 0.04
# Mean per-channel distance (in [0, 1]) at which a pixel stops counting as the product's colour.
FLAT_TOLERANCE = 0.2
# Background ring around the silhouette template, as a share of its longer side.
FLAT_RING = 0.15


@dataclass(frozen=True)
class Localization:
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), creative pixels, opaque bbox
    # normalised correlation in [-1, 1] at the best position/scale: of the product's pixels, or
    # of its silhouette for a flat-colour cut-out
    score: float


def _tight_rgba(product: Image.Image) -> np.ndarray:
    rgba = product.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda v: 255 if v >= 128 else 0).getbbox()
    return np.asarray(rgba.crop(bbox) if bbox else rgba, dtype=np.uint8)


def _match(
    padded: np.ndarray,
    pad: int,
    templ: np.ndarray,
    mask: np.ndarray | None,
    window: tuple[int, int, int, int],
) -> tuple[float, int, int]:
    """Best (score, x, y) of templ's top-left in unpadded image coordinates, searched over
    `window` = (x0, y0, x1, y1) of top-left positions (negative: the template hangs over the
    frame, into the replicated border of `padded`). No mask: the whole template counts."""
    import cv2

    th, tw = templ.shape[:2]
    H, W = padded.shape[:2]
    x0, y0 = max(0, window[0] + pad), max(0, window[1] + pad)
    x1, y1 = min(W - tw, window[2] + pad), min(H - th, window[3] + pad)
    if x1 < x0 or y1 < y0 or (mask if mask is not None else templ).sum() < 16:
        return -1.0, 0, 0
    # Zero-mean normalised correlation over the product's pixels: robust to the lighting gain
    # and haze pipelines apply, and a flat wall does not correlate with a textured product.
    region = padded[y0 : y1 + th, x0 : x1 + tw]
    res = cv2.matchTemplate(region, templ, cv2.TM_CCOEFF_NORMED, mask=mask)
    if mask is None:
        # Unmasked, OpenCV returns arbitrary values (up to ±1) for a window of constant
        # pixels, where the correlation is undefined: such windows score -1.
        ones = np.ones_like(templ)
        mean = cv2.matchTemplate(region, ones, cv2.TM_CCORR) / templ.size
        sq = cv2.matchTemplate(region * region, ones, cv2.TM_CCORR) / templ.size
        res[sq - mean * mean < 1e-3] = -1.0
    res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
    _, best, _, loc = cv2.minMaxLoc(res)
    return float(best), int(loc[0]) + x0 - pad, int(loc[1]) + y0 - pad


def _prepare(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / 255.0


def _flat_colour(cut: np.ndarray) -> np.ndarray | None:
    """The cut-out's colour (RGB in [0, 1]) when it is one flat colour, else None."""
    opaque = _prepare(cut[..., :3])[cut[..., 3] >= 128]
    if len(opaque) < 16 or opaque.std(0).max() >= FLAT_STD:
        return None
    return opaque.mean(0)


def _scales(lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(np.linspace(np.log(lo), np.log(hi), n))


class _Level:
    """The creative at one working resolution, padded once for every template size."""

    def __init__(self, rgb: np.ndarray, side: int, pad_fraction: float) -> None:
        import cv2

        H, W = rgb.shape[:2]
        self.k = side / max(H, W)
        small = cv2.resize(
            rgb,
            (max(8, round(W * self.k)), max(8, round(H * self.k))),
            interpolation=cv2.INTER_AREA,
        )
        self.h, self.w = small.shape[:2]
        self.side = max(self.h, self.w)
        self.pad = max(1, round(pad_fraction * self.side))
        self.padded = cv2.copyMakeBorder(_prepare(small), *(self.pad,) * 4, cv2.BORDER_REPLICATE)
        self.colour_match: np.ndarray | None = None

    def match_colour(self, colour: np.ndarray) -> None:
        """Match by silhouette from now on: each pixel's closeness to the product's colour."""
        dist = np.abs(self.padded - colour.astype(np.float32)).mean(2)
        self.colour_match = np.clip(1.0 - dist / FLAT_TOLERANCE, 0.0, 1.0).astype(np.float32)

    def match(self, cut: np.ndarray, s: float, window=None) -> tuple[float, int, int, int, int]:
        """(score − noise margin, x, y, w, h) of the cut-out with its long side s × the frame's."""
        import cv2

        ch, cw = cut.shape[:2]
        f = s * self.side / max(ch, cw)
        tw, th = max(3, round(cw * f)), max(3, round(ch * f))
        t = cv2.resize(cut, (tw, th), interpolation=cv2.INTER_AREA)
        mask = (t[..., 3] >= 128).astype(np.float32)
        # Products cut off by the frame still match: up to 3/4 of the template outside.
        p = max(tw, th) * 3 // 4
        frame = (-p, -p, self.w - tw + p, self.h - th + p)
        if window is not None:
            frame = (*np.maximum(frame[:2], window[:2]), *np.minimum(frame[2:], window[2:]))
        window = tuple(int(v) for v in frame)
        if self.colour_match is None:
            score, x, y = _match(
                self.padded,
                self.pad,
                _prepare(t[..., :3]),
                np.repeat(mask[..., None], 3, 2),
                window,
            )
        else:
            # The silhouette with a ring of background: a product-coloured region of the
            # cut-out's shape and size, not a part of a larger one, nor a smaller one inside it.
            r = max(1, round(FLAT_RING * max(tw, th)))
            sil = cv2.copyMakeBorder(_prepare(t[..., 3]), r, r, r, r, cv2.BORDER_CONSTANT, value=0)
            shifted = (window[0] - r, window[1] - r, window[2] - r, window[3] - r)
            score, x, y = _match(self.colour_match, self.pad, sil, None, shifted)
            x, y = x + r, y + r
        # A few-pixel template correlates well with anything: the spurious maximum of a
        # correlation over n pixels is ~1/sqrt(n), so small scales must beat that margin.
        return score - NOISE_MARGIN / np.sqrt(max(mask.sum(), 1.0)), x, y, tw, th


def locate_product(
    creative: Image.Image,
    product: Image.Image,
    *,
    work_side: int = 112,
    min_score: float = MIN_SCORE,
) -> Localization | None:
    """The box of the product's opaque pixels in the creative, or None when not found.

    Coarse to fine: the scale sweep runs where the template stays at least COARSE_MIN_PX on
    a half-resolution copy (large products: most of the correlation work), small scales on the
    full work resolution; the best candidate is then refined at full work resolution over
    nearby scales and positions only."""
    rgb = np.asarray(creative.convert("RGB"), dtype=np.uint8)
    cut = _tight_rgba(product)
    if min(cut.shape[:2]) < 2:
        return None
    # Padded once for the largest template (3/4 of MAX_SCALE past each edge).
    fine = _Level(rgb, work_side, 0.75 * MAX_SCALE)
    coarse = _Level(rgb, max(16, work_side // 2), 0.75 * MAX_SCALE)
    colour = _flat_colour(cut)
    if colour is not None:
        fine.match_colour(colour)
        coarse.match_colour(colour)
    sweep = []  # (score, x, y in fine pixels, scale)
    for s in _scales(MIN_SCALE, MAX_SCALE, 16):
        s = float(s)
        level = coarse if s * coarse.side >= COARSE_MIN_PX else fine
        score, x, y, _, _ = level.match(cut, s)
        r = fine.side / level.side
        sweep.append((score, x * r, y * r, s))
    # The coarse scores are noisier than fine ones: refine the best few scales, not one.
    result = (-2.0, 0, 0, 0, 0)
    for _, bx, by, s0 in sorted(sweep, reverse=True)[:REFINE_CANDIDATES]:
        margin = 2 + round(0.1 * s0 * fine.side)  # coarse pixels are 2 fine pixels; scale ±10 %
        window = (round(bx) - margin, round(by) - margin, round(bx) + margin, round(by) + margin)
        for s in (s0, *_scales(s0 / 1.1, s0 * 1.1, 4)):
            cand = fine.match(cut, float(s), window)
            if cand[0] > result[0]:
                result = cand
    score, x, y, tw, th = result
    if score < min_score:
        return None
    k = fine.k
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
