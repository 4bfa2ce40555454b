"""Decode one sample into fixed-size uint8 arrays (no torch: runs in cache-builder processes).

Arrays are channel-first (C, S, S) uint8; channels per modality are listed in
config.MODALITY_CHANNELS.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .localize import locate_product
from .maps import placed_product, sobel_edges, spectral_residual_saliency, to_gray

PIXEL_MODALITIES = ("image", "product", "placed", "mask", "edges", "saliency")

# What the feature cache stores: per-creative arrays (one row per creative) and per-product
# arrays (one row per product, however many creatives show it), with their channel counts.
STORED_CHANNELS = {
    "image": 3,
    "placed": 4,
    "placement": 1,  # placement mask in the creative frame
    "saliency": 1,
    "edges_creative": 1,
    "product": 4,  # letterboxed cut-out, RGB premultiplied + alpha
    "edges_product": 1,
    "depth": 1,
}
PRODUCT_ARRAYS = frozenset({"product", "edges_product"})
# Model modality → (stored array, channel) in channel order.
MODALITY_PARTS = {
    "image": [("image", 0), ("image", 1), ("image", 2)],
    "product": [("product", c) for c in range(4)],
    "placed": [("placed", c) for c in range(4)],
    "mask": [("product", 3), ("placement", 0)],
    "edges": [("edges_creative", 0), ("edges_product", 0)],
    "saliency": [("saliency", 0)],
    "depth": [("depth", 0)],
}


def _open(path: str | os.PathLike, what: str) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError:
        raise ValueError(f"{what} file not found: {path}")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{what} file is not a readable image: {path} ({exc})")


def letterbox_rgba(im: Image.Image, size: int) -> np.ndarray:
    """Fit an RGBA image into size x size keeping its aspect ratio; transparent padding."""
    im = im.convert("RGBA")
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(im.resize((nw, nh), Image.BILINEAR), ((size - nw) // 2, (size - nh) // 2))
    arr = np.asarray(canvas, dtype=np.uint8).copy()
    arr[..., :3] = (arr[..., :3].astype(np.uint16) * arr[..., 3:4] // 255).astype(np.uint8)
    return arr


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def process_images(
    creative: Image.Image,
    product: Image.Image,
    size: int,
    placement: Sequence[float] | None = None,
    *,
    localize: bool = True,
) -> dict[str, np.ndarray]:
    """PIL creative + PIL cut-out → {modality: (C, size, size) uint8}.

    placement: the generator's input placement (x0, y0, x1, y1) if known; otherwise the product
    is localised in the creative (`localize.locate_product`); zeros when it is not found."""
    rgb_full = creative.convert("RGB")
    image = np.asarray(rgb_full.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    prod = letterbox_rgba(product, size)
    if placement is None and localize:
        # No placement from the generator: find the product in the creative from the two
        # images, so every creative has the same inputs whoever generated it.
        found = locate_product(rgb_full, product)
        placement = found.box if found is not None else None
    if placement is not None:
        pl = placed_product(product, placement, rgb_full.size).resize((size, size), Image.BILINEAR)
        placed = np.asarray(pl, dtype=np.uint8).copy()
        place = placed[..., 3].copy()
        placed[..., :3] = (placed[..., :3].astype(np.uint16) * placed[..., 3:4] // 255).astype(
            np.uint8
        )
    else:
        place = np.zeros((size, size), np.uint8)
        placed = np.zeros((size, size, 4), np.uint8)
    gray = to_gray(image)
    prod_gray = to_gray(prod[..., :3]) * 0.5 + prod[..., 3].astype(np.float32) / 510.0
    return {
        "image": image.transpose(2, 0, 1).copy(),
        "product": prod.transpose(2, 0, 1).copy(),
        "placed": placed.transpose(2, 0, 1).copy(),
        "mask": np.stack([prod[..., 3], place]),
        "edges": np.stack([_u8(sobel_edges(gray)), _u8(sobel_edges(prod_gray))]),
        "saliency": _u8(spectral_residual_saliency(gray))[None],
    }


def process_sample(
    creative_path: str | os.PathLike,
    product_path: str | os.PathLike,
    size: int,
    placement: Sequence[float] | None = None,
    *,
    localize: bool = True,
) -> dict[str, np.ndarray]:
    return process_images(
        _open(creative_path, "creative"),
        _open(product_path, "product"),
        size,
        placement,
        localize=localize,
    )


def process_chunk(args: tuple) -> int:
    """Cache-builder worker: decode rows straight into the open memmaps (data.build_cache).

    rows: (creative row, product row or -1 when another creative writes the product's maps,
    creative path, product path, placement)."""
    root, n, n_products, size, arrays, rows = args
    mms = {
        name: np.memmap(
            Path(root) / f"{name}.u8",
            dtype=np.uint8,
            mode="r+",
            shape=(
                n_products if name in PRODUCT_ARRAYS else n,
                STORED_CHANNELS[name],
                size,
                size,
            ),
        )
        for name in arrays
    }
    # Localising the product is the costly step: only when a placement map is stored.
    localize = any(name in ("placed", "placement") for name in arrays)
    for i, p, creative_path, product_path, placement in rows:
        out = process_sample(creative_path, product_path, size, placement, localize=localize)
        stored = {
            "image": out["image"],
            "placed": out["placed"],
            "placement": out["mask"][1:2],
            "saliency": out["saliency"],
            "edges_creative": out["edges"][0:1],
            "product": out["product"],
            "edges_product": out["edges"][1:2],
        }
        for name in arrays:
            if name in PRODUCT_ARRAYS:
                if p >= 0:
                    mms[name][p] = stored[name]
            else:
                mms[name][i] = stored[name]
    for mm in mms.values():
        mm.flush()
    return len(rows)
