"""othergen: an independently written generator of labelled product creatives (RF1M classes).

Why: RFNet is trained on creatives from RFStudio's own generator. To measure how it generalises
to data from a generator it never saw, this module renders creatives with its own scene model, its
own product catalogue and its own defect mechanisms. It was written without reading
generation/ or bench/synthetic.py, and imports nothing from the repository.

    .venv/bin/python bench/othergen.py OUT_DIR --n 3000 --seed 0 --size 256 \\
        [--shared-dir ../shared] [--no-shared] [--workers 2] [--sheet] [--flat-products]
        [--source-defects]

Writes OUT_DIR/creatives/<id>.png (RGB, size x size), OUT_DIR/products/<sku>.png (the clean
cut-out: RGBA 384 x 384, product centred, alpha = mask, once per SKU), OUT_DIR/manifest.jsonl
(last, atomically) and with --sheet OUT_DIR/sheet.png (36 creatives with label:mechanism).
--flat-products paints every product in its mean colour, as generators that draw flat shapes do
(the catalogue, scenes and mechanisms stay the same). --source-defects draws half of the
`unsuitable` creatives from a damaged source photo instead: the defect is in the product cut-out
itself (cut off by the photo's edge, torn, stained, smeared), the manifest names that damaged
cut-out (its own SKU `<sku>-src<i>`, same family) and the creative pastes it back faithfully, so
comparing the creative with the cut-out shows nothing wrong.

World. A pinhole camera looks at a support plane (floor, table top or a plinth on the floor) in
front of a wall (indoor) or a sky over hills (outdoor). Everything is sized in centimetres: the
product's real height, the camera height above the plane and the horizon fix the pixels per
centimetre at every depth, so plank widths, tiles and the reference objects (cups, books, plants,
lamps, chairs, doors...) give a consistent sense of scale. The product stands on the support with
a contact and a cast shadow; its pixels are pasted back exactly from the cut-out. Scene kind,
palette (always contrasting with the product), low-key lighting, spotlights, vignette, depth of
field, mild haze, blur, noise and a JPEG round trip are drawn the same way for every class.

Products: 15 procedural kinds x 6 base products (one family each) x 2-4 colourways (SKUs), plus,
unless --no-shared, each real cut-out in SHARED/products/*.png as a family of 3 SKUs (original,
hue-rotated, brightness/contrast-shifted). Example i uses numpy.random.default_rng([seed, i]);
labels are balanced in blocks of six.

Mechanisms (params.mechanism = "<class>:<name>"; the defect touches the creative only, except
the src_* ones of --source-defects):
- available: on_floor, on_table, on_podium (the support it rests on).
- unsuitable: stain (burn or paint splash over >= 25% of the product), mosaic_smear (a large
  pixelated or motion-smeared region), diagonal_cut (a straight or torn cut removes 30-45%),
  top_cropped (the frame's top edge cuts off 30-50%), occluded (a leaf, hand, sign or box in
  front hides >= 28%). With --source-defects also src_edge_crop (the photo's edge cut 25-45%
  off; the cut-out ends there), src_cut, src_stain, src_smear (diagonal_cut, stain,
  mosaic_smear applied to the cut-out), each placed as an available creative would be.
- space_mismatch: floating (lifted clear off its support), sunk (bottom 30-50% swallowed by the
  surface), on_wall (hanging in the wall/sky region), tilted (rotated 30-70 degrees, balanced on
  a corner).
- size_mismatch: too_large, too_small (2.5-6x off the scale set by the reference objects and the
  floor texture; fully inside the frame).
- indistinctiveness: same_colour (scene painted in the product's colour), camouflage (blotches
  of the product's colours), low_light (dim scene and product, no spotlight), fog (dense haze),
  texture_match (a wallpaper made of the product itself).
- shape_hallucination: mirrored_copy (a mirrored partial copy fused to one side), stretched (the
  top or a side band stretched outwards), blob (a protrusion textured from the product),
  twin_growth (a smaller copy growing out of it). Original pixels stay on top.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = "othergen"
GENERATOR_VERSION = "1"  # the import format wants a string
CANVAS = 384  # side of the saved product cut-outs
CATALOGUE_SEED = 917_263  # the catalogue is fixed, independent of --seed

CLASSES = (
    "available",
    "unsuitable",
    "space_mismatch",
    "size_mismatch",
    "indistinctiveness",
    "shape_hallucination",
)
MECHANISMS: dict[str, list[str]] = {
    "available": ["on_floor", "on_table", "on_podium"],
    "unsuitable": ["stain", "mosaic_smear", "diagonal_cut", "top_cropped", "occluded"],
    "space_mismatch": ["floating", "sunk", "on_wall", "tilted"],
    "size_mismatch": ["too_large", "too_small"],
    "indistinctiveness": ["same_colour", "camouflage", "low_light", "fog", "texture_match"],
    "shape_hallucination": ["mirrored_copy", "stretched", "blob", "twin_growth"],
}
SUPPORTS = ("floor", "table", "podium")
SOURCE_MECHANISMS = ["src_edge_crop", "src_cut", "src_stain", "src_smear"]

# ---------------------------------------------------------------------------------------------
# Colours and small helpers

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "crimson": (140, 18, 40),
    "orange": (235, 120, 30),
    "mustard": (205, 160, 40),
    "yellow": (245, 215, 50),
    "lime": (150, 205, 60),
    "green": (40, 140, 70),
    "olive": (105, 112, 48),
    "teal": (20, 125, 130),
    "turquoise": (60, 200, 200),
    "sky-blue": (110, 170, 230),
    "navy": (25, 40, 100),
    "cobalt": (30, 80, 200),
    "purple": (110, 50, 160),
    "lilac": (190, 160, 220),
    "pink": (240, 130, 170),
    "brown": (110, 65, 35),
    "tan": (200, 160, 110),
    "cream": (240, 230, 205),
    "white": (242, 242, 240),
    "grey": (140, 140, 145),
    "charcoal": (55, 55, 60),
    "black": (24, 24, 27),
    "silver": (190, 195, 200),
}
COLOUR_NAMES = list(COLOURS)


def _colour_name(rgb: np.ndarray) -> str:
    ref = np.array(list(COLOURS.values()), np.float32) / 255
    return COLOUR_NAMES[int(np.argmin(((ref - rgb[None]) ** 2).sum(1)))]


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _hash(a: np.ndarray) -> np.ndarray:
    return np.modf(np.abs(np.sin(a * 12.9898 + 78.233) * 43758.5453))[0]


def _fbm(rng: np.random.Generator, h: int, w: int, cells: int = 4, octaves: int = 3) -> np.ndarray:
    """Smooth value noise in [0, 1] (upsampled random grids, summed over octaves)."""
    out = np.zeros((h, w), np.float32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        c = cells * 2**o
        grid = rng.random((c + 1, c + 1), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        tot += amp
        amp *= 0.5
    out -= out.min()
    return out / (out.max() + 1e-6)


def _ell_poly(cx: float, cy: float, rx: float, ry: float, ang: float, n: int = 28) -> list:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ca, sa = math.cos(ang), math.sin(ang)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return [(cx + a * ca - b * sa, cy + a * sa + b * ca) for a, b in zip(x, y, strict=True)]


def _over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA `top` over `bottom` (same shapes, float 0..1)."""
    at, ab = top[..., 3:], bottom[..., 3:]
    a = at + ab * (1 - at)
    rgb = (top[..., :3] * at + bottom[..., :3] * ab * (1 - at)) / np.maximum(a, 1e-6)
    return np.concatenate([rgb, a], -1)


