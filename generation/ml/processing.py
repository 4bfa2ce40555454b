"""The reference pre/post-processing around the diffuser (numpy/PIL/OpenCV, no torch, no Django).

ECCV 2024's public pipeline: the product cut-out is scaled so its longer side is 0.70–0.78 of the
canvas and centred; the inpaint mask is 255 − alpha, dilated (the diffuser may repaint a thin
rim of the product's edge, which paste-back restores); the ControlNet condition is the Canny map
of the product alone; after generation the original product pixels are pasted back.

Every function here is used identically when training the tiny base, when generating and when
fine-tuning, so a model never sees an input at serving time that it did not see in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in canvas pixels, x1/y1 exclusive


def tight_crop(product: Image.Image, threshold: int = 0) -> Image.Image:
    """The RGBA cut-out cropped to the pixels whose alpha exceeds `threshold`."""
    rgba = product.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    ys, xs = np.nonzero(alpha > threshold)
    if len(xs) == 0:
        raise ValueError("the product cut-out is fully transparent")
    return rgba.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def placement_box(
    product_size: tuple[int, int],
    canvas: int,
    *,
    scale: float = 0.74,
    anchor: str = "center",
    bottom_margin: float = 0.08,
) -> Box:
    """Where the (tight) cut-out goes: longer side = scale·canvas, centred horizontally, and
    centred vertically (anchor "center") or standing `bottom_margin`·canvas above the bottom."""
    w, h = product_size
    if w <= 0 or h <= 0:
        raise ValueError("product size must be positive")
    side = scale * canvas
    if w >= h:
        nw, nh = round(side), max(1, round(side * h / w))
    else:
        nw, nh = max(1, round(side * w / h)), round(side)
    nw, nh = min(nw, canvas), min(nh, canvas)
    x0 = (canvas - nw) // 2
    if anchor == "center":
        y0 = (canvas - nh) // 2
    elif anchor == "bottom":
        y0 = max(0, canvas - round(bottom_margin * canvas) - nh)
    else:
        raise ValueError(f"unknown anchor {anchor!r}")
    return (x0, y0, x0 + nw, y0 + nh)


def place_product(product: Image.Image, box: Box, canvas: int) -> np.ndarray:
    """(canvas, canvas, 4) uint8: the cut-out resized into `box` on a transparent canvas.

    Colour is resampled with premultiplied alpha so transparent pixels' (arbitrary) RGB never
    bleeds into the product's edge."""
    x0, y0, x1, y1 = box
    rgba = product.convert("RGBA")
    premult = rgba.convert("RGBa").resize((x1 - x0, y1 - y0), Image.LANCZOS).convert("RGBA")
    out = np.zeros((canvas, canvas, 4), np.uint8)
    out[y0:y1, x0:x1] = np.asarray(premult)
    return out


def inpaint_mask(alpha: np.ndarray, dilation: int) -> np.ndarray:
    """(H, W) uint8: 255 − alpha, dilated by `dilation` px (elliptic kernel); 255 = paint here."""
    mask = 255 - np.asarray(alpha, np.uint8)
    if dilation > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        mask = cv2.dilate(mask, k)
    return mask


def product_canny(placed: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """(H, W, 3) uint8 Canny map of the product alone (ControlNet v1.1 Canny's input format).

    The product is composited over black so its silhouette is an edge, and edges are kept only
    where the product is (alpha > 0): nothing of any background can enter the condition."""
    rgb = placed[..., :3].astype(np.float32)
    a = placed[..., 3:4].astype(np.float32) / 255.0
    gray = cv2.cvtColor(np.round(rgb * a).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    inside = cv2.dilate((placed[..., 3] > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
    edges = np.where(inside > 0, edges, 0).astype(np.uint8)
    return np.repeat(edges[..., None], 3, axis=2)


def paste_back(generated: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the product's pixels over the generated image, blended by alpha.

    Integer arithmetic: where alpha = 255 the result is exactly the cut-out's pixel."""
    gen = np.asarray(generated, np.uint32)[..., :3]
    prod = placed[..., :3].astype(np.uint32)
    a = placed[..., 3:4].astype(np.uint32)
    return ((gen * (255 - a) + prod * a + 127) // 255).astype(np.uint8)


@dataclass
class Prepared:
    """One product prepared for the diffuser on a `size` canvas (all uint8, HWC)."""

    box: Box  # placement of the tight cut-out (input to the generator, stored as provenance)
    placed: np.ndarray  # (S, S, 4) the cut-out at its box
    image: np.ndarray  # (S, S, 3) the canvas the inpainting UNet sees: product on grey
    mask: np.ndarray  # (S, S) 255 where the diffuser paints (255 − alpha, dilated)
    control: np.ndarray  # (S, S, 3) Canny of the product only


def prepare(
    product: Image.Image,
    size: int,
    *,
    scale: float = 0.74,
    anchor: str = "center",
    bottom_margin: float = 0.08,
    box: Box | None = None,
    mask_dilation: float = 0.01,
    canny_low: int = 100,
    canny_high: int = 200,
) -> Prepared:
    """Scale + place the cut-out (or use the given `box`), then mask and Canny it."""
    crop = tight_crop(product)
    if box is None:
        box = placement_box(
            crop.size, size, scale=scale, anchor=anchor, bottom_margin=bottom_margin
        )
    box = tuple(int(v) for v in box)
    placed = place_product(crop, box, size)
    mask = inpaint_mask(placed[..., 3], max(0, round(mask_dilation * size)))
    # The masked region's colour does not matter (masked out before encoding); grey keeps the
    # canvas neutral for codecs that see it.
    grey = np.full((size, size, 3), 127, np.uint8)
    image = paste_back(grey, placed)
    control = product_canny(placed, canny_low, canny_high)
    return Prepared(box=box, placed=placed, image=image, mask=mask, control=control)