def _resize_rgba(rgba: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize straight-alpha RGBA through premultiplied alpha (no dark fringes)."""
    w, h = max(1, int(round(w))), max(1, int(round(h)))
    interp = cv2.INTER_AREA if w < rgba.shape[1] else cv2.INTER_LINEAR
    pre = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    pre = cv2.resize(pre, (w, h), interpolation=interp).reshape(h, w, 4)
    a = np.clip(pre[..., 3:], 0, 1)
    return np.concatenate([np.clip(pre[..., :3] / np.maximum(a, 1e-6), 0, 1), a], -1)


def _crop_alpha(rgba: np.ndarray, thr: float = 0.02) -> np.ndarray:
    ys, xs = np.nonzero(rgba[..., 3] > thr)
    return rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


# ---------------------------------------------------------------------------------------------
# Procedural products: one drawing function per kind, shape varied by the family's p[0..7]


def _sneaker(d, p, m, s, a):
    top = 110 + 50 * p[0]
    toe = 205 + 30 * p[1]
    d.polygon(
        [
            (40, 300),
            (40, top + 50),
            (85, top),
            (150, top + 8),
            (205, toe - 45),
            (300, toe),
            (350, 262),
            (350, 300),
        ],
        fill=m,
    )
    d.rounded_rectangle([28, 285, 362, 322], radius=14, fill=s)
    d.polygon([(110, 250), (250, 214 + 20 * p[2]), (300, 262), (140, 280)], fill=a)
    for j in range(4):
        x = 112 + j * 24
        d.line([(x, top + 22 + j * 13), (x + 32, top + 36 + j * 14)], fill=s, width=6)
    d.rectangle([40, top + 55, 62, 288], fill=a)


def _boot(d, p, m, s, a):
    shaft = 30 + 70 * p[0]
    d.polygon([(110, shaft), (230, shaft), (236, 228), (330, 262), (348, 300), (110, 300)], fill=m)
    d.rounded_rectangle([100, 292, 356, 326], radius=8, fill=s)
    d.rectangle([100, 300, 150, 345], fill=s)
    d.rectangle([105, shaft, 235, shaft + 18], fill=a)
    if p[1] > 0.5:
        for j in range(6):
            y = shaft + 40 + j * 26
            d.line([(200, y), (236, y + 8)], fill=a, width=5)
    else:
        d.rectangle([200, 150, 222, 260], fill=s)


def _watch(d, p, m, s, a):
    r = 80 + 25 * p[0]
    d.rounded_rectangle([192 - 40, 10, 192 + 40, 374], radius=14, fill=s)
    for y in range(30, 370, 28):
        if abs(y - 192) > r:
            d.line([(158, y), (226, y)], fill=tuple(int(c * 0.8) for c in s), width=3)
    d.ellipse([192 - r, 192 - r, 192 + r, 192 + r], fill=m)
    dial = (245, 245, 240) if p[1] > 0.4 else (20, 20, 24)
    ink = (20, 20, 24) if p[1] > 0.4 else (240, 240, 240)
    rr = r - 14
    d.ellipse([192 - rr, 192 - rr, 192 + rr, 192 + rr], fill=dial)
    for t in range(12):
        ang = t * math.pi / 6
        d.line(
            [
                (192 + (rr - 12) * math.cos(ang), 192 + (rr - 12) * math.sin(ang)),
                (192 + (rr - 3) * math.cos(ang), 192 + (rr - 3) * math.sin(ang)),
            ],
            fill=ink,
            width=4,
        )
    d.line([(192, 192), (192 + rr * 0.55, 192 - rr * 0.3)], fill=ink, width=6)
    d.line([(192, 192), (192 - rr * 0.1, 192 - rr * 0.8)], fill=a, width=4)
    d.rectangle([192 + r - 4, 180, 192 + r + 12, 204], fill=m)


def _headphones(d, p, m, s, a):
    w = 18 + 14 * p[0]
    d.arc([70, 30, 314, 300], 180, 360, fill=m, width=int(w))
    d.arc([84, 44, 300, 286], 200, 340, fill=s, width=8)
    h = 110 + 40 * p[1]
    for x0 in (48, 258):
        d.rounded_rectangle([x0, 150, x0 + 78, 150 + h], radius=30, fill=m)
        xi = x0 + 50 if x0 < 192 else x0 - 4
        d.rounded_rectangle([xi, 165, xi + 32, 135 + h], radius=14, fill=s)
        d.ellipse([x0 + 22, 185, x0 + 52, 215], fill=a)


def _backpack(d, p, m, s, a):
    top = 60 + 40 * p[0]
    d.arc([140, top - 50, 244, top + 40], 180, 360, fill=s, width=12)
    d.rounded_rectangle([80, top, 304, 345], radius=int(50 + 30 * p[1]), fill=m)
    d.rounded_rectangle([108, 205, 276, 330], radius=24, fill=s)
    d.line([(118, 225), (266, 225)], fill=a, width=5)
    d.rectangle([70, top + 60, 86, 300], fill=s)
    d.rectangle([298, top + 60, 314, 300], fill=s)
    d.rectangle([180, 232, 204, 250], fill=a)


def _chair(d, p, m, s, a):
    bt = 20 + 50 * p[0]
    d.rounded_rectangle([110, bt, 274, 185], radius=int(10 + 30 * p[1]), fill=m)
    d.polygon([(86, 185), (298, 185), (310, 228), (74, 228)], fill=m)
    d.rectangle([74, 224, 310, 236], fill=s)
    lw = 12
    d.line([(92, 234), (82, 365)], fill=s, width=lw)
    d.line([(292, 234), (302, 365)], fill=s, width=lw)
    d.line([(130, 234), (138, 330)], fill=s, width=lw - 3)
    d.line([(254, 234), (246, 330)], fill=s, width=lw - 3)
    d.rectangle([130, bt + 25, 254, bt + 38], fill=a)


def _fan(d, p, m, s, a):
    r = 100 + 25 * p[0]
    cy = 150
    d.ellipse([112, 322, 272, 360], fill=s)
    d.rectangle([182, cy + r - 10, 202, 335], fill=s)
    for k in range(int(3 + round(2 * p[1]))):
        ang = k * 2 * math.pi / int(3 + round(2 * p[1])) + p[2]
        d.polygon(
            _ell_poly(
                192 + 0.5 * r * math.cos(ang), cy + 0.5 * r * math.sin(ang), 0.48 * r, 0.2 * r, ang
            ),
            fill=m,
        )
    d.ellipse([192 - r, cy - r, 192 + r, cy + r], outline=s, width=7)
    for f in (0.7, 0.4):
        d.ellipse([192 - r * f, cy - r * f, 192 + r * f, cy + r * f], outline=s, width=3)
    d.ellipse([172, cy - 20, 212, cy + 20], fill=a)
    d.ellipse([176, 330, 190, 340], fill=a)


def _sunglasses(d, p, m, s, a):
    lens = tuple(int(c * 0.35) for c in s)
    h = 70 + 40 * p[0]
    for x0 in (36, 206):
        box = [x0, 160, x0 + 142, 160 + h]
        if p[1] > 0.5:
            d.ellipse(box, fill=lens, outline=m, width=11)
        else:
            d.rounded_rectangle(box, radius=22, fill=lens, outline=m, width=11)
        d.line([(x0 + 25, 175), (x0 + 55, 175 + h * 0.3)], fill=(235, 235, 240), width=5)
    d.arc([170, 150, 214, 200], 200, 340, fill=m, width=10)
    d.rectangle([16, 165, 40, 178], fill=a)
    d.rectangle([344, 165, 368, 178], fill=a)


def _kettle(d, p, m, s, a):
    t = 90 + 40 * p[0]
    d.arc([230, t - 20, 340, 290], 300, 90, fill=s, width=18)
    d.polygon([(110, 210), (40, 140 + 30 * p[1]), (55, 130 + 30 * p[1]), (125, 175)], fill=m)
    d.polygon([(120, t), (264, t), (300, 345), (84, 345)], fill=m)
    d.ellipse([126, t - 22, 258, t + 18], fill=s)
    d.ellipse([176, t - 42, 208, t - 12], fill=a)
    d.rectangle([84, 330, 300, 350], fill=s)
    d.rectangle([170, 230, 214, 250], fill=a)


def _handbag(d, p, m, s, a):
    t = 140 + 40 * p[0]
    d.arc([120, t - 120 * (0.6 + 0.4 * p[1]), 264, t + 40], 180, 360, fill=s, width=14)
    d.polygon([(78, t), (306, t), (338, 335), (46, 335)], fill=m)
    d.polygon([(78, t), (306, t), (300, t + 90), (84, t + 90)], fill=s)
    d.rounded_rectangle([176, t + 75, 208, t + 105], radius=6, fill=a)
    d.line([(60, 300), (324, 300)], fill=s, width=4)


def _controller(d, p, m, s, a):
    d.ellipse([36, 130, 176, 310 + 20 * p[0]], fill=m)
    d.ellipse([208, 130, 348, 310 + 20 * p[0]], fill=m)
    d.rounded_rectangle([96, 120, 288, 250], radius=40, fill=m)
    d.rectangle([86, 170, 100, 222], fill=s)
    d.rectangle([67, 189, 119, 203], fill=s)
    cols = [(220, 40, 40), (40, 180, 60), (40, 90, 220), (240, 200, 40)]
    for k, (dx, dy) in enumerate([(0, -22), (22, 0), (0, 22), (-22, 0)]):
        c = cols[k] if p[1] > 0.5 else a
        d.ellipse([292 + dx - 10, 196 + dy - 10, 292 + dx + 10, 196 + dy + 10], fill=c)
    for cx in (150, 234):
        d.ellipse([cx - 22, 230, cx + 22, 274], fill=(40, 40, 44))
        d.ellipse([cx - 12, 240, cx + 12, 264], fill=s)


def _plant(d, p, m, s, a):
    n = int(6 + 6 * p[0])
    greens = [(40, 120, 50), (70, 150, 60), (30, 95, 55), (100, 160, 70)]
    for k in range(n):
        ang = -math.pi / 2 + (k / max(1, n - 1) - 0.5) * (1.6 + 1.2 * p[1])
        ln = 90 + 60 * ((k * 0.37 + p[2]) % 1)
        cx = 192 + 0.6 * ln * math.cos(ang)
        cy = 235 + 0.6 * ln * math.sin(ang)
        d.polygon(_ell_poly(cx, cy, 0.6 * ln, 0.16 * ln, ang), fill=greens[k % 4])
    d.polygon([(120, 235), (264, 235), (244, 360), (140, 360)], fill=m)
    d.rectangle([112, 228, 272, 252], fill=s)
    d.rectangle([140, 290, 244, 300], fill=a)


def _book(d, p, m, s, a):
    w = 170 + 40 * p[0]
    x0 = 192 - w / 2
    d.rectangle([x0, 24, x0 + w, 362], fill=m)
    d.rectangle([x0, 24, x0 + 26, 362], fill=tuple(int(c * 0.7) for c in m))
    d.rectangle([x0 + 44, 70, x0 + w - 18, 70 + 60 + 40 * p[1]], fill=a)
    for j in range(3):
        y = 220 + j * 28
        d.rectangle([x0 + 44, y, x0 + w - 30 - 25 * j, y + 10], fill=s)
    d.ellipse([x0 + w / 2 - 12, 320, x0 + w / 2 + 20, 346], fill=s)


def _camera(d, p, m, s, a):
    d.rounded_rectangle([40, 120, 344, 305], radius=22, fill=m)
    d.polygon([(130, 122), (150, 82 + 20 * p[0]), (234, 82 + 20 * p[0]), (254, 122)], fill=m)
    d.rectangle([40, 150, 344, 178], fill=s)
    r = 70 + 15 * p[1]
    d.ellipse([192 - r, 215 - r, 192 + r, 215 + r], fill=(45, 45, 50))
    d.ellipse([192 - r + 16, 215 - r + 16, 192 + r - 16, 215 + r - 16], fill=(18, 18, 22))
    d.ellipse([192 - 26, 189, 192 + 26, 241], fill=(60, 80, 120))
    d.ellipse([180, 200, 194, 214], fill=(220, 230, 255))
    d.rectangle([270, 130, 320, 148], fill=(230, 230, 225))
    d.rounded_rectangle([60, 100, 100, 122], radius=6, fill=a)


def _toaster(d, p, m, s, a):
    t = 100 + 40 * p[0]
    d.rounded_rectangle([56, t, 328, 340], radius=int(30 + 40 * p[1]), fill=m)
    for x in (110, 210):
        d.rounded_rectangle([x, t + 10, x + 66, t + 24], radius=6, fill=(30, 30, 32))
    d.rectangle([56, 280, 328, 300], fill=s)
    d.rectangle([300, t + 60, 345, t + 80], fill=a)
    d.ellipse([90, 215, 130, 255], fill=s)
    d.line([(110, 235), (122, 222)], fill=a, width=4)
    d.rectangle([80, 338, 110, 352], fill=(30, 30, 32))
    d.rectangle([274, 338, 304, 352], fill=(30, 30, 32))


@dataclass(frozen=True)
class Kind:
    name: str
    draw: object
    height_cm: float
    category: str
    materials: tuple[str, ...]
    bases: tuple[str, ...]  # one product name per base product (family)


# fmt: off
# name, drawer, real height (cm), category, materials, one base product per family
KINDS = tuple(Kind(n, d, h, c, tuple(m.split("|")), tuple(b.split("|"))) for n, d, h, c, m, b in (
    ("sneaker", _sneaker, 13, "footwear/sneakers", "canvas|leather|mesh",
     "low-top sneaker|running shoe|court sneaker|trail runner|skate shoe|slip-on sneaker"),
    ("boot", _boot, 28, "footwear/boots", "leather|suede|rubber",
     "ankle boot|chelsea boot|hiking boot|work boot|riding boot|snow boot"),
    ("watch", _watch, 22, "accessories/watches", "steel|leather-strap|sport",
     "dress watch|diver watch|field watch|chronograph|smart watch|pilot watch"),
    ("headphones", _headphones, 20, "electronics/audio", "wireless|studio|foldable",
     "over-ear headphones|on-ear headphones|gaming headset|DJ headphones|kids headphones|"
     "noise-cancelling headphones"),
    ("backpack", _backpack, 45, "bags/backpacks", "nylon|canvas|leather",
     "day backpack|laptop backpack|school backpack|hiking pack|roll-top pack|mini backpack"),
    ("chair", _chair, 88, "furniture/chairs", "wooden|upholstered|plastic",
     "dining chair|side chair|cafe chair|desk chair|lounge chair|kitchen chair"),
    ("fan", _fan, 42, "home/appliances", "metal|plastic|retro",
     "desk fan|table fan|clip fan|pedestal fan|box fan|mini fan"),
    ("sunglasses", _sunglasses, 6, "accessories/eyewear", "acetate|metal|polarised",
     "aviator sunglasses|wayfarer sunglasses|round sunglasses|sport sunglasses|"
     "cat-eye sunglasses|oversized sunglasses"),
    ("kettle", _kettle, 25, "home/kitchen", "stainless|enamel|glossy",
     "electric kettle|stovetop kettle|gooseneck kettle|travel kettle|retro kettle|tea kettle"),
    ("handbag", _handbag, 28, "bags/handbags", "leather|suede|woven",
     "tote bag|satchel|top-handle bag|bucket bag|doctor bag|shopper bag"),
    ("controller", _controller, 11, "electronics/gaming", "matte|glossy|translucent",
     "game controller|wireless gamepad|pro controller|retro gamepad|arcade pad|mobile controller"),
    ("plant", _plant, 40, "home/plants", "ceramic|terracotta|concrete",
     "potted fern|potted palm|snake plant|potted ficus|spider plant|potted monstera"),
    ("book", _book, 24, "books", "hardcover|paperback|clothbound",
     "novel|cookbook|travel guide|art book|notebook|atlas"),
    ("camera", _camera, 11, "electronics/cameras", "retro|compact|mirrorless",
     "compact camera|mirrorless camera|instant camera|film camera|vlog camera|rangefinder camera"),
    ("toaster", _toaster, 21, "home/kitchen", "chrome|matte|retro",
     "two-slot toaster|four-slot toaster|retro toaster|compact toaster|long-slot toaster|"
     "glass toaster"),
))
# fmt: on
KIND_BY_NAME = {k.name: k for k in KINDS}
SHARED_HEIGHTS_CM = {
    "bluetooth_speaker": 18,
    "game_console": 30,
    "lipstick": 8,
    "pressure_cooker": 30,
    "skincare_set": 18,
    "suitcase": 55,
    "toothpaste": 18,
}


@dataclass(frozen=True)
class Sku:
    sku: str
    family: str
    kind: str
    title: str
    category: str
    height_cm: float
    colours: tuple = ()  # procedural: (main, second, accent, p-vector)
    shared_path: str = ""  # shared: the source cut-out
    variant: int = 0


def _procedural_catalogue() -> list[Sku]:
    out = []
    for ki, kind in enumerate(KINDS):
        for b, base in enumerate(kind.bases):
            rng = np.random.default_rng([CATALOGUE_SEED, ki, b])
            p = tuple(float(v) for v in rng.random(8))
            names = rng.permutation(COLOUR_NAMES)
            second = COLOURS[str(names[0])]
            accent = COLOURS[str(names[1])]
            material = kind.materials[int(rng.integers(len(kind.materials)))]
            family = f"og-{kind.name}-{b:02d}"
            for name in names[2 : 2 + int(rng.integers(2, 5))]:
                name = str(name)
                out.append(
                    Sku(
                        sku=f"{family}-{name}",
                        family=family,
                        kind=kind.name,
                        title=f"{name.replace('-', ' ')} {material} {base}",
                        category=kind.category,
                        height_cm=kind.height_cm * (0.85 + 0.3 * p[7]),
                        colours=(COLOURS[name], second, accent, p),
                    )
                )
    return out


def _shared_catalogue(shared_dir: Path) -> list[Sku]:
    folder = shared_dir / "products"
    meta = {}
    if (folder / "products.json").exists():
        for row in json.loads((folder / "products.json").read_text()):
            meta[Path(row["file"]).stem] = row
    out = []
    for path in sorted(folder.glob("*.png")):
        stem = path.stem
        row = meta.get(stem, {})
        title = str(row.get("title", stem.replace("_", " "))).lower()
        for v, tag in enumerate(("original", "recoloured", "toned")):
            out.append(
                Sku(
                    sku=f"shared-{stem}-{tag}",
                    family=stem,
                    kind=stem,
                    title=title if v == 0 else f"{title}, {tag} colourway",
                    category=str(row.get("category", "shared")),
                    height_cm=float(SHARED_HEIGHTS_CM.get(stem, 25)),
                    shared_path=str(path),
                    variant=v,
                )
            )
    return out


def build_catalogue(shared_dir: Path | None, use_shared: bool) -> list[Sku]:
    cat = _procedural_catalogue()
    if use_shared and shared_dir is not None and (shared_dir / "products").is_dir():
        cat += _shared_catalogue(shared_dir)
    return cat


def _shade(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rounded-object shading: darker rims, a light gradient and a soft highlight."""
    h, w = rgba.shape[:2]
    mask = (rgba[..., 3] > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    rim = 0.7 + 0.3 * np.sqrt(np.clip(dist / (0.07 * max(h, w)), 0, 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx, yy = xx / w - 0.5, yy / h - 0.5
    lx = rng.uniform(-1, 1)
    grad = 1.0 - 0.25 * (xx * lx + yy * 0.6)
    hx, hy = -0.25 * lx, -0.2
    spec = 0.22 * np.exp(-((xx - hx) ** 2 + (yy - hy) ** 2) / 0.02)
    rgb = rgba[..., :3] * (rim * grad)[..., None] + spec[..., None]
    return np.concatenate([np.clip(rgb, 0, 1), rgba[..., 3:]], -1)


def _centre(rgba: np.ndarray) -> np.ndarray:
    """Crop to the alpha box and centre it on the CANVAS x CANVAS transparent canvas."""
    obj = _crop_alpha(rgba)
    scale = 0.86 * CANVAS / max(obj.shape[:2])
    obj = _resize_rgba(obj, obj.shape[1] * scale, obj.shape[0] * scale)
    out = np.zeros((CANVAS, CANVAS, 4), np.float32)
    h, w = obj.shape[:2]
    y0, x0 = (CANVAS - h) // 2, (CANVAS - w) // 2
    out[y0 : y0 + h, x0 : x0 + w] = obj
    out[..., :3] *= out[..., 3:] > 0
    return out


def render_product(sku: Sku) -> np.ndarray:
    """The clean cut-out of one SKU: float32 CANVAS x CANVAS x 4, straight alpha."""
    if sku.shared_path:
        im = Image.open(sku.shared_path).convert("RGBA")
        arr = np.asarray(im, np.float32) / 255
        if sku.variant:
            rng = np.random.default_rng([CATALOGUE_SEED, sum(map(ord, sku.family))])
            rgb8 = (arr[..., :3] * 255).astype(np.uint8)
            if sku.variant == 1:
                hsv = cv2.cvtColor(rgb8, cv2.COLOR_RGB2HSV).astype(np.int32)
                hsv[..., 0] = (hsv[..., 0] + int(rng.integers(40, 140))) % 180
                hsv[..., 1] = np.clip(hsv[..., 1] * 1.15 + 20, 0, 255)
                rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB) / 255.0
            else:
                c, b = rng.uniform(1.2, 1.4), rng.uniform(-0.22, -0.12)
                rgb = np.clip((arr[..., :3] - 0.5) * c + 0.5 + b, 0, 1)
            arr = np.concatenate([rgb.astype(np.float32), arr[..., 3:]], -1)
        return _centre(arr)
    main, second, accent, p = sku.colours
    im = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    KIND_BY_NAME[sku.kind].draw(ImageDraw.Draw(im), p, main, second, accent)
    arr = np.asarray(im, np.float32) / 255
    arr[..., 3] = cv2.GaussianBlur(arr[..., 3], (0, 0), 0.7)
    rng = np.random.default_rng([CATALOGUE_SEED, len(sku.sku), sum(map(ord, sku.family))])
    return _centre(_shade(arr, rng))


_PRODUCTS: dict[str, np.ndarray] = {}


def _product(sku: Sku) -> np.ndarray:
    if sku.sku not in _PRODUCTS:
        rgba = render_product(sku)
        if _W.get("flat"):  # --flat-products: one flat colour, as drawing generators make them
            a = rgba[..., 3:]
            rgba[..., :3] = (rgba[..., :3] * a).sum((0, 1)) / max(float(a.sum()), 1e-6)
        _PRODUCTS[sku.sku] = rgba
    return _PRODUCTS[sku.sku]


# ---------------------------------------------------------------------------------------------
# Scene: geometry, palette, rendering


@dataclass
class Layout:
    x: float  # contact point (bottom centre of the product), px
    y: float
    P: float  # product height, px
    k: float  # px per cm at the product's depth (the SCENE's scale)
    y_h: float  # horizon (eye level), px
    y_w: float  # where the support plane meets the wall, px (== y_h outdoors)
    f: float  # focal length, px

    @property
    def d(self) -> float:  # camera height above the support plane, cm
        return (self.y - self.y_h) / self.k


@dataclass
class Scene:
    setting: str  # indoor | outdoor
    support: str  # floor | table | podium
    wall: np.ndarray
    wall_tex: str
    plane: np.ndarray
    plane_tex: str
    plinth: np.ndarray
    plinth_shape: str
    lowkey: float  # 1.0 = normal
    spot: float  # spotlight gain behind the product (0 = none)
    light_x: float
    vignette: float
    window: bool
    dof: float  # background blur sigma, px at 256
    haze: float
    podium_h: float  # cm
    table_edge: float  # px below the contact point
    prompt_bits: dict = field(default_factory=dict)
    override: np.ndarray | None = None  # indistinctiveness: replaces wall/plane colours


PLANES_IN = {
    "wood": (0.55, 0.38, 0.22),
    "oak": (0.78, 0.64, 0.46),
    "tiles": None,
    "concrete": (0.6, 0.6, 0.58),
    "marble": (0.88, 0.87, 0.85),
    "carpet": None,
}
PLANES_OUT = {
    "grass": (0.3, 0.5, 0.2),
    "sand": (0.82, 0.72, 0.52),
    "paving": (0.6, 0.58, 0.55),
    "deck": (0.5, 0.36, 0.24),
}
WALL_TEX = ("plain", "stripes", "tiles", "plaster", "panel")


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum()))


def sample_scene(rng, support: str, prod_mean: np.ndarray) -> Scene:
    setting = "outdoor" if rng.random() < 0.3 else "indoor"
    for _ in range(16):
        if setting == "indoor":
            wall = _hsv(rng.random(), rng.uniform(0.05, 0.55), rng.uniform(0.45, 0.95))
            tex = str(rng.choice(list(PLANES_IN)))
            base = PLANES_IN[tex]
            plane = (
                _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.35, 0.9))
                if base is None
                else np.array(base, np.float32) * rng.uniform(0.85, 1.1)
            )
        else:
            wall = _hsv(rng.uniform(0.52, 0.65), rng.uniform(0.2, 0.6), rng.uniform(0.7, 0.98))
            tex = str(rng.choice(list(PLANES_OUT)))
            plane = np.array(PLANES_OUT[tex], np.float32) * rng.uniform(0.85, 1.15)
        plinth = _hsv(rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.97))
        near = plinth if support == "podium" else plane
        if min(_dist(wall, prod_mean), _dist(near, prod_mean)) > 0.3:
            break
    lowkey = rng.uniform(0.28, 0.45) if rng.random() < 0.25 else 1.0
    lum = float(prod_mean @ np.array([0.3, 0.59, 0.11]))
    spot = rng.uniform(0.6, 1.4) if rng.random() < 0.3 else 0.0
    if lowkey < 1 and lum < 0.35:
        spot = max(spot, rng.uniform(1.6, 2.4))
    return Scene(
        setting=setting,
        support=support,
        wall=np.clip(wall, 0, 1),
        wall_tex=str(rng.choice(WALL_TEX)),
        plane=np.clip(plane, 0, 1),
        plane_tex=tex,
        plinth=plinth,
        plinth_shape="cylinder" if rng.random() < 0.5 else "box",
        lowkey=lowkey,
        spot=spot,
        light_x=rng.uniform(-1, 1),
        vignette=rng.uniform(0.05, 0.4),
        window=setting == "indoor" and rng.random() < 0.3,
        dof=rng.uniform(0, 1.6),
        haze=rng.uniform(0, 0.15) if rng.random() < 0.3 else 0.0,
        podium_h=rng.uniform(30, 90),
        table_edge=rng.uniform(0.04, 0.12),
    )


def sample_layout(
    rng,
    S: int,
    aspect: float,
    height_cm: float,
    *,
    p_range=(0.24, 0.58),
    factor: float = 1.0,
    top_crop: float = 0.0,
    min_wall: float = 0.0,
) -> Layout:
    """Product px height P, contact point, horizon, wall line; k = P / (height * factor)."""
    P = rng.uniform(*p_range) * S
    P = min(P, 0.86 * S / aspect)
    if top_crop:
        y = max(0.3 * S, P * (1 - top_crop))
        y_h = rng.uniform(0.02, max(0.03, y / S - 0.1)) * S
    else:
        y = rng.uniform(0.66, 0.93) * S
        y = min(max(y, P + 0.05 * S), 0.96 * S)
        P = min(P, y - 0.04 * S)
        lo = max(0.15, min_wall - 0.1)
        y_h = rng.uniform(lo, max(lo + 0.01, min(0.45 + min_wall / 3, y / S - 0.12))) * S
    y_h = min(y_h, y - 0.06 * S)
    y_w = y_h + rng.uniform(0.12, 0.75) * (y - y_h)
    if min_wall:
        y_w = max(y_w, min(min_wall * S, y - 0.04 * S))
    half = P * aspect / 2
    x = rng.uniform(0.3, 0.7) * S
    x = min(max(x, half + 0.02 * S), S - half - 0.02 * S)
    return Layout(
        x=x, y=y, P=P, k=P / (height_cm * factor), y_h=y_h, y_w=y_w, f=rng.uniform(0.9, 1.5) * S
    )


def _wall_layer(rng, S: int, lay: Layout, sc: Scene) -> np.ndarray:
    h = S
    yy, xx = np.mgrid[0:h, 0:S].astype(np.float32)
    if sc.setting == "outdoor":
        top = sc.wall * rng.uniform(0.6, 0.85)
        t = np.clip(yy / max(lay.y_h, 1), 0, 1)[..., None]
        img = top * (1 - t) + np.clip(sc.wall * 1.15 + 0.05, 0, 1) * t
        clouds = _fbm(rng, h, S, 3, 3)
        img += (np.clip(clouds - 0.55, 0, 1) * 1.6)[..., None] * rng.uniform(0.3, 0.8)
        ridge = lay.y_h - (0.02 + 0.08 * _fbm(rng, 1, S, 3, 2)[0]) * S
        hill = _hsv(rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.4), rng.uniform(0.45, 0.7))
        img = np.where((yy >= ridge[None])[..., None], hill * 0.6 + img * 0.4, img)
        return np.clip(img, 0, 1)
    g = 1.05 - 0.12 * yy / S
    tex = sc.wall_tex
    if tex == "stripes":
        period = rng.uniform(0.04, 0.12) * S
        g = g * np.where((xx / period) % 1 < 0.5, 1.0, rng.uniform(0.85, 0.93))
    elif tex == "tiles":
        period = rng.uniform(0.05, 0.12) * S
        grout = ((xx / period) % 1 < 0.06) | ((yy / period) % 1 < 0.06)
        g = g * np.where(grout, 0.8, 1.0)
    elif tex == "plaster":
        g = g * (0.9 + 0.2 * _fbm(rng, h, S, 6, 3))
    elif tex == "panel":
        rail = lay.y_w - rng.uniform(0.3, 0.6) * (lay.y_w - 0.0) * 0.5
        g = g * np.where(yy > rail, 0.85, 1.0) * np.where(np.abs(yy - rail) < 0.012 * S, 1.15, 1)
    img = sc.wall[None, None] * g[..., None]
    img = img * (0.97 + 0.06 * _fbm(rng, h, S, 3, 2))[..., None]
    return np.clip(img, 0, 1)


def _plane_texture(rng, kind: str, X: np.ndarray, Z: np.ndarray, fade: np.ndarray) -> np.ndarray:
    if kind in ("wood", "oak", "deck"):
        w = rng.uniform(9, 18)
        idx = np.floor(X / w)
        off = _hash(idx) * 5
        L = rng.uniform(60, 150)
        j = np.floor(Z / L + off)
        t = (1 + 0.18 * (_hash(idx * 3.1 + j * 7.7) - 0.5)) * (
            1 + 0.035 * np.sin(Z * 2.2 + off * 20 + np.sin(X * 0.9) * 1.2)
        )
        seam = ((X / w) % 1 < 0.04) | ((Z / L + off) % 1 < 0.012)
        t = t * np.where(seam, 0.72, 1.0)
    elif kind in ("tiles", "paving"):
        s = rng.uniform(20, 60)
        gu, gv = (X / s) % 1, (Z / s) % 1
        t = np.where((gu < 0.04) | (gv < 0.04), 0.75, 1.0)
        if rng.random() < 0.5:
            chk = (np.floor(X / s) + np.floor(Z / s)) % 2
            t = t * np.where(chk > 0, rng.uniform(0.7, 0.9), 1.0)
    elif kind == "marble":
        veins = _fbm(rng, X.shape[0], X.shape[1], 5, 3)
        t = 1 - 0.15 * np.exp(-(((veins - 0.5) / 0.03) ** 2))
    else:  # concrete, carpet, grass, sand: screen-space grain
        h, w = X.shape
        t = 0.9 + 0.2 * _fbm(rng, h, w, 8, 3)
        if kind in ("grass", "carpet"):
            t = t * (0.9 + 0.2 * rng.random((h, w), dtype=np.float32))
    return 1 + (t - 1) * fade


def _plane_rows(rng, S, lay: Layout, y0: float, d_cm: float, kind: str):
    """(rows, texture) for the plane from y0 to the frame bottom, camera d_cm above it."""
    r0 = max(int(math.ceil(y0)), 0)
    if r0 >= S:
        return r0, None
    yy, xx = np.mgrid[r0:S, 0:S].astype(np.float32)
    dy = np.maximum(yy + 0.5 - lay.y_h, 0.5)
    Z = lay.f * d_cm / dy
    X = (xx - S / 2) * d_cm / dy
    fade = np.clip(dy / (0.1 * S), 0.1, 1)
    return r0, _plane_texture(rng, kind, X, Z, fade)


# Reference objects: (real height cm, width/height, drawer)


def _ref_cup(d, c):
    d.rounded_rectangle([40, 60, 150, 190], radius=12, fill=c)
    d.arc([120, 90, 185, 160], 270, 90, fill=c, width=12)


def _ref_books(d, c):
    for j, y in enumerate((130, 75, 20)):
        cc = tuple(int(v * (0.7 + 0.15 * j)) for v in c)
        d.rectangle([10 + 8 * j, y, 280 - 10 * j, y + 52], fill=cc)
        d.rectangle([10 + 8 * j, y + 40, 280 - 10 * j, y + 46], fill=(235, 230, 215))


def _ref_plant(d, c):
    for k in range(9):
        ang = -math.pi / 2 + (k / 8 - 0.5) * 2.2
        d.polygon(
            _ell_poly(60 + 40 * math.cos(ang), 110 + 70 * math.sin(ang), 42, 10, ang),
            fill=(50 + 8 * k, 110 + 6 * k, 55),
        )
    d.polygon([(30, 120), (90, 120), (82, 195), (38, 195)], fill=c)


def _ref_vase(d, c):
    d.ellipse([10, 70, 110, 195], fill=c)
    d.rectangle([40, 10, 80, 90], fill=c)


def _ref_bottle(d, c):
    d.rounded_rectangle([5, 70, 55, 198], radius=10, fill=c)
    d.rectangle([20, 10, 40, 75], fill=c)


def _ref_chair(d, c):
    d.rectangle([20, 0, 100, 100], fill=c)
    d.rectangle([10, 95, 110, 115], fill=c)
    for x in (14, 98):
        d.rectangle([x, 110, x + 8, 199], fill=c)


def _ref_stool(d, c):
    d.ellipse([5, 0, 135, 30], fill=c)
    for x0, x1 in ((20, 5), (120, 135), (60, 58)):
        d.line([(x0, 15), (x1, 199)], fill=c, width=9)


def _ref_lamp(d, c):
    d.polygon([(20, 80), (80, 80), (65, 0), (35, 0)], fill=(235, 225, 200))
    d.rectangle([46, 80, 54, 185], fill=c)
    d.ellipse([25, 180, 75, 199], fill=c)


def _ref_box(d, c):
    d.rectangle([0, 0, 259, 199], fill=(185, 145, 95))
    d.rectangle([115, 0, 145, 199], fill=(205, 180, 140))


def _ref_door(d, c):
    d.rectangle([0, 0, 92, 199], fill=tuple(int(v * 0.7) for v in c))
    d.rectangle([6, 4, 86, 199], fill=c)
    for y0, y1 in ((14, 90), (106, 188)):
        d.rectangle([16, y0, 76, y1], outline=tuple(int(v * 0.8) for v in c), width=3)
    d.ellipse([70, 100, 80, 110], fill=(200, 180, 90))


REFS = {
    "cup": (10, 0.95, _ref_cup),
    "books": (16, 1.45, _ref_books),
    "plant": (50, 0.6, _ref_plant),
    "vase": (30, 0.6, _ref_vase),
    "bottle": (30, 0.3, _ref_bottle),
    "chair": (88, 0.6, _ref_chair),
    "stool": (46, 0.7, _ref_stool),
    "lamp": (55, 0.5, _ref_lamp),
    "box": (35, 1.3, _ref_box),
}
DOOR_CM = 205


def _ref_sprite(name: str, w: int, h: int, colour: np.ndarray) -> np.ndarray:
    if name == "door":
        cw, ch, draw = 93, 200, _ref_door
    else:
        aspect, draw = REFS[name][1], REFS[name][2]
        cw, ch = int(round(200 * aspect)), 200
    im = Image.new("RGBA", (cw, ch), (0, 0, 0, 0))
    draw(ImageDraw.Draw(im), tuple(int(v * 255) for v in colour))
    arr = np.asarray(im, np.float32) / 255
    shade = np.linspace(1.08, 0.82, cw, dtype=np.float32)[None, :, None]
    arr[..., :3] = np.clip(arr[..., :3] * shade, 0, 1)
    return _resize_rgba(arr, w, h)


def _paste(img: np.ndarray, rgba: np.ndarray, x0: int, y0: int) -> np.ndarray | None:
    """Alpha-composite rgba onto img at top-left (x0, y0), clipped; returns the alpha footprint."""
    S_h, S_w = img.shape[:2]
    h, w = rgba.shape[:2]
    ax0, ay0 = max(0, -x0), max(0, -y0)
    bx0, by0 = max(0, x0), max(0, y0)
    bx1, by1 = min(S_w, x0 + w), min(S_h, y0 + h)
    if bx1 <= bx0 or by1 <= by0:
        return None
    src = rgba[ay0 : ay0 + by1 - by0, ax0 : ax0 + bx1 - bx0]
    a = src[..., 3:]
    img[by0:by1, bx0:bx1] = src[..., :3] * a + img[by0:by1, bx0:bx1] * (1 - a)
    foot = np.zeros((S_h, S_w), np.float32)
    foot[by0:by1, bx0:bx1] = a[..., 0]
    return foot


def _darken(img: np.ndarray, mask: np.ndarray, strength: float) -> None:
    img *= (1 - strength * np.clip(mask, 0, 1))[..., None]


def _ellipse_mask(S: int, cx, cy, rx, ry, blur) -> np.ndarray:
    m = np.zeros((S, S), np.float32)
    cv2.ellipse(m, (int(cx), int(cy)), (max(1, int(rx)), max(1, int(ry))), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), max(0.5, blur))


def _place_refs(rng, S, lay: Layout, sc: Scene, img, prod_w: float, y_max: float, d_cm: float):
    """Reference objects of known size standing on the plane, never overlapping the product."""
    names = list(REFS)
    placed: list[tuple[float, float]] = [(lay.x - prod_w / 2 - 4, lay.x + prod_w / 2 + 4)]
    want = int(rng.integers(1, 4))
    drawn = []
    for attempt in range(60):
        if len(drawn) >= want or (drawn and attempt >= 30):
            break
        # the heights this object can have on the visible part of the plane (relaxed later)
        name = str(rng.choice(names))
        h_cm, aspect, _ = REFS[name]
        lo = max((0.08 if attempt < 30 else 0.035) * S, (lay.y_w + 2 - lay.y_h) * h_cm / d_cm)
        hi = min(0.75 * S, (y_max - lay.y_h) * h_cm / d_cm)
        if lo >= hi:
            continue
        h_px = rng.uniform(lo, hi)
        y_o = lay.y_h + h_px * d_cm / h_cm
        w_px = h_px * aspect
        x_o = rng.uniform(0.1 * w_px, S - 0.1 * w_px)
        lo, hi = x_o - w_px / 2, x_o + w_px / 2
        # keep clear of the product, unless behind it and standing out above it
        behind = y_o < lay.y - 0.05 * S and y_o - h_px < lay.y - lay.P - 0.08 * S
        if any(lo < b and hi > a for a, b in placed[1 if behind else 0 :]):
            continue
        placed.append((lo, hi))
        drawn.append((y_o, name, x_o, w_px, h_px))
    for y_o, name, x_o, w_px, h_px in sorted(drawn):
        col = _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.35, 0.85))
        col = 0.65 * col + 0.35 * (sc.wall if sc.override is None else sc.override[0, 0])
        spr = _ref_sprite(name, int(w_px), int(h_px), col)
        sh = _ellipse_mask(S, x_o, y_o, w_px * 0.55, max(2, w_px * 0.08), w_px * 0.08)
        _darken(img, sh, 0.4)
        _paste(img, spr, int(x_o - spr.shape[1] / 2), int(y_o - spr.shape[0]))
    return [n for _, n, *_ in drawn]


def render_background(rng, S: int, lay: Layout, sc: Scene, prod_w: float) -> np.ndarray:
    img = _wall_layer(rng, S, lay, sc)
    if sc.override is not None:
        img = sc.override * (0.85 + 0.15 * img.mean(-1, keepdims=True) / (sc.wall.mean() + 1e-3))
    d_floor = lay.d + (sc.podium_h if sc.support == "podium" else 0)
    if sc.window:
        wx = rng.uniform(0.05, 0.7) * S
        ww, top = rng.uniform(0.15, 0.3) * S, rng.uniform(0.02, 0.15) * S
        bot = max(top + 0.1 * S, lay.y_w - rng.uniform(0.1, 0.3) * S)
        if bot - top > 0.08 * S:
            sky = _hsv(rng.uniform(0.52, 0.62), rng.uniform(0.1, 0.35), 0.98)
            x0, x1, y0, y1 = int(wx), int(wx + ww), int(top), int(bot)
            img[y0:y1, x0:x1] = sky
            fr = max(2, int(0.012 * S))
            img[y0:y1, (x0 + x1) // 2 - fr // 2 : (x0 + x1) // 2 + fr // 2 + 1] = 0.92
            img[(y0 + y1) // 2 - fr // 2 : (y0 + y1) // 2 + fr // 2 + 1, x0:x1] = 0.92
    # the support plane
    y_plane0 = lay.y_w if sc.setting == "indoor" else lay.y_h + 0.5
    if sc.support == "table":
        r0, tex = _plane_rows(rng, S, lay, y_plane0, lay.d, sc.plane_tex)
        edge = int(min(S, lay.y + sc.table_edge * S))
        base = sc.plane if sc.override is None else sc.override[r0:]
        if tex is not None:
            img[r0:] = np.clip(base * tex[..., None], 0, 1)
        if edge < S:
            thick = max(3, int(lay.k * 4))
            img[edge : edge + thick] = (
                sc.plane * 0.7 if sc.override is None else img[edge : edge + thick] * 0.7
            )
            under = img[edge + thick :] * 0.35
            img[edge + thick :] = under
    else:
        d_cm = d_floor
        r0, tex = _plane_rows(rng, S, lay, y_plane0, d_cm, sc.plane_tex)
        base = sc.plane if sc.override is None else sc.override[r0:]
        if tex is not None:
            img[r0:] = np.clip(base * tex[..., None], 0, 1)
        if sc.setting == "indoor" and r0 < S:
            img[max(0, r0 - 1) : r0 + 1] *= 0.8  # skirting line
    # a door on the wall, standing on the floor (gives a 2 m scale)
    refs = []
    if sc.setting == "indoor" and sc.support != "table" and rng.random() < 0.5:
        h_door = DOOR_CM * (lay.y_w - lay.y_h) / d_floor
        if 0.2 * S < h_door < 1.4 * lay.y_w:
            w_door = h_door * 0.46
            xd = rng.uniform(0.1, 0.9) * S
            col = _hsv(rng.random(), rng.uniform(0.05, 0.4), rng.uniform(0.4, 0.9))
            spr = _ref_sprite("door", int(w_door), int(h_door), col)
            _paste(img, spr, int(xd - w_door / 2), int(lay.y_w - h_door))
            refs.append("door")
    y_max = (min(S, lay.y + sc.table_edge * S) - 2) if sc.support == "table" else S - 2
    if sc.support == "podium":
        y_max = lay.y - 0.04 * S
    refs += _place_refs(
        rng, S, lay, sc, img, prod_w * 1.3, y_max, d_floor if sc.support == "podium" else lay.d
    )
    if sc.support == "podium":
        _draw_plinth(rng, S, lay, sc, img, prod_w)
    sc.prompt_bits["refs"] = refs
    return img


def _draw_plinth(rng, S, lay: Layout, sc: Scene, img: np.ndarray, prod_w: float) -> None:
    rx = max(prod_w * rng.uniform(0.65, 1.0), 0.08 * S)
    ry = max(2.0, rx * (lay.y - lay.y_h) / lay.f * 0.9 + 0.02 * S)
    col = sc.plinth if sc.override is None else sc.override[int(min(lay.y, S - 1)), int(lay.x)]
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    u = (xx - lay.x) / rx
    body = (np.abs(u) <= 1) & (yy >= lay.y)
    if sc.plinth_shape == "cylinder":
        shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - u**2, 0, 1)) * (1 - 0.3 * u * sc.light_x)
    else:
        shade = np.where(u * sc.light_x > 0.3, 0.6, 0.85) + 0 * u
    img[body] = (col[None] * shade[body][:, None]) * 0.9
    top = ((xx - lay.x) / rx) ** 2 + ((yy - lay.y) / ry) ** 2 <= 1
    if sc.plinth_shape == "box":
        top = (np.abs(u) <= 1) & (np.abs(yy - lay.y) <= ry)
    img[top] = np.clip(col * 1.08, 0, 1)


def light_background(rng, S, lay: Layout, sc: Scene, img: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    g = 1 + 0.15 * sc.light_x * (xx - 0.5) * 2
    g = g * (1 - sc.vignette * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2)
    g = g * sc.lowkey
    if sc.spot:
        cy = (lay.y - 0.5 * lay.P) / S
        r2 = ((xx - lay.x / S) ** 2 + (yy - cy) ** 2) / (0.09 + 0.5 * (lay.P / S) ** 2)
        g = g * (1 + sc.spot * np.exp(-r2))
    img = np.clip(img * g[..., None], 0, 1)
    if sc.dof > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), sc.dof * S / 256)
    return img


# ---------------------------------------------------------------------------------------------
# The product in the frame and the mechanisms


@dataclass
class Ctx:
    rng: np.random.Generator
    S: int
    label: str
    mech: str
    sku: Sku
    lay: Layout
    sc: Scene
    prod: np.ndarray  # straight-alpha RGBA at frame scale (possibly defective)
    ax: float  # anchor in prod: the point that sits on the contact point
    ay: float
    area: float  # alpha area of the clean product at frame scale
    dx: float = 0.0  # placement offset from the contact point, px
    dy: float = 0.0
    shadow: str = "contact"  # contact | detached | none
    clip_below: float | None = None  # hide product rows below this y (sunk)
    allow_top_crop: bool = False
    foot: np.ndarray | None = None  # product alpha in the frame after compositing


def _pad(ctx: Ctx, t=0, b=0, left=0, r=0) -> None:
    t, b, left, r = (max(0, int(math.ceil(v))) for v in (t, b, left, r))
    ctx.prod = np.pad(ctx.prod, ((t, b), (left, r), (0, 0)))
    ctx.ax += left
    ctx.ay += t


def _mask(ctx: Ctx) -> np.ndarray:
    return ctx.prod[..., 3] > 0.5


# -- unsuitable


def _stain(ctx: Ctx) -> None:
    rng, m = ctx.rng, _mask(ctx)
    h, w = m.shape
    ys, xs = np.nonzero(m)
    j = int(rng.integers(len(ys)))
    cy, cx = ys[j], xs[j]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = _fbm(rng, h, w, 5, 3) - 0.5
    r = math.sqrt(0.4 * m.sum() / math.pi)
    for _ in range(8):
        blob = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r + 0.9 * noise < 1
        if (blob & m).sum() >= 0.3 * m.sum():
            break
        r *= 1.2
    rgb = ctx.prod[..., :3]
    if rng.random() < 0.5:  # burn: charred core, orange-brown rim
        rim = cv2.dilate(blob.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        ring = rim & ~blob & m
        rgb[ring] = rgb[ring] * 0.4 + np.array([0.45, 0.22, 0.05]) * 0.6
        core = blob & m
        rgb[core] = np.array([0.1, 0.07, 0.05]) + 0.08 * noise[core][:, None]
    else:  # paint splash, also a few drops outside the product
        paint = _hsv(rng.random(), rng.uniform(0.6, 1), rng.uniform(0.7, 1))
        for _ in range(int(rng.integers(3, 8))):
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(1.0, 1.6) * r
            rr = rng.uniform(0.05, 0.15) * r
            blob |= (yy - cy - dist * math.sin(ang)) ** 2 + (
                xx - cx - dist * math.cos(ang)
            ) ** 2 < rr**2
        rgb[blob] = paint * (0.9 + 0.2 * noise[blob][:, None])
        ctx.prod[..., 3][blob] = 1.0
    ctx.prod[..., :3] = np.clip(rgb, 0, 1)


def _mosaic_smear(ctx: Ctx) -> None:
    rng, m = ctx.rng, _mask(ctx)
    h, w = m.shape
    for _ in range(10):
        rw, rh = int(w * rng.uniform(0.6, 0.9)), int(h * rng.uniform(0.45, 0.7))
        x0, y0 = int(rng.integers(0, w - rw + 1)), int(rng.integers(0, h - rh + 1))
        if m[y0 : y0 + rh, x0 : x0 + rw].sum() >= 0.35 * m.sum():
            break
    region = ctx.prod[y0 : y0 + rh, x0 : x0 + rw]
    pre = region[..., :3] * region[..., 3:]
    if rng.random() < 0.5:
        b = max(4, int(min(w, h) * rng.uniform(0.1, 0.18)))
        small = cv2.resize(pre, (max(1, rw // b), max(1, rh // b)), interpolation=cv2.INTER_AREA)
        small_a = cv2.resize(
            region[..., 3], (max(1, rw // b), max(1, rh // b)), interpolation=cv2.INTER_AREA
        )
        pre = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST).reshape(rh, rw, 3)
        a = cv2.resize(small_a, (rw, rh), interpolation=cv2.INTER_NEAREST)
    else:
        L = max(5, int(w * rng.uniform(0.3, 0.5)))
        k = np.zeros((L, L), np.float32)
        ang = rng.uniform(0, math.pi)
        c = (L - 1) / 2
        cv2.line(
            k,
            (int(c - c * math.cos(ang)), int(c - c * math.sin(ang))),
            (int(c + c * math.cos(ang)), int(c + c * math.sin(ang))),
            1.0,
            1,
        )
        k /= k.sum()
        pre = cv2.filter2D(pre, -1, k, borderType=cv2.BORDER_REFLECT)
        a = cv2.filter2D(region[..., 3], -1, k, borderType=cv2.BORDER_REFLECT)
    a = np.maximum(a, region[..., 3])
    region[..., :3] = np.clip(pre / np.maximum(a, 1e-3)[..., None], 0, 1)
    region[..., 3] = a


def _diagonal_cut(ctx: Ctx) -> None:
    rng, m = ctx.rng, _mask(ctx)
    h, w = m.shape
    ang = rng.uniform(-math.pi * 0.95, -math.pi * 0.05)  # normal points up-left .. up-right
    nx, ny = math.cos(ang), math.sin(ang)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    s = (xx - w / 2) * nx + (yy - h / 2) * ny
    if rng.random() < 0.5:  # torn edge
        s = s + (_fbm(rng, h, w, 8, 2) - 0.5) * 0.12 * max(h, w)
    thr = np.quantile(s[m], 1 - rng.uniform(0.3, 0.45))
    ctx.prod[..., 3][s > thr] = 0


def _top_cropped(ctx: Ctx) -> None:
    ctx.allow_top_crop = True


def _occluder_layer(ctx: Ctx, scale: float, kind: str, seed_xy) -> np.ndarray:
    S, lay = ctx.S, ctx.lay
    h, w = ctx.prod.shape[:2]
    bx0 = lay.x + ctx.dx - ctx.ax
    by0 = lay.y + ctx.dy - ctx.ay
    cx, cy = bx0 + seed_xy[0] * w, by0 + seed_xy[1] * h
    size = scale * max(w, h)
    im = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    if kind == "leaf":
        for k in range(3):
            ang = -0.6 + 0.6 * k + seed_xy[0]
            ex, ey = cx + 0.3 * size * math.cos(ang + 1.5), cy + 0.3 * size * math.sin(ang + 1.5)
            d.polygon(
                _ell_poly(ex, ey, 0.55 * size, 0.2 * size, ang),
                fill=(30 + 20 * k, 100 + 25 * k, 40),
            )
            d.line(
                [
                    (ex - 0.5 * size * math.cos(ang), ey - 0.5 * size * math.sin(ang)),
                    (ex + 0.5 * size * math.cos(ang), ey + 0.5 * size * math.sin(ang)),
                ],
                fill=(120, 170, 90),
                width=max(1, int(size * 0.015)),
            )
    elif kind == "hand":
        skin = (224, 172, 135) if seed_xy[1] > 0.5 else (150, 100, 70)
        side = 1 if cx > S / 2 else -1
        d.polygon(
            [
                (cx, cy - 0.18 * size),
                (cx + side * S, cy - 0.25 * size),
                (cx + side * S, cy + 0.25 * size),
                (cx, cy + 0.18 * size),
            ],
            fill=skin,
        )
        d.ellipse([cx - 0.3 * size, cy - 0.3 * size, cx + 0.3 * size, cy + 0.3 * size], fill=skin)
        for f in range(4):
            fy = cy - 0.24 * size + f * 0.16 * size
            fx0, fx1 = cx - side * 0.7 * size, cx + side * 0.1 * size
            d.rounded_rectangle(
                [min(fx0, fx1), fy, max(fx0, fx1), fy + 0.12 * size],
                radius=int(0.06 * size),
                fill=skin,
            )
    elif kind == "sign":
        bw, bh = 0.75 * size, 0.5 * size
        d.rectangle([cx - 0.03 * size, cy, cx + 0.03 * size, S], fill=(110, 80, 50))
        d.rectangle(
            [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2],
            fill=(245, 240, 225),
            outline=(40, 40, 40),
            width=max(1, int(size * 0.02)),
        )
        for j in range(3):
            yl = cy - bh / 3 + j * bh / 4
            d.rectangle(
                [cx - bw / 3, yl, cx + bw / 3 - j * bw / 10, yl + bh / 10], fill=(200, 40, 40)
            )
    else:  # a cardboard box standing in front
        bw, bh = 0.8 * size, 0.6 * size
        y1 = lay.y + 0.05 * S
        d.rectangle([cx - bw / 2, y1 - bh, cx + bw / 2, y1 + 0.05 * S], fill=(180, 140, 90))
        d.rectangle([cx - bw / 10, y1 - bh, cx + bw / 10, y1 + 0.05 * S], fill=(205, 180, 140))
    arr = np.asarray(im, np.float32) / 255
    yy = np.arange(S, dtype=np.float32)[:, None, None]
    arr[..., :3] *= 0.85 + 0.25 * (1 - yy / S)
    return arr


def _occluded_post(ctx: Ctx, img: np.ndarray) -> np.ndarray:
    rng = ctx.rng
    kind = str(rng.choice(["leaf", "hand", "sign", "box"]))
    xy = (rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.6) if kind != "box" else 0.9)
    area = ctx.foot.sum() if ctx.foot is not None else 1.0
    scale = rng.uniform(0.45, 0.7)
    for _ in range(6):
        layer = _occluder_layer(ctx, scale, kind, xy)
        if ctx.foot is None or (layer[..., 3] * ctx.foot).sum() >= 0.28 * area:
            break
        scale *= 1.2
    a = layer[..., 3:]
    return layer[..., :3] * a + img * (1 - a)


# -- space mismatch


def _floating(ctx: Ctx) -> None:
    ctx.dy = -ctx.rng.uniform(0.3, 0.7) * ctx.lay.P
    ctx.shadow = "detached" if ctx.rng.random() < 0.6 else "none"


def _sunk(ctx: Ctx) -> None:
    ctx.dy = ctx.rng.uniform(0.3, 0.5) * ctx.lay.P
    ctx.clip_below = ctx.lay.y
    ctx.shadow = "none"


def _on_wall(ctx: Ctx) -> None:
    lay = ctx.lay
    target = (lay.y_w if ctx.sc.setting == "indoor" else lay.y_h) - ctx.rng.uniform(
        0.05, 0.15
    ) * ctx.S
    ctx.dy = target - lay.y
    ctx.shadow = "none"


def _tilted(ctx: Ctx) -> None:
    rng = ctx.rng
    ang = rng.uniform(30, 70) * (1 if rng.random() < 0.5 else -1)
    h, w = ctx.prod.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
    cos, sin = abs(M[0, 0]), abs(M[0, 1])
    nw, nh = int(h * sin + w * cos) + 2, int(h * cos + w * sin) + 2
    M[0, 2] += nw / 2 - w / 2
    M[1, 2] += nh / 2 - h / 2
    pre = np.concatenate([ctx.prod[..., :3] * ctx.prod[..., 3:], ctx.prod[..., 3:]], -1)
    pre = cv2.warpAffine(pre, M, (nw, nh), flags=cv2.INTER_LINEAR)
    a = np.clip(pre[..., 3:], 0, 1)
    ctx.prod = np.concatenate([np.clip(pre[..., :3] / np.maximum(a, 1e-6), 0, 1), a], -1)
    ys, xs = np.nonzero(a[..., 0] > 0.5)
    low = ys.max()
    ctx.ay = float(low)
    ctx.ax = float(xs[ys >= low - 1].mean())
    if rng.random() < 0.4:
        ctx.dy = -rng.uniform(0.05, 0.2) * ctx.lay.P
        ctx.shadow = "detached"


# -- indistinctiveness (scene overrides are set before the background is rendered)


def _product_colours(ctx: Ctx, n: int) -> np.ndarray:
    m = _mask(ctx)
    px = ctx.prod[..., :3][m]
    idx = ctx.rng.integers(0, len(px), n)
    return px[idx]


def _same_colour(ctx: Ctx) -> None:
    S, rng = ctx.S, ctx.rng
    mean = ctx.prod[..., :3][_mask(ctx)].mean(0)
    base = np.clip(mean * rng.uniform(0.9, 1.08, 3), 0, 1)
    g = 0.9 + 0.2 * _fbm(rng, S, S, 4, 2)
    ctx.sc.override = np.clip(base[None, None] * g[..., None], 0, 1).astype(np.float32)
    ctx.sc.spot, ctx.sc.lowkey = 0.0, 1.0


def _camouflage(ctx: Ctx) -> None:
    S, rng = ctx.S, ctx.rng
    cols = _product_colours(ctx, int(rng.integers(3, 5)))
    cells = int(rng.integers(4, 10))
    field_ = np.stack([_fbm(rng, S, S, cells, 2) for _ in range(len(cols))], 0)
    idx = np.argmax(field_, 0)
    ctx.sc.override = cols[idx].astype(np.float32)
    ctx.sc.spot, ctx.sc.lowkey = 0.0, 1.0


def _texture_match(ctx: Ctx) -> None:
    S, rng = ctx.S, ctx.rng
    base = ctx.prod[..., :3][_mask(ctx)].mean(0)
    out = np.empty((S, S, 3), np.float32)
    out[:] = base
    h, w = ctx.prod.shape[:2]
    step = max(8, int(ctx.lay.P * rng.uniform(0.35, 0.7)))
    for gy in range(-1, S // step + 2):
        for gx in range(-1, S // step + 2):
            s = step * rng.uniform(0.9, 1.4) / max(h, w)
            tile = _resize_rgba(ctx.prod, w * s, h * s)
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            x0 = int(gx * step + rng.uniform(-0.3, 0.3) * step + (gy % 2) * step / 2)
            _paste(out, tile, x0, int(gy * step + rng.uniform(-0.3, 0.3) * step))
    ctx.sc.override = np.clip(out * 0.95, 0, 1)
    ctx.sc.spot, ctx.sc.lowkey = 0.0, 1.0


def _low_light(ctx: Ctx) -> None:
    ctx.sc.lowkey = ctx.rng.uniform(0.28, 0.45)
    ctx.sc.spot = 0.0
    ctx.prod[..., :3] *= ctx.sc.lowkey * ctx.rng.uniform(0.55, 0.8)


def _fog_post(ctx: Ctx, img: np.ndarray) -> np.ndarray:
    rng, S = ctx.rng, ctx.S
    f = rng.uniform(0.6, 0.78) * (0.9 + 0.2 * _fbm(rng, S, S, 3, 2))[..., None]
    col = np.clip(img.mean((0, 1)) * 0.4 + 0.55, 0, 1)
    return cv2.GaussianBlur(img * (1 - f) + col * f, (0, 0), 0.8 * S / 256)


# -- shape hallucination (extra structure outside the product's mask, original on top)


def _mirrored_copy(ctx: Ctx) -> None:
    rng = ctx.rng
    h, w = ctx.prod.shape[:2]
    frac = rng.uniform(0.45, 0.75)
    cw = int(w * frac)
    overlap = int(w * rng.uniform(0.15, 0.3))
    orig = ctx.prod.copy()
    right = rng.random() < 0.5
    part = orig[:, ::-1][:, :cw] if right else orig[:, ::-1][:, w - cw :]
    _pad(ctx, left=0 if right else cw - overlap, r=cw - overlap if right else 0)
    layer = np.zeros_like(ctx.prod)
    x0 = w - overlap if right else 0
    layer[:, x0 : x0 + cw] = part
    top = np.zeros_like(ctx.prod)
    ox = 0 if right else cw - overlap
    top[:, ox : ox + w] = orig
    ctx.prod = _over(top, layer)


def _extend_top(orig: np.ndarray, rng) -> tuple[np.ndarray, int]:
    """Stretch the top band of `orig` upwards into a tapered, slightly skewed extension."""
    h, w = orig.shape[:2]
    band = max(2, int(h * rng.uniform(0.15, 0.3)))
    ext = int(h * rng.uniform(0.35, 0.6))
    pre = np.concatenate([orig[:band, :, :3] * orig[:band, :, 3:], orig[:band, :, 3:]], -1)
    pre = cv2.resize(pre, (w, ext + band), interpolation=cv2.INTER_LINEAR)
    half, cx = rng.uniform(0.3, 0.45) * w, w / 2 + rng.uniform(-0.2, 0.2) * w
    src = np.float32([[0, 0], [w, 0], [w, ext + band], [0, ext + band]])
    dst = np.float32([[cx - half, 0], [cx + half, 0], [w, ext + band], [0, ext + band]])
    M = cv2.getPerspectiveTransform(src, dst)
    pre = cv2.warpPerspective(pre, M, (w, ext + band), flags=cv2.INTER_LINEAR)
    a = np.clip(pre[..., 3:], 0, 1)
    layer = np.zeros((h + ext, w, 4), np.float32)
    layer[: ext + band] = np.concatenate([np.clip(pre[..., :3] / np.maximum(a, 1e-6), 0, 1), a], -1)
    top = np.zeros_like(layer)
    top[ext:] = orig
    return _over(top, layer), ext


def _stretched(ctx: Ctx) -> None:
    rng = ctx.rng
    side = str(rng.choice(["top", "top", "left", "right"]))
    if side == "top":
        ctx.prod, ext = _extend_top(ctx.prod, rng)
        ctx.ay += ext
    elif side == "left":  # the left band, via the transposed image
        out, ext = _extend_top(ctx.prod.transpose(1, 0, 2), rng)
        ctx.prod = np.ascontiguousarray(out.transpose(1, 0, 2))
        ctx.ax += ext
    else:
        out, ext = _extend_top(ctx.prod[:, ::-1].transpose(1, 0, 2), rng)
        ctx.prod = np.ascontiguousarray(out.transpose(1, 0, 2)[:, ::-1])


def _blob(ctx: Ctx) -> None:
    rng = ctx.rng
    h, w = ctx.prod.shape[:2]
    r = int(min(h, w) * rng.uniform(0.3, 0.42) + 2)
    _pad(ctx, r * 2, 0, r * 2, r * 2)
    m = _mask(ctx)
    H, W = m.shape
    ys, xs = np.nonzero(m)
    ang = rng.uniform(-math.pi, 0)  # upwards or sideways
    cy0, cx0 = ys.mean(), xs.mean()
    # walk from the centre outwards until leaving the mask: that is the attachment point
    t = 0.0
    while True:
        py, px = int(cy0 + t * math.sin(ang)), int(cx0 + t * math.cos(ang))
        if not (0 <= py < H and 0 <= px < W) or not m[py, px]:
            break
        t += 2
    bx, by = px + 0.55 * r * math.cos(ang), py + 0.55 * r * math.sin(ang)
    shape = np.zeros((H, W), np.float32)
    cv2.ellipse(
        shape,
        (int(bx), int(by)),
        (r, int(r * rng.uniform(0.6, 1.0))),
        math.degrees(ang),
        0,
        360,
        1.0,
        -1,
    )
    shape = cv2.GaussianBlur(shape, (0, 0), 1.0)
    # texture: the product's own pixels just inside the attachment point, on its local colour
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    near = m & ((yy - py) ** 2 + (xx - px) ** 2 < (1.2 * r) ** 2)
    fill = ctx.prod[..., :3][near if near.any() else m].mean(0)
    tex = np.empty((H, W, 3), np.float32)
    tex[:] = fill
    qx, qy = int(px - 0.9 * r * math.cos(ang)), int(py - 0.9 * r * math.sin(ang))
    patch = ctx.prod[max(0, qy - r) : qy + r, max(0, qx - r) : qx + r]
    if patch.size and patch[..., 3].mean() > 0.3:
        pr = _resize_rgba(patch, 2 * r, 2 * r)
        pr_rgb = pr[..., :3] * pr[..., 3:] + fill * (1 - pr[..., 3:])
        ty0, tx0 = int(by - r), int(bx - r)
        ty1, tx1 = min(H, ty0 + 2 * r), min(W, tx0 + 2 * r)
        tex[max(0, ty0) : ty1, max(0, tx0) : tx1] = pr_rgb[
            max(0, -ty0) : ty1 - ty0, max(0, -tx0) : tx1 - tx0
        ]
    dist = cv2.distanceTransform((shape > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    tex = tex * (0.72 + 0.33 * np.sqrt(np.clip(dist / (0.5 * r), 0, 1)))[..., None]
    layer = np.concatenate([np.clip(tex, 0, 1), shape[..., None]], -1)
    ctx.prod = _over(ctx.prod, layer)


def _twin_growth(ctx: Ctx) -> None:
    rng = ctx.rng
    h, w = ctx.prod.shape[:2]
    s = rng.uniform(0.45, 0.65)
    twin = _resize_rgba(ctx.prod, w * s, h * s)
    th, tw = twin.shape[:2]
    if rng.random() < 0.5:  # out of the top
        ox = int(rng.uniform(0.0, 1.0) * (w - tw))
        oy = -int(th * rng.uniform(0.6, 0.8))
    else:  # out of a side, upper half
        ox = w - int(tw * 0.25) if rng.random() < 0.5 else -int(tw * 0.75)
        oy = int(rng.uniform(0.0, 0.3) * h)
    pl, pt = max(0, -ox), max(0, -oy)
    pr, pb = max(0, ox + tw - w), max(0, oy + th - h)
    orig = ctx.prod.copy()
    _pad(ctx, pt, pb, pl, pr)
    layer = np.zeros_like(ctx.prod)
    layer[oy + pt : oy + pt + th, ox + pl : ox + pl + tw] = twin
    top = np.zeros_like(ctx.prod)
    top[pt : pt + h, pl : pl + w] = orig
    ctx.prod = _over(top, layer)


def _source_edge_crop(src) -> None:
    """The product ran off its source photo's edge: 25-45 % of it is gone along a straight line
    and the cut-out's canvas ends at that line, as a cut-out made from that photo would."""
    ys, xs = np.nonzero(src.prod[..., 3] > 0.5)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    f = src.rng.uniform(0.25, 0.45)
    side = str(src.rng.choice(["top", "left", "right", "bottom"]))
    if side == "top":
        src.prod = src.prod[int(y0 + f * (y1 - y0)) :]
    elif side == "bottom":
        src.prod = src.prod[: int(y1 - f * (y1 - y0))]
    elif side == "left":
        src.prod = src.prod[:, int(x0 + f * (x1 - x0)) :]
    else:
        src.prod = src.prod[:, : int(x1 - f * (x1 - x0))]
    src.prod = np.ascontiguousarray(src.prod)


def _damaged_source(rng, mech: str, canvas: np.ndarray) -> np.ndarray:
    """--source-defects: the product photo itself is unusable (straight-alpha RGBA, float)."""
    src = SimpleNamespace(rng=rng, prod=canvas.copy())  # these hooks read only rng and prod
    {
        "src_edge_crop": _source_edge_crop,
        "src_cut": _diagonal_cut,
        "src_stain": _stain,
        "src_smear": _mosaic_smear,
    }[mech](src)
    return src.prod


# Mechanism tables: a layout hook (before the layout is sampled), a product/scene hook (before
# the background is rendered) and a post hook (after the product is composited).
LAYOUT_HOOKS = {
    "too_large": lambda rng: {"p_range": (0.32, 0.86), "factor": rng.uniform(2.5, 6)},
    "too_small": lambda rng: {"p_range": (0.07, 0.22), "factor": 1 / rng.uniform(2.5, 6)},
    "top_cropped": lambda rng: {"p_range": (0.5, 0.8), "top_crop": rng.uniform(0.3, 0.5)},
    "on_wall": lambda rng: {"min_wall": rng.uniform(0.55, 0.75)},
}
PRE_HOOKS = {
    "stain": _stain,
    "mosaic_smear": _mosaic_smear,
    "diagonal_cut": _diagonal_cut,
    "top_cropped": _top_cropped,
    "floating": _floating,
    "sunk": _sunk,
    "on_wall": _on_wall,
    "tilted": _tilted,
    "same_colour": _same_colour,
    "camouflage": _camouflage,
    "texture_match": _texture_match,
    "low_light": _low_light,
    "mirrored_copy": _mirrored_copy,
    "stretched": _stretched,
    "blob": _blob,
    "twin_growth": _twin_growth,
}
POST_HOOKS = {"occluded": _occluded_post, "fog": _fog_post}


def _fit(ctx: Ctx) -> None:
    """Keep the (possibly extended) product inside the frame: shift sideways, else shrink."""
    S, lay = ctx.S, ctx.lay
    h, w = ctx.prod.shape[:2]
    cy = lay.y + ctx.dy
    s = 1.0
    if not ctx.allow_top_crop and ctx.ay > cy - 2:
        s = min(s, (cy - 2) / max(ctx.ay, 1))
    if h - ctx.ay > 0 and cy + (h - ctx.ay) > S - 1 and ctx.clip_below is None:
        s = min(s, (S - 1 - cy) / max(h - ctx.ay, 1))
    s = min(s, (S - 4) / w)
    if s < 1:
        s = max(s, 0.05)
        ctx.prod = _resize_rgba(ctx.prod, w * s, h * s)
        ctx.ax, ctx.ay = ctx.ax * s, ctx.ay * s
        h, w = ctx.prod.shape[:2]
    left = lay.x + ctx.dx - ctx.ax
    if left < 2:
        ctx.dx += 2 - left
    elif left + w > S - 2:
        ctx.dx -= left + w - (S - 2)


def _shadows(ctx: Ctx, img: np.ndarray) -> None:
    S, lay = ctx.S, ctx.lay
    m = ctx.prod[..., 3]
    h, w = m.shape
    rows = np.nonzero(m.max(1) > 0.5)[0]
    base = m[max(0, rows.max() - max(2, h // 12)) : rows.max() + 1] > 0.5
    cols = np.nonzero(base.any(0))[0]
    bw = (cols.max() - cols.min() + 1) if len(cols) else w * 0.5
    cx = lay.x + ctx.dx - ctx.ax + ((cols.min() + cols.max()) / 2 if len(cols) else w / 2)
    if ctx.shadow == "none":
        return
    strength = 0.55 if ctx.shadow == "contact" else 0.3
    sh = _ellipse_mask(S, cx, lay.y, bw * 0.6, max(2, bw * 0.1), max(1, bw * 0.06))
    _darken(img, sh, strength)
    if ctx.shadow == "contact":  # a soft cast shadow behind, sheared away from the light
        shear = -ctx.sc.light_x * ctx.rng.uniform(0.3, 0.9)
        sq = ctx.rng.uniform(0.15, 0.35)
        x0 = lay.x + ctx.dx - ctx.ax
        # frame = (u + x0) + shear * (ay - v) * sq ; y = lay.y - sq * (ay - v)
        M = np.float32([[1, -shear * sq, x0 + shear * sq * ctx.ay], [0, sq, lay.y - sq * ctx.ay]])
        cast = cv2.warpAffine(m, M, (S, S), flags=cv2.INTER_LINEAR)
        cast = cv2.GaussianBlur(cast, (0, 0), max(1.0, 0.02 * S))
        _darken(img, cast, 0.3)


def _composite(ctx: Ctx, img: np.ndarray) -> np.ndarray:
    lay = ctx.lay
    x0 = int(round(lay.x + ctx.dx - ctx.ax))
    y0 = int(round(lay.y + ctx.dy - ctx.ay))
    prod = ctx.prod
    if ctx.clip_below is not None:
        prod = prod.copy()
        cut = int(ctx.clip_below) - y0
        if 0 <= cut < prod.shape[0]:
            prod[cut:, :, 3] = 0
            ys = np.nonzero(ctx.prod[cut, :, 3] > 0.5)[0]
            if len(ys):  # the crack where the product goes through the surface
                rx = (ys.max() - ys.min()) / 2 + 3
                crack = _ellipse_mask(
                    ctx.S,
                    x0 + (ys.max() + ys.min()) / 2,
                    ctx.clip_below,
                    rx,
                    max(2, rx * 0.15),
                    1.0,
                )
                _darken(img, crack, 0.7)
    ctx.foot = _paste(img, prod, x0, y0)
    return img


def _post_global(rng, img: np.ndarray, sc: Scene) -> np.ndarray:
    S = img.shape[0]
    if sc.haze:
        img = img * (1 - sc.haze) + np.clip(img.mean((0, 1)) + 0.3, 0, 1) * sc.haze
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.8) * S / 256)
    if rng.random() < 0.6:
        img = img + rng.normal(0, rng.uniform(0.005, 0.025), img.shape).astype(np.float32)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(
            ".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 96))]
        )
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)


def _prompt(rng, sku: Sku, sc: Scene) -> str:
    wall = _colour_name(sc.wall).replace("-", " ")
    where = {
        "floor": f"on a {sc.plane_tex} floor",
        "table": f"on a {sc.plane_tex} table top",
        "podium": f"on a {sc.plinth_shape} plinth",
    }[sc.support]
    back = (
        f"{wall} {sc.wall_tex} wall" if sc.setting == "indoor" else f"{sc.plane_tex} outdoors, sky"
    )
    light = (
        "low-key moody light"
        if sc.lowkey < 1
        else str(rng.choice(["soft daylight", "studio light", "warm light"]))
    )
    return f"a {sku.title} {where}, {back}, {light}, commercial product photography, 4k"


def make_example(
    i: int, seed: int, S: int, catalogue: list[Sku], source_defects: bool = False
) -> tuple[dict, np.ndarray]:
    """Example i: (manifest row without paths, uint8 RGB creative). A source-damaged example's
    row carries its cut-out (uint8 RGBA) under "_product"."""
    rng = np.random.default_rng([seed, i])
    block = np.random.default_rng([seed, i // 6, 6]).permutation(len(CLASSES))
    label = CLASSES[int(block[i % 6])]
    support = SUPPORTS[int(rng.integers(3))]
    mech = f"on_{support}" if label == "available" else str(rng.choice(MECHANISMS[label]))
    sku = catalogue[int(rng.integers(len(catalogue)))]
    source = None
    if source_defects and label == "unsuitable" and rng.random() < 0.5:
        # The damage is in the photo the pipeline was given; the creative itself is made as
        # an available one would be (the placement hooks of its support, nothing else).
        src_mech = str(rng.choice(SOURCE_MECHANISMS))
        source = _damaged_source(rng, src_mech, _product(sku))
        mech = src_mech
    clean = _crop_alpha(source if source is not None else _product(sku))
    aspect = clean.shape[1] / clean.shape[0]
    lay = sample_layout(rng, S, aspect, sku.height_cm, **LAYOUT_HOOKS.get(mech, lambda r: {})(rng))
    prod = _resize_rgba(clean, lay.P * aspect, lay.P)
    lay.P = prod.shape[0]
    mean = (prod[..., :3] * prod[..., 3:]).sum((0, 1)) / max(prod[..., 3].sum(), 1)
    sc = sample_scene(rng, support, mean)
    h, w = prod.shape[:2]
    ctx = Ctx(
        rng, S, label, mech, sku, lay, sc, prod.copy(), w / 2, h - 1, float(prod[..., 3].sum())
    )
    if mech in PRE_HOOKS:
        PRE_HOOKS[mech](ctx)
    _fit(ctx)
    img = render_background(rng, S, lay, sc, w)
    img = light_background(rng, S, lay, sc, img)
    _shadows(ctx, img)
    img = _composite(ctx, img)
    if mech in POST_HOOKS:
        img = POST_HOOKS[mech](ctx, img)
    out = _post_global(rng, img, sc)
    row = {
        "sku": sku.sku if source is None else f"{sku.sku}-src{i}",
        "family": sku.family,
        "title": sku.title,
        "category": sku.category,
        "prompt": _prompt(rng, sku, sc),
        "label": label,
        "params": {"mechanism": f"{label}:{mech}"},
    }
    if source is not None:
        row["_product"] = (np.clip(source, 0, 1) * 255 + 0.5).astype(np.uint8)
    return row, out


# ---------------------------------------------------------------------------------------------
# Files, workers, CLI

_W: dict = {}


def _init_worker(
    out_dir: str,
    seed: int,
    size: int,
    shared_dir: str | None,
    use_shared: bool,
    flat: bool = False,
    source_defects: bool = False,
):
    cv2.setNumThreads(1)
    _W.update(
        out=Path(out_dir),
        seed=seed,
        size=size,
        cat=build_catalogue(Path(shared_dir) if shared_dir else None, use_shared),
        flat=flat,
        source_defects=source_defects,
    )


def _write_png(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # level 1: noisy creatives barely compress better at 6, and encoding would dominate the time
    Image.fromarray(arr).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def _work(i: int) -> dict:
    out, seed, size, cat = _W["out"], _W["seed"], _W["size"], _W["cat"]
    row, img = make_example(i, seed, size, cat, _W["source_defects"])
    ex_id = f"other-{seed}-{i:06d}"
    _write_png(out / "creatives" / f"{ex_id}.png", img)
    ppath = out / "products" / f"{row['sku']}.png"
    if "_product" in row:
        _write_png(ppath, row.pop("_product"))
    elif not ppath.exists():
        sku = next(s for s in cat if s.sku == row["sku"])
        rgba = (np.clip(_product(sku), 0, 1) * 255 + 0.5).astype(np.uint8)
        _write_png(ppath, rgba)
    return {
        "id": ex_id,
        "image": f"creatives/{ex_id}.png",
        "product_image": f"products/{row['sku']}.png",
        **{k: row[k] for k in ("sku", "family", "title", "category", "prompt")},
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "label": row["label"],
        "params": row["params"],
    }


def write_manifest(
    out_dir,
    *,
    n: int,
    seed: int,
    size: int,
    shared_dir=None,
    use_shared=True,
    workers: int = 1,
    flat_products: bool = False,
    source_defects: bool = False,
) -> Path:
    """Generate n creatives into out_dir; returns the manifest path (written last, atomically)."""
    out = Path(out_dir)
    (out / "creatives").mkdir(parents=True, exist_ok=True)
    (out / "products").mkdir(parents=True, exist_ok=True)
    shared = str(shared_dir if shared_dir is not None else ROOT.parent / "shared")
    init = (str(out), seed, size, shared, use_shared, flat_products, source_defects)
    if workers > 1:
        with Pool(workers, initializer=_init_worker, initargs=init) as pool:
            rows = list(pool.imap(_work, range(n), chunksize=8))
    else:
        _init_worker(*init)
        rows = [_work(i) for i in range(n)]
    tmp = out / "manifest.jsonl.tmp"
    with open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    path = out / "manifest.jsonl"
    os.replace(tmp, path)
    return path


def write_sheet(out_dir, count: int = 36, tile: int = 180) -> Path:
    out = Path(out_dir)
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()[:count]]
    cols = 6
    nrows = math.ceil(len(rows) / cols)
    th = tile + 26
    sheet = Image.new("RGB", (cols * tile, nrows * th), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for j, row in enumerate(rows):
        im = Image.open(out / row["image"]).convert("RGB").resize((tile, tile))
        x, y = (j % cols) * tile, (j // cols) * th
        sheet.paste(im, (x, y))
        cls, mech = row["params"]["mechanism"].split(":")
        d.text((x + 3, y + tile + 1), cls[:22], fill=(0, 0, 0), font=font)
        d.text((x + 3, y + tile + 13), mech, fill=(160, 0, 0), font=font)
    path = out / "sheet.png"
    sheet.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shared-dir", type=Path, default=None)
    ap.add_argument("--no-shared", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sheet", action="store_true")
    ap.add_argument(
        "--flat-products",
        action="store_true",
        help="paint every product in its mean colour (no texture, no shading)",
    )
    ap.add_argument(
        "--source-defects",
        action="store_true",
        help="half the unsuitable creatives come from a damaged product photo (the cut-out)",
    )
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = write_manifest(
        a.out_dir,
        n=a.n,
        seed=a.seed,
        size=a.size,
        shared_dir=a.shared_dir,
        use_shared=not a.no_shared,
        workers=a.workers,
        flat_products=a.flat_products,
        source_defects=a.source_defects,
    )
    dt = time.perf_counter() - t0
    if a.sheet:
        write_sheet(a.out_dir)
    print(f"{a.n} creatives -> {path} in {dt:.1f}s ({a.n / dt:.1f}/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
