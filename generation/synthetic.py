"""Procedural ad creatives with visible versions of every RF1M class (plain numpy/PIL, no Django).

Used by the demo (`seed_demo`), the tests and the RFNet benchmark. Each example is a simple product
photo: a wall + table scene with props, the product cut-out resting on the table with a contact
shadow, then exactly one defect (or none, for `available`). Two defects are relational on purpose,
so that a model that also sees the source cut-out has an edge over an image-only one:
`unsuitable` removes part of the product (frame cut or a missing chunk) and `shape_hallucination`
grafts structure in the product's own colours onto its silhouette (pedestal, legs, handle, ...),
while the procedural catalogue also has products whose *real* shape has legs, handles or a base.

Everything is deterministic given the seed: example `i` of a dataset is drawn from its own
`np.random.Generator([seed, i])`, so parallel workers produce the same bytes as a single process.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = (
    "available",
    "unsuitable",
    "space_mismatch",
    "size_mismatch",
    "indistinctiveness",
    "shape_hallucination",
)
GENERATOR = "rfstudio-synthetic"
GENERATOR_VERSION = "2"  # 2: params.placement (input placement)
PRODUCT_SIDE = 384  # side of the square cut-out canvas written per SKU
_WORK_SIDE = 320  # longest side of the tight crop the scenes are rendered from

_FALLBACK_PROMPTS = [
    {
        "prompt": "front view of a product placed on a {} desktop, bright indoor scene, "
        "soft light, commercial photography, 4k, photorealistic",
        "negative_prompt": "lowres, watermark, text, blurry, worst quality",
    },
    {
        "prompt": "minimalist scene, front view of a product placed on a table, {} walls, "
        "shallow depth of field, bokeh, professional product photo",
        "negative_prompt": "(worst quality:2), (low quality:2), lowres, watermark, text",
    },
    {
        "prompt": "indoor scene, a product on a desktop, flowers, leaves, {} tones, "
        "highly detailed, bokeh, commercial images",
        "negative_prompt": "lowres, bad anatomy, text, error, cropped, jpeg artifacts, signature",
    },
]


# --------------------------------------------------------------------------- colours


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32)


def _rgb_to_hsv(c: Sequence[float]) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in c)
    mx, mn = max(r, g, b), min(r, g, b)
    v, d = mx, mx - mn
    s = 0.0 if mx <= 0 else d / mx
    if d == 0:
        h = 0.0
    elif mx == r:
        h = ((g - b) / d) % 6
    elif mx == g:
        h = (b - r) / d + 2
    else:
        h = (r - g) / d + 4
    return (h / 6.0) % 1.0, s, v


def color_name(c: Sequence[float]) -> str:
    """A rough English name for an RGB colour in 0..1 (for prompts and titles)."""
    h, s, v = _rgb_to_hsv(c)
    if v < 0.18:
        return "black"
    if s < 0.15:
        return "white" if v > 0.85 else ("light grey" if v > 0.6 else "grey")
    if s < 0.35 and 0.05 < h < 0.17 and v > 0.7:
        return "beige"
    names = [
        (0.03, "red"),
        (0.09, "orange"),
        (0.17, "yellow"),
        (0.45, "green"),
        (0.53, "teal"),
        (0.72, "blue"),
        (0.82, "purple"),
        (0.95, "pink"),
        (1.01, "red"),
    ]
    name = next(n for limit, n in names if h < limit)
    if name == "orange" and v < 0.6:
        return "brown"
    if name in ("red", "pink") and v > 0.85 and s < 0.45:
        return "pastel pink"
    if name == "blue" and v > 0.8 and s < 0.45:
        return "light sky blue"
    return name


def _dist(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    # Luminance differences count double: they carry most of the visible edge contrast.
    dl = float(np.dot(a - b, [0.299, 0.587, 0.114]))
    return float(math.sqrt(float(np.sum((a - b) ** 2)) + 3 * dl * dl))


def dominant_colors(rgba: np.ndarray, k: int = 3) -> list[tuple[tuple[float, float, float], float]]:
    """Most common colours of the opaque pixels: [(rgb 0..1, share)], most common first."""
    alpha = rgba[..., 3]
    # Every 3rd pixel in both directions is plenty for a colour histogram.
    alpha = alpha[::3, ::3]
    px = rgba[::3, ::3, :3][alpha > (0.8 if rgba.dtype != np.uint8 else 204)]
    px = px.astype(np.float32) / (255.0 if rgba.dtype == np.uint8 else 1.0)
    if len(px) == 0:
        return [((0.5, 0.5, 0.5), 1.0)]
    q = np.clip((px * 5.999).astype(np.int32), 0, 5)
    idx = q[:, 0] * 36 + q[:, 1] * 6 + q[:, 2]
    counts = np.bincount(idx, minlength=216)
    out: list[tuple[np.ndarray, float]] = []
    for b in np.argsort(counts)[::-1][:12]:
        if counts[b] == 0:
            break
        mean = px[idx == b].mean(axis=0)
        share = counts[b] / len(px)
        for j, (c, sh) in enumerate(out):
            if _dist(c, mean) < 0.2:
                out[j] = ((c * sh + mean * share) / (sh + share), sh + share)
                break
        else:
            out.append((mean, share))
    out.sort(key=lambda t: -t[1])
    return [(tuple(round(float(x), 4) for x in c), round(float(s), 4)) for c, s in out[:k]]


# --------------------------------------------------------------------------- products


@dataclass(eq=False)
class ProductSource:
    """One SKU: its cut-out (`image`, RGBA square, alpha = mask) and a tight crop to render from."""

    sku: str
    title: str
    category: str
    image: Image.Image
    crop: Image.Image
    colors: list = field(default_factory=list)  # [(rgb 0..1, share)]
    origin: str = "procedural"
    kind: str = ""
    family: str = ""  # product line shared by colourway variants (splits group by it)

    def render(self, w: int, h: int) -> np.ndarray:
        """The product resized to (w, h): float32 [h, w, 4], straight RGB + alpha in 0..1."""
        img = self.crop.resize((max(1, w), max(1, h)), Image.BILINEAR, reducing_gap=2.0)
        return np.asarray(img, dtype=np.float32) * (1.0 / 255.0)

    @property
    def aspect(self) -> float:
        return self.crop.width / self.crop.height


def _tight(img: Image.Image) -> Image.Image:
    bbox = img.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    return img.crop(bbox) if bbox else img


def _fit(img: Image.Image, side: int) -> Image.Image:
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.LANCZOS)


def _canvas(crop: Image.Image, side: int = PRODUCT_SIDE) -> Image.Image:
    """The cut-out as stored per SKU: the crop centred on a transparent square with a margin."""
    inner = _fit(crop, int(side * 0.9))
    out = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    out.paste(inner, ((side - inner.width) // 2, (side - inner.height) // 2))
    return out


def _make_source(sku, title, category, crop, origin, kind, family="") -> ProductSource:
    crop = _fit(_tight(crop), _WORK_SIDE)
    colors = dominant_colors(np.asarray(crop))
    return ProductSource(
        sku, title, category, _canvas(crop), crop, colors, origin, kind, family or sku
    )


def _recolor(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """A colourway of a product: hue shift, or a tint for nearly grey products."""
    arr = np.asarray(img).copy()
    alpha = arr[..., 3]
    hsv = np.asarray(Image.fromarray(arr[..., :3]).convert("HSV")).astype(np.int32)
    sat = hsv[..., 1][alpha > 128].mean() / 255 if (alpha > 128).any() else 0
    target_h = int(rng.integers(0, 256))
    if sat > 0.25:
        hsv[..., 0] = (hsv[..., 0] + target_h) % 256
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.15), 0, 255)
    else:
        # A grey/black/white product: a tinted colourway keeps its shading and print.
        t = rng.uniform(0.35, 0.6)
        hsv[..., 0] = target_h
        hsv[..., 1] = np.clip(hsv[..., 1] * (1 - t) + 255 * t * 0.8, 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * 0.85 + 30, 0, 255)
    rgb = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))
    out = np.concatenate([rgb, alpha[..., None]], axis=-1)
    c = dominant_colors(out, k=1)[0][0]
    return Image.fromarray(out, "RGBA"), color_name(c)


def _shared_sources(shared_dir: Path, variants: int) -> list[ProductSource]:
    products_dir = shared_dir / "products"
    meta_path = products_dir / "products.json"
    if not meta_path.is_file():
        return []
    meta = json.loads(meta_path.read_text())
    out = []
    for entry in meta:
        path = products_dir / entry["file"]
        if not path.is_file():
            continue
        base = Image.open(path).convert("RGBA")
        base = _fit(_tight(base), _WORK_SIDE)
        rng = np.random.default_rng([7919, sum(entry["sku"].encode())])
        for v in range(variants):
            img, suffix = base, ""
            if v > 0:
                img, name = _recolor(base, rng)
                suffix = f" ({name} edition)"
                if v % 2 == 1:
                    img = img.transpose(Image.FLIP_LEFT_RIGHT)
                sx = rng.uniform(0.85, 1.15)
                img = img.resize((max(1, round(img.width * sx)), img.height), Image.BILINEAR)
            sku = entry["sku"] if v == 0 else f"{entry['sku']}-V{v:02d}"
            out.append(
                _make_source(
                    sku,
                    entry.get("title", sku) + suffix,
                    entry.get("category", ""),
                    img,
                    "shared",
                    Path(entry["file"]).stem,
                    family=entry["sku"],  # colourways of one product are one family
                )
            )
    return out


# Procedural catalogue ------------------------------------------------------------------------

_D = 320  # drawing canvas of procedural products


class _Painter:
    """Draws shaded parts (PIL masks + numpy shading) onto an RGBA float canvas."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.rgb = np.zeros((_D, _D, 3), np.float32)
        self.a = np.zeros((_D, _D), np.float32)
        self.xs = np.arange(_D, dtype=np.float32)[None, :]
        self.ys = np.arange(_D, dtype=np.float32)[:, None]
        self.light = rng.uniform(0.25, 0.4)  # where the highlight sits across a curved part

    def part(self, draw, color, shade="cyl", gloss=0.25, box=None):
        m = Image.new("L", (_D, _D), 0)
        draw(ImageDraw.Draw(m))
        bbox = m.getbbox()
        if not bbox:
            return
        # Work inside the part's bounding box only (shading still spans `box`).
        bx0, by0, bx1, by1 = bbox
        mask = np.asarray(m.crop(bbox), dtype=np.float32) / 255.0
        x0, y0, x1, y1 = box or bbox
        u = np.clip((self.xs[:, bx0:bx1] - x0) / max(1, x1 - x0), 0, 1)
        v = np.clip((self.ys[by0:by1] - y0) / max(1, y1 - y0), 0, 1)
        if shade == "cyl":
            f = 0.55 + 0.5 * np.clip(np.sin(np.pi * u), 0, 1) ** 0.6
            f = f + gloss * np.exp(-(((u - self.light) / 0.06) ** 2))
            f = f * (1.0 - 0.08 * v)
        elif shade == "vert":
            f = 1.05 - 0.25 * v + 0 * u
        elif shade == "side":
            f = 0.7 - 0.1 * v + 0 * u
        elif shade == "top":
            f = 1.15 + 0 * u + 0 * v
        else:
            f = 1.0 + 0 * u + 0 * v
        col = np.clip(np.asarray(color, np.float32)[None, None, :] * f[..., None], 0, 1)
        region = self.rgb[by0:by1, bx0:bx1]
        self.rgb[by0:by1, bx0:bx1] = region * (1 - mask[..., None]) + col * mask[..., None]
        self.a[by0:by1, bx0:bx1] = np.maximum(self.a[by0:by1, bx0:bx1], mask)

    def text(self, x0, y0, x1, y1, color, lines=3):
        """Fake print: a logo bar and thin lines, so labels read as labels."""
        rng = self.rng
        h = (y1 - y0) / (lines + 2)
        for i in range(lines):
            w = (x1 - x0) * rng.uniform(0.4, 0.9) if i else (x1 - x0) * 0.8
            yy = y0 + h * (i + 1)
            th = max(2, h * (0.45 if i == 0 else 0.22))

            def draw(d, yy=yy, w=w, th=th):
                d.rectangle([x0 + ((x1 - x0) - w) / 2, yy, x0 + ((x1 - x0) + w) / 2, yy + th], 255)

            self.part(draw, color, "flat")

    def image(self) -> Image.Image:
        arr = np.concatenate([self.rgb, self.a[..., None]], axis=-1)
        return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGBA")


def _rand_color(rng, sat=(0.35, 0.85), val=(0.35, 0.95)) -> np.ndarray:
    if rng.random() < 0.2:  # neutral products: white, black, silver
        return np.full(3, rng.choice([0.12, 0.55, 0.75, 0.93]), np.float32) + rng.uniform(
            -0.03, 0.03, 3
        ).astype(np.float32)
    return _hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))


def _accent(rng, base) -> np.ndarray:
    h, s, v = _rgb_to_hsv(base)
    choice = rng.random()
    if choice < 0.4:
        return np.array([0.95, 0.95, 0.93], np.float32)
    if choice < 0.6:
        return np.array([0.1, 0.1, 0.12], np.float32)
    return _hsv_to_rgb((h + rng.uniform(0.3, 0.7)) % 1, min(1, s + 0.2), min(1, v + 0.1))


def _draw_bottle(p: _Painter, rng, c, acc):
    cx = _D / 2
    bw, bh = rng.uniform(0.34, 0.5) * _D, rng.uniform(0.5, 0.62) * _D
    top = _D * 0.97 - bh
    nw, nh = bw * rng.uniform(0.28, 0.45), rng.uniform(0.1, 0.16) * _D
    box = (cx - bw / 2, top - nh, cx + bw / 2, _D * 0.97)
    r = bw * rng.uniform(0.1, 0.35)
    p.part(lambda d: d.rounded_rectangle([cx - bw / 2, top, cx + bw / 2, _D * 0.97], r, 255), c)
    p.part(lambda d: d.rectangle([cx - nw / 2, top - nh, cx + nw / 2, top + r], 255), c, box=box)
    ch = rng.uniform(0.06, 0.12) * _D
    p.part(
        lambda d: d.rounded_rectangle(
            [cx - nw / 2 - 2, top - nh - ch, cx + nw / 2 + 2, top - nh + 2], 3, 255
        ),
        acc,
        gloss=0.4,
    )
    ly0, ly1 = top + bh * 0.3, top + bh * rng.uniform(0.65, 0.8)
    lab = _accent(rng, c)
    p.part(lambda d: d.rectangle([cx - bw / 2, ly0, cx + bw / 2, ly1], 255), lab, box=box)
    p.text(cx - bw * 0.35, ly0, cx + bw * 0.35, ly1, c * 0.6)


def _draw_box(p: _Painter, rng, c, acc):
    w, h = rng.uniform(0.4, 0.62) * _D, rng.uniform(0.45, 0.75) * _D
    dx, dy = rng.uniform(0.08, 0.16) * _D, rng.uniform(0.05, 0.1) * _D
    x0, y1 = _D / 2 - (w + dx) / 2, _D * 0.97
    y0 = y1 - h
    p.part(lambda d: d.rectangle([x0, y0, x0 + w, y1], 255), c, "vert")
    p.part(
        lambda d: d.polygon(
            [(x0 + w, y0), (x0 + w + dx, y0 - dy), (x0 + w + dx, y1 - dy), (x0 + w, y1)], 255
        ),
        c,
        "side",
    )
    p.part(
        lambda d: d.polygon(
            [(x0, y0), (x0 + dx, y0 - dy), (x0 + w + dx, y0 - dy), (x0 + w, y0)], 255
        ),
        c,
        "top",
    )
    band = rng.uniform(0.25, 0.55)
    p.part(
        lambda d: d.rectangle([x0, y0 + h * band, x0 + w, y0 + h * (band + 0.18)], 255), acc, "flat"
    )
    p.text(x0 + w * 0.15, y0 + h * 0.05, x0 + w * 0.85, y0 + h * band, acc * 0.5 + 0.2, lines=2)


def _draw_can(p: _Painter, rng, c, acc, wide=False):
    w = (rng.uniform(0.55, 0.8) if wide else rng.uniform(0.32, 0.45)) * _D
    h = (rng.uniform(0.35, 0.5) if wide else rng.uniform(0.55, 0.75)) * _D
    cx, y1 = _D / 2, _D * 0.97
    e = w * 0.12
    y0 = y1 - h
    box = (cx - w / 2, y0, cx + w / 2, y1)
    p.part(lambda d: d.rectangle([cx - w / 2, y0, cx + w / 2, y1 - e], 255), c, box=box)
    p.part(lambda d: d.ellipse([cx - w / 2, y1 - 2 * e, cx + w / 2, y1], 255), c, box=box)
    lid = acc if wide else c * 0.8 + 0.2
    lh = h * (0.22 if wide else 0.0)
    if lh:
        p.part(
            lambda d: d.rectangle([cx - w / 2 - 3, y0 - lh * 0.3, cx + w / 2 + 3, y0 + lh], 255),
            lid,
        )
    p.part(
        lambda d: d.ellipse([cx - w / 2, y0 - e - lh * 0.3, cx + w / 2, y0 + e - lh * 0.3], 255),
        lid,
        "top",
    )
    ly0, ly1 = y0 + h * 0.35, y0 + h * 0.75
    p.part(lambda d: d.rectangle([cx - w / 2, ly0, cx + w / 2, ly1], 255), _accent(rng, c), box=box)
    p.text(cx - w * 0.3, ly0, cx + w * 0.3, ly1, c * 0.5, lines=2)


def _draw_jar(p, rng, c, acc):
    _draw_can(p, rng, c, acc, wide=True)


def _draw_tube(p: _Painter, rng, c, acc):
    cx, y1 = _D / 2, _D * 0.97
    w, h = rng.uniform(0.28, 0.38) * _D, rng.uniform(0.7, 0.85) * _D
    ch = h * 0.15
    y0 = y1 - h
    tw = w * 1.2
    p.part(
        lambda d: d.rounded_rectangle([cx - w * 0.4, y1 - ch, cx + w * 0.4, y1], 4, 255),
        acc,
        gloss=0.4,
    )
    p.part(
        lambda d: d.polygon(
            [(cx - tw / 2, y0), (cx + tw / 2, y0), (cx + w / 2, y1 - ch), (cx - w / 2, y1 - ch)],
            255,
        ),
        c,
        box=(cx - tw / 2, y0, cx + tw / 2, y1),
    )
    p.part(lambda d: d.rectangle([cx - tw / 2, y0, cx + tw / 2, y0 + 8], 255), c * 0.8, "flat")
    p.text(cx - w * 0.35, y0 + h * 0.25, cx + w * 0.35, y0 + h * 0.6, _accent(rng, c), lines=3)


def _draw_speaker(p: _Painter, rng, c, acc):
    cx, y1 = _D / 2, _D * 0.97
    feet = rng.random() < 0.5  # some speakers really stand on legs: not a hallucination
    lh = _D * rng.uniform(0.1, 0.16) if feet else 0
    w, h = rng.uniform(0.6, 0.85) * _D, rng.uniform(0.38, 0.55) * _D
    y0 = y1 - lh - h
    if feet:
        for fx in (cx - w * 0.35, cx + w * 0.35 - 8):
            p.part(
                lambda d, fx=fx: d.polygon(
                    [
                        (fx, y1 - lh - 2),
                        (fx + 9, y1 - lh - 2),
                        (fx + 6 + (fx - cx) * 0.15, y1),
                        (fx + 3 + (fx - cx) * 0.15, y1),
                    ],
                    255,
                ),
                acc * 0.6,
                "flat",
            )
    p.part(
        lambda d: d.rounded_rectangle([cx - w / 2, y0, cx + w / 2, y0 + h], h * 0.3, 255), c, "vert"
    )
    gc = c * 0.55
    for gx in (cx - w * 0.24, cx + w * 0.24):
        r = h * 0.3
        p.part(
            lambda d, gx=gx, r=r: d.ellipse([gx - r, y0 + h / 2 - r, gx + r, y0 + h / 2 + r], 255),
            gc,
            "flat",
        )
        p.part(
            lambda d, gx=gx, r=r: d.ellipse(
                [gx - r * 0.35, y0 + h / 2 - r * 0.35, gx + r * 0.35, y0 + h / 2 + r * 0.35], 255
            ),
            acc,
            "cyl",
        )


def _draw_suitcase(p: _Painter, rng, c, acc):
    cx, y1 = _D / 2, _D * 0.97
    w, h = rng.uniform(0.42, 0.55) * _D, rng.uniform(0.55, 0.65) * _D
    wh = _D * 0.05
    hh = rng.uniform(0.12, 0.22) * _D
    y0 = y1 - wh - h
    dark = np.array([0.12, 0.12, 0.13], np.float32)
    for wx in (cx - w * 0.38, cx + w * 0.38):
        p.part(lambda d, wx=wx: d.ellipse([wx - wh, y1 - 2 * wh, wx + wh, y1], 255), dark, "flat")
    for hx in (cx - w * 0.18, cx + w * 0.18):
        p.part(
            lambda d, hx=hx: d.rectangle([hx - 3, y0 - hh, hx + 3, y0 + 5], 255),
            np.array([0.6, 0.6, 0.62], np.float32),
            "cyl",
        )
    p.part(
        lambda d: d.rounded_rectangle(
            [cx - w * 0.22, y0 - hh - 10, cx + w * 0.22, y0 - hh + 4], 5, 255
        ),
        dark,
        "flat",
    )
    p.part(
        lambda d: d.rounded_rectangle([cx - w / 2, y0, cx + w / 2, y1 - wh], w * 0.1, 255),
        c,
        gloss=0.15,
    )
    for rx in np.linspace(cx - w * 0.3, cx + w * 0.3, int(rng.integers(2, 5))):
        p.part(
            lambda d, rx=rx: d.rectangle([rx - 2, y0 + h * 0.06, rx + 2, y1 - wh - h * 0.06], 255),
            c * 0.8,
            "flat",
        )


def _draw_mug(p: _Painter, rng, c, acc):
    cx, y1 = _D * 0.45, _D * 0.97
    w, h = rng.uniform(0.45, 0.58) * _D, rng.uniform(0.45, 0.6) * _D
    y0 = y1 - h
    r = h * rng.uniform(0.22, 0.3)
    t = max(8, r * 0.35)
    hx = cx + w / 2
    p.part(
        lambda d: d.ellipse(
            [hx - r, y0 + h * 0.45 - r, hx + r, y0 + h * 0.45 + r], outline=255, width=int(t)
        ),
        c,
        "flat",
    )
    p.part(lambda d: d.rounded_rectangle([cx - w / 2, y0, cx + w / 2, y1], w * 0.08, 255), c)
    p.part(
        lambda d: d.ellipse([cx - w / 2, y0 - w * 0.06, cx + w / 2, y0 + w * 0.06], 255),
        c * 0.45,
        "flat",
    )
    if rng.random() < 0.6:
        p.text(cx - w * 0.3, y0 + h * 0.3, cx + w * 0.3, y0 + h * 0.7, _accent(rng, c), lines=2)


def _draw_lamp(p: _Painter, rng, c, acc):
    # A table lamp: its base really is a pedestal (a hallucination-like shape that is genuine).
    cx, y1 = _D / 2, _D * 0.97
    sw, sh = rng.uniform(0.55, 0.8) * _D, rng.uniform(0.3, 0.4) * _D
    bw, bh = rng.uniform(0.3, 0.45) * _D, _D * 0.06
    stem = rng.uniform(0.25, 0.4) * _D
    p.part(lambda d: d.ellipse([cx - bw / 2, y1 - bh, cx + bw / 2, y1], 255), acc, gloss=0.3)
    p.part(
        lambda d: d.rectangle([cx - 5, y1 - bh / 2 - stem, cx + 5, y1 - bh / 2], 255),
        acc,
        gloss=0.4,
    )
    ys = y1 - bh / 2 - stem
    p.part(
        lambda d: d.polygon(
            [
                (cx - sw * 0.3, ys - sh),
                (cx + sw * 0.3, ys - sh),
                (cx + sw / 2, ys + 6),
                (cx - sw / 2, ys + 6),
            ],
            255,
        ),
        c,
        box=(cx - sw / 2, ys - sh, cx + sw / 2, ys),
    )


def _draw_perfume(p: _Painter, rng, c, acc):
    cx, y1 = _D / 2, _D * 0.97
    w, h = rng.uniform(0.45, 0.6) * _D, rng.uniform(0.4, 0.5) * _D
    y0 = y1 - h
    glass = c * 0.6 + 0.35
    p.part(
        lambda d: d.rounded_rectangle([cx - w / 2, y0, cx + w / 2, y1], 10, 255), glass, gloss=0.5
    )
    p.part(
        lambda d: d.rounded_rectangle(
            [cx - w * 0.38, y0 + h * 0.15, cx + w * 0.38, y1 - h * 0.08], 8, 255
        ),
        c,
        gloss=0.2,
    )
    nw = w * 0.22
    p.part(
        lambda d: d.rectangle([cx - nw / 2, y0 - 14, cx + nw / 2, y0 + 2], 255),
        np.array([0.8, 0.7, 0.4], np.float32),
    )
    cw, chh = w * rng.uniform(0.35, 0.6), h * rng.uniform(0.35, 0.6)
    p.part(
        lambda d: d.rounded_rectangle([cx - cw / 2, y0 - 12 - chh, cx + cw / 2, y0 - 12], 6, 255),
        acc,
        gloss=0.4,
    )
    p.text(cx - w * 0.25, y0 + h * 0.35, cx + w * 0.25, y0 + h * 0.7, glass, lines=2)


_PROCEDURAL_KINDS = {
    "bottle": (_draw_bottle, "Bottle", "home/drinkware"),
    "box": (_draw_box, "Gift box", "packaging"),
    "can": (_draw_can, "Canister", "home/kitchen"),
    "jar": (_draw_jar, "Cream jar", "beauty/skincare"),
    "tube": (_draw_tube, "Cosmetic tube", "beauty/skincare"),
    "speaker": (_draw_speaker, "Stereo speaker", "electronics/audio"),
    "suitcase": (_draw_suitcase, "Trolley suitcase", "luggage"),
    "mug": (_draw_mug, "Ceramic mug", "home/kitchen"),
    "lamp": (_draw_lamp, "Table lamp", "home/lighting"),
    "perfume": (_draw_perfume, "Perfume", "beauty/fragrance"),
}


def _procedural_sources(count: int) -> list[ProductSource]:
    kinds = list(_PROCEDURAL_KINDS)
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        rng = np.random.default_rng([4242, i])
        draw, title, category = _PROCEDURAL_KINDS[kind]
        c = _rand_color(rng)
        acc = _accent(rng, c)
        p = _Painter(rng)
        draw(p, rng, c, acc)
        img = p.image()
        name = color_name(c)
        sku = f"SYN-{kind.upper()}-{i // len(kinds) + 1:02d}"
        out.append(_make_source(sku, f"{title} ({name})", category, img, "procedural", kind))
    return out


def _default_shared_dir() -> Path:
    env = os.environ.get("RFSTUDIO_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"


@lru_cache(maxsize=8)
def _load_products_cached(shared: str, variants: int, procedural: int) -> tuple:
    sources = _shared_sources(Path(shared), variants) if shared else []
    return tuple(sources + _procedural_sources(procedural))


def load_products(
    shared_dir: str | Path | None = None,
    *,
    variants: int = 8,
    procedural: int | None = None,
    include_shared: bool = True,
) -> list[ProductSource]:
    """The SKU catalogue: real cut-outs from `shared_dir/products` (default: RFSTUDIO_SHARED_DIR
    or ../shared beside the repository) in `variants` colourways each (flip, hue, width), plus
    `procedural` drawn products (default 60, or 120 when no real cut-outs exist)."""
    shared = ""
    if include_shared:
        path = Path(shared_dir) if shared_dir else _default_shared_dir()
        if (path / "products" / "products.json").is_file():
            shared = str(path.resolve())
    if procedural is None:
        procedural = 60 if shared else 120
    return list(_load_products_cached(shared, int(variants), int(procedural)))


@lru_cache(maxsize=4)
def _prompt_templates(shared: str) -> tuple:
    path = Path(shared) / "prompts.json" if shared else None
    if path and path.is_file():
        try:
            data = json.loads(path.read_text())
            return tuple(
                {"prompt": d["prompt"], "negative_prompt": d.get("negative_prompt", "")}
                for d in data
                if "prompt" in d
            )
        except (ValueError, KeyError, TypeError):
            pass
    return tuple(_FALLBACK_PROMPTS)


# --------------------------------------------------------------------------- scenes


@dataclass
class _Scene:
    kind: str
    horizon: int  # y where the wall meets the table top
    front: int  # y of the table's front edge (S when the table runs out of frame)
    wall: np.ndarray
    surface: np.ndarray
    props: list = field(default_factory=list)


def _noise(rng, size, cells, dtype=np.float32) -> np.ndarray:
    """Smooth value noise in [-1, 1] of shape (size, size)."""
    small = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((size, size), Image.BICUBIC), dtype)


def _pick_wall(rng, avoid) -> np.ndarray:
    """A wall colour that contrasts with every major product colour."""
    best, best_d = None, -1.0
    for _ in range(24):
        r = rng.random()
        if r < 0.35:
            c = _hsv_to_rgb(rng.random(), rng.uniform(0.03, 0.18), rng.uniform(0.75, 0.97))
        elif r < 0.75:
            c = _hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.55), rng.uniform(0.45, 0.95))
        elif r < 0.9:
            c = _hsv_to_rgb(rng.random(), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.6))
        else:
            c = np.full(3, rng.uniform(0.12, 0.35), np.float32)
        d = min(_dist(c, a) for a in avoid) if avoid else 1.0
        if d >= 0.42:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _pick_surface(rng, wall, avoid) -> tuple[np.ndarray, str]:
    for _ in range(24):
        r = rng.random()
        if r < 0.3:
            c, tex = (
                _hsv_to_rgb(
                    rng.uniform(0.05, 0.1), rng.uniform(0.35, 0.6), rng.uniform(0.35, 0.75)
                ),
                "wood",
            )
        elif r < 0.55:
            c, tex = np.full(3, rng.uniform(0.85, 0.97), np.float32), "marble"
        elif r < 0.75:
            c, tex = (
                np.full(3, rng.uniform(0.2, 0.5), np.float32)
                + rng.uniform(-0.03, 0.03, 3).astype(np.float32),
                "stone",
            )
        else:
            h, s, v = _rgb_to_hsv(wall)
            c, tex = (
                _hsv_to_rgb(
                    (h + rng.uniform(-0.1, 0.1)) % 1,
                    s * rng.uniform(0.5, 1.2),
                    np.clip(v * rng.uniform(0.6, 1.2), 0.15, 0.97),
                ),
                "cloth",
            )
        if not avoid or min(_dist(c, a) for a in avoid) >= 0.3:
            return np.clip(c, 0, 1).astype(np.float32), tex
    return np.clip(c, 0, 1).astype(np.float32), tex


def _render_scene(rng, S, horizon, front, wall, surface, tex, kind, product_tex=None) -> np.ndarray:
    ys = np.arange(S, dtype=np.float32)[:, None, None] / S
    xs = np.arange(S, dtype=np.float32)[None, :, None] / S
    img = np.zeros((S, S, 3), np.float32)
    h = horizon
    # Wall: vertical gradient, a soft light spot, optional pattern.
    top = wall * rng.uniform(0.8, 1.05)
    grad = ys[:h] / max(h / S, 1e-3)
    img[:h] = top * (1 - grad) + wall * grad
    if kind == "outdoor":
        sky0 = _hsv_to_rgb(rng.uniform(0.55, 0.62), rng.uniform(0.35, 0.6), rng.uniform(0.8, 0.95))
        sky1 = np.clip(sky0 * 0.4 + 0.62, 0, 1)
        img[:h] = sky0 * (1 - grad) + sky1 * grad
        hill = _hsv_to_rgb(rng.uniform(0.22, 0.4), rng.uniform(0.3, 0.55), rng.uniform(0.35, 0.6))
        xline = np.arange(S, dtype=np.float32) / S
        ridge = h - S * (
            0.06
            + 0.05 * np.sin(xline * rng.uniform(4, 9) + rng.uniform(0, 6))
            + 0.03 * np.sin(xline * 17 + rng.uniform(0, 6))
        )
        mask = (np.arange(h)[:, None] >= ridge[None, :]).astype(np.float32)[..., None]
        img[:h] = img[:h] * (1 - mask) + hill * mask
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0, 1), rng.uniform(0.05, 0.3) * h / S
            rx, ry = rng.uniform(0.08, 0.2), rng.uniform(0.02, 0.05)
            d = ((xs[:, :, 0] - cx) / rx) ** 2 + ((ys[:h, :, 0] - cy) / ry) ** 2
            cl = np.clip(1.2 - d, 0, 1)[..., None] * 0.8
            img[:h] = img[:h] * (1 - cl) + cl
    else:
        pattern = rng.choice(["plain", "plain", "noise", "stripes", "tiles", "panel", "bokeh"])
        if pattern == "noise":
            img[:h] *= 1 + 0.06 * _noise(rng, S, int(rng.integers(3, 8)))[:h, :, None]
        elif pattern == "stripes":
            f = rng.uniform(12, 30)
            img[:h] *= 1 - 0.05 * (np.sin(xs[0, :, 0] * f * np.pi) > 0)[None, :, None]
        elif pattern == "tiles":
            t = int(S * rng.uniform(0.06, 0.12))
            grid = (np.arange(S) % t) < max(1, S // 200 + 1)
            lines = (grid[:h, None] | grid[None, :]).astype(np.float32)[..., None]
            img[:h] = img[:h] * (1 - 0.12 * lines)
        elif pattern == "panel":
            py = int(h * rng.uniform(0.45, 0.75))
            img[py:h] *= rng.uniform(0.78, 0.92)
            img[py : py + max(2, S // 90)] *= 1.12
        elif pattern == "bokeh":
            for _ in range(int(rng.integers(4, 10))):
                cx, cy, r = rng.uniform(0, 1), rng.uniform(0, h / S), rng.uniform(0.02, 0.07)
                d = ((xs[:, :, 0] - cx) ** 2 + (ys[:h, :, 0] - cy) ** 2) / r**2
                img[:h] += (np.clip(1.3 - d, 0, 1) * rng.uniform(0.08, 0.2))[..., None]
        if product_tex is not None:
            img[:h] = img[:h] * 0.55 + product_tex[:h] * 0.45
    if kind == "outdoor" and product_tex is not None:
        img[:h] = img[:h] * 0.35 + product_tex[:h] * 0.65
    lx, ly = rng.uniform(0.2, 0.8), rng.uniform(-0.1, 0.3)
    spot = np.exp(-(((xs[..., 0] - lx) ** 2 + (ys[..., 0] - ly) ** 2) / rng.uniform(0.08, 0.3)))
    img *= (1 + rng.uniform(0.0, 0.18) * spot)[..., None] if h else 1
    # Table top: gradient toward the viewer and a material texture.
    n = front - h
    if n > 0:
        v = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
        back = surface * rng.uniform(0.8, 0.95)
        img[h:front] = back * (1 - v) + surface * v
        if tex == "wood":
            ph = _noise(rng, S, 3)[h:front] * rng.uniform(1.0, 2.5)
            yy = np.arange(h, front, dtype=np.float32)[:, None]
            # Planks seen in perspective: grain lines get denser toward the wall.
            depth = np.log1p((yy - h + 1) * 8.0 / S)
            grain = np.sin(depth * rng.uniform(14, 24) + ph)
            img[h:front] *= (1 + 0.05 * grain)[..., None]
        elif tex == "marble":
            veins = np.abs(np.sin(_noise(rng, S, 4)[h:front] * rng.uniform(4, 8)))
            img[h:front] *= (1 - 0.07 * np.clip(0.12 - veins, 0, 1) / 0.12)[..., None]
        elif tex in ("stone", "cloth"):
            img[h:front] *= (1 + 0.04 * _noise(rng, S, int(rng.integers(8, 20)))[h:front])[
                ..., None
            ]
        if product_tex is not None:
            img[h:front] = img[h:front] * 0.6 + product_tex[h:front] * 0.4
        # The back edge: a thin contact line where the table meets the wall.
        img[h : h + max(1, S // 128)] *= 0.85
    if front < S:
        edge = max(2, S // 80)
        img[front : front + edge] = np.clip(surface * 1.15, 0, 1)
        img[front + edge :] = surface * rng.uniform(0.45, 0.65)
    return img


def _draw_leaf(d, x, y, length, angle, width, fill):
    pts = []
    for t in np.linspace(0, 1, 9):
        pts.append((t * length, math.sin(math.pi * t) * width / 2))
    for t in np.linspace(1, 0, 9):
        pts.append((t * length, -math.sin(math.pi * t) * width / 2))
    ca, sa = math.cos(angle), math.sin(angle)
    d.polygon([(x + px * ca - py * sa, y + px * sa + py * ca) for px, py in pts], fill=fill)


def _u8(c) -> tuple:
    return tuple(int(v) for v in np.clip(np.asarray(c) * 255, 0, 255))


def _draw_props(rng, canvas: Image.Image, S, scene: _Scene, keep_out, tint=None):
    """Background props (window, frame, shelf, plant, vase, cup, books, lamp), avoiding the
    product's box where there is room. Props sit on the table or hang on the wall."""
    d = ImageDraw.Draw(canvas)
    h = scene.horizon
    kx0, kx1 = keep_out

    def free_x(width):
        spans = [(0, kx0 - width), (kx1, S - width)]
        spans = [(a, b) for a, b in spans if b > a]
        if not spans or rng.random() < 0.15:
            return rng.uniform(0, max(1, S - width))
        a, b = spans[int(rng.integers(len(spans)))]
        return rng.uniform(a, b)

    def col(c):
        c = np.asarray(c, np.float32)
        if tint is not None:
            c = c * 0.35 + tint * 0.65
        return _u8(c)

    props = []
    if scene.kind != "outdoor" and h > S * 0.3:
        for _ in range(int(rng.integers(0, 3))):
            kind = rng.choice(["window", "frame", "shelf"])
            if kind == "window":
                w, hh = S * rng.uniform(0.22, 0.38), min(h * 0.8, S * rng.uniform(0.28, 0.45))
            elif kind == "frame":
                w, hh = S * rng.uniform(0.15, 0.28), S * rng.uniform(0.15, 0.3)
            else:
                w, hh = S * rng.uniform(0.25, 0.45), S * 0.12
            x = free_x(w)
            y = rng.uniform(S * 0.02, max(S * 0.03, h - hh - S * 0.06))
            fr = col([0.96, 0.95, 0.92] if rng.random() < 0.6 else [0.45, 0.3, 0.18])
            if kind == "window":
                sky = _hsv_to_rgb(
                    rng.uniform(0.52, 0.6), rng.uniform(0.15, 0.4), rng.uniform(0.85, 1.0)
                )
                d.rectangle([x, y, x + w, y + hh], fill=fr)
                t = max(2, S // 60)
                d.rectangle([x + t, y + t, x + w - t, y + hh - t], fill=col(sky))
                d.rectangle([x + w / 2 - t / 2, y, x + w / 2 + t / 2, y + hh], fill=fr)
                d.rectangle([x, y + hh / 2 - t / 2, x + w, y + hh / 2 + t / 2], fill=fr)
            elif kind == "frame":
                d.rectangle([x, y, x + w, y + hh], fill=fr)
                t = max(2, S // 50)
                d.rectangle(
                    [x + t, y + t, x + w - t, y + hh - t],
                    fill=col(_hsv_to_rgb(rng.random(), 0.3, 0.9)),
                )
                for _ in range(3):
                    bx, by = x + rng.uniform(t, w * 0.6), y + rng.uniform(t, hh * 0.6)
                    d.ellipse(
                        [bx, by, bx + w * 0.3, by + hh * 0.3],
                        fill=col(_hsv_to_rgb(rng.random(), 0.6, 0.7)),
                    )
            else:
                d.rectangle([x, y + hh - S * 0.02, x + w, y + hh], fill=fr)
                bx = x + S * 0.02
                while bx < x + w - S * 0.05:
                    bw, bh = S * rng.uniform(0.02, 0.04), hh * rng.uniform(0.5, 0.9)
                    d.rectangle(
                        [bx, y + hh - S * 0.02 - bh, bx + bw, y + hh - S * 0.02],
                        fill=col(_hsv_to_rgb(rng.random(), 0.5, 0.6)),
                    )
                    bx += bw + S * rng.uniform(0.0, 0.03)
            props.append(
                {"kind": str(kind), "box": [round(x), round(y), round(x + w), round(y + hh)]}
            )
    n_table = int(rng.choice([0, 1, 1, 2, 2, 3]))
    for _ in range(n_table):
        kind = rng.choice(["plant", "plant", "vase", "cup", "books", "lamp"])
        base = h + rng.uniform(0.005, 0.06) * S
        if kind == "plant":
            ph, pw = S * rng.uniform(0.2, 0.42), S * rng.uniform(0.07, 0.12)
            x = free_x(pw * 2.2) + pw * 0.6
            pot = col(
                _hsv_to_rgb(rng.uniform(0.02, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.5, 0.85))
                if rng.random() < 0.6
                else [0.92, 0.92, 0.9]
            )
            leaf_c = _hsv_to_rgb(
                rng.uniform(0.22, 0.38), rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.6)
            )
            top = base - ph * 0.35
            for _ in range(int(rng.integers(5, 10))):
                ang = -math.pi / 2 + rng.uniform(-1.1, 1.1)
                _draw_leaf(
                    d,
                    x + pw / 2,
                    top,
                    ph * rng.uniform(0.45, 0.7),
                    ang,
                    pw * rng.uniform(0.35, 0.6),
                    col(leaf_c * rng.uniform(0.8, 1.2)),
                )
            d.polygon(
                [(x, top), (x + pw, top), (x + pw * 0.85, base), (x + pw * 0.15, base)], fill=pot
            )
            box = [x - pw * 0.5, base - ph, x + pw * 1.5, base]
        elif kind == "vase":
            vh, vw = S * rng.uniform(0.12, 0.22), S * rng.uniform(0.05, 0.09)
            x = free_x(vw * 3) + vw
            fc = _hsv_to_rgb(rng.random(), 0.6, 0.9)
            for _ in range(int(rng.integers(3, 6))):
                fx, fy = x + vw / 2 + rng.uniform(-vw, vw), base - vh - rng.uniform(0.04, 0.12) * S
                d.line(
                    [(x + vw / 2, base - vh * 0.8), (fx, fy)],
                    fill=col([0.3, 0.5, 0.25]),
                    width=max(1, S // 128),
                )
                r = S * rng.uniform(0.012, 0.025)
                d.ellipse([fx - r, fy - r, fx + r, fy + r], fill=col(fc))
            d.rounded_rectangle(
                [x, base - vh, x + vw, base],
                radius=vw * 0.4,
                fill=col(_hsv_to_rgb(rng.random(), 0.2, 0.85)),
            )
            box = [x - vw, base - vh - 0.12 * S, x + 2 * vw, base]
        elif kind == "cup":
            cw, chh = S * rng.uniform(0.05, 0.08), S * rng.uniform(0.05, 0.08)
            x = free_x(cw * 1.5)
            cc = col(_hsv_to_rgb(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.6, 0.95)))
            d.ellipse(
                [x + cw * 0.7, base - chh * 0.8, x + cw * 1.3, base - chh * 0.3],
                outline=cc,
                width=max(2, S // 100),
            )
            d.rectangle([x, base - chh, x + cw, base], fill=cc)
            box = [x, base - chh, x + cw * 1.3, base]
        elif kind == "books":
            bw = S * rng.uniform(0.12, 0.2)
            x = free_x(bw)
            y = base
            for _ in range(int(rng.integers(2, 5))):
                bh = S * rng.uniform(0.015, 0.03)
                off = rng.uniform(-0.1, 0.1) * bw
                d.rectangle(
                    [x + off, y - bh, x + off + bw, y],
                    fill=col(_hsv_to_rgb(rng.random(), 0.5, rng.uniform(0.3, 0.8))),
                )
                y -= bh
            box = [x, y, x + bw, base]
        else:
            lh, sw = S * rng.uniform(0.25, 0.4), S * rng.uniform(0.1, 0.16)
            x = free_x(sw) + sw / 2
            lc = col(_hsv_to_rgb(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.3, 0.9)))
            d.ellipse([x - sw * 0.3, base - S * 0.015, x + sw * 0.3, base + S * 0.005], fill=lc)
            d.rectangle([x - S * 0.006, base - lh * 0.6, x + S * 0.006, base], fill=lc)
            d.polygon(
                [
                    (x - sw * 0.3, base - lh),
                    (x + sw * 0.3, base - lh),
                    (x + sw / 2, base - lh * 0.6),
                    (x - sw / 2, base - lh * 0.6),
                ],
                fill=col([0.97, 0.94, 0.85]),
            )
            box = [x - sw / 2, base - lh, x + sw / 2, base]
        props.append({"kind": str(kind), "box": [round(v) for v in box]})
    return props


# --------------------------------------------------------------------------- compositing


def _paste(img, layer, x, y):
    """Alpha-composite an RGBA float layer at (x, y), clipped to the canvas; returns the
    canvas-sized alpha actually pasted."""
    S = img.shape[0]
    lh, lw = layer.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(S, x + lw), min(S, y + lh)
    alpha = np.zeros((S, S), np.float32)
    if x1 <= x0 or y1 <= y0:
        return alpha
    part = layer[y0 - y : y1 - y, x0 - x : x1 - x]
    a = part[..., 3:4]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + part[..., :3] * a
    alpha[y0:y1, x0:x1] = part[..., 3]
    return alpha


def _ellipse_shadow(img, cx, cy, rx, ry, strength, power=1.5):
    S = img.shape[0]
    x0, x1 = int(max(0, cx - rx - 1)), int(min(S, cx + rx + 2))
    y0, y1 = int(max(0, cy - ry - 1)), int(min(S, cy + ry + 2))
    if x1 <= x0 or y1 <= y0:
        return
    xx = (np.arange(x0, x1, dtype=np.float32)[None, :] - cx) / max(rx, 1e-3)
    yy = (np.arange(y0, y1, dtype=np.float32)[:, None] - cy) / max(ry, 1e-3)
    s = np.clip(1 - (xx * xx + yy * yy), 0, 1) ** power * strength
    img[y0:y1, x0:x1] *= (1 - s)[..., None]


def _cast_shadow(img, layer, x, y, strength, rng, S):
    """A soft shadow of the silhouette on the table: thrown back and sideways (light from the
    front) or toward the viewer (back light), starting at the product's foot."""
    a = Image.fromarray((layer[..., 3] * 255).astype(np.uint8), "L")
    lw, lh = a.size
    fy = _foot(layer[..., 3])[2]
    forward = rng.random() < 0.4
    sh = max(2, int(lh * (rng.uniform(0.1, 0.22) if forward else rng.uniform(0.15, 0.35))))
    flat = a.crop((0, 0, lw, fy)).resize((lw, sh), Image.BILINEAR)
    k = (rng.uniform(0.0, 1.0) if forward else rng.uniform(0.8, 2.2)) * rng.choice([-1, 1])
    pad = int(abs(k) * sh) + 2
    base = pad if k < 0 else 0
    if forward:
        flat = flat.transpose(Image.FLIP_TOP_BOTTOM)
        coeffs = (1, -k, -base, 0, 1, 0)
        oy = y + fy
    else:
        coeffs = (1, k, -base - k * sh, 0, 1, 0)
        oy = y + fy - sh
    flat = flat.transform((lw + pad, sh), Image.AFFINE, coeffs, Image.BILINEAR)
    flat = flat.filter(ImageFilter.GaussianBlur(max(1.0, S / 100)))
    m = np.asarray(flat, np.float32) / 255.0 * strength
    ox = x - base
    X0, Y0 = max(0, ox), max(0, oy)
    X1, Y1 = min(S, ox + m.shape[1]), min(S, oy + m.shape[0])
    if X1 > X0 and Y1 > Y0:
        img[Y0:Y1, X0:X1] *= (1 - m[Y0 - oy : Y1 - oy, X0 - ox : X1 - ox])[..., None]


def _alpha_bbox(a: np.ndarray, thr=0.5):
    ys = np.nonzero((a > thr).any(axis=1))[0]
    xs = np.nonzero((a > thr).any(axis=0))[0]
    if len(ys) == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _foot(a: np.ndarray):
    """(x_center, x_extent, y_bottom) of the lowest opaque rows: where the object touches."""
    bb = _alpha_bbox(a)
    x0, y0, x1, y1 = bb
    band = a[max(y0, y1 - max(2, (y1 - y0) // 12)) : y1]
    cols = np.nonzero((band > 0.5).any(axis=0))[0]
    if len(cols) == 0:
        return (x0 + x1) / 2, x1 - x0, y1
    return (cols[0] + cols[-1] + 1) / 2, cols[-1] + 1 - cols[0], y1


def _pad(layer, top=0, bottom=0, left=0, right=0):
    return np.pad(layer, ((top, bottom), (left, right), (0, 0)))


def _shade_part(mask, color, rng, x0, x1):
    """Colour a grafted part like a curved surface of the product (cylindrical shading)."""
    h, w = mask.shape
    u = np.clip((np.arange(w, dtype=np.float32) - x0) / max(1, x1 - x0), 0, 1)
    f = (
        0.6
        + 0.45 * np.clip(np.sin(np.pi * u), 0, 1) ** 0.6
        + 0.2 * np.exp(-(((u - 0.3) / 0.08) ** 2))
    )
    col = np.asarray(color, np.float32)[None, None, :] * f[None, :, None]
    return np.clip(col, 0, 1) * np.ones((h, 1, 1), np.float32)


def _composite_under(layer, part_rgb, part_a, above=False):
    """Merge a part into the layer: behind the product (default) or over it."""
    a0 = layer[..., 3:4]
    pa = part_a[..., None]
    if above:
        rgb = layer[..., :3] * (1 - pa) + part_rgb * pa
        a = np.maximum(a0, pa)
    else:
        a = a0 + pa * (1 - a0)
        rgb = (layer[..., :3] * a0 + part_rgb * pa * (1 - a0)) / np.maximum(a, 1e-6)
    return np.concatenate([rgb, a], axis=-1).astype(np.float32)


def _draw_mask(shape, draw) -> np.ndarray:
    m = Image.new("L", (shape[1], shape[0]), 0)
    draw(ImageDraw.Draw(m))
    return np.asarray(m, np.float32) / 255.0


def _hallucinate(layer, rng, colors, S):
    """Graft structure onto the product silhouette. Returns (new layer, offset of the original
    product inside it (dx, dy), details)."""
    h, w = layer.shape[:2]
    a = layer[..., 3]
    fx, fext, fy = _foot(a)
    opaque = a > 0.8
    bottom_rows = layer[int(h * 0.8) :][opaque[int(h * 0.8) :]][:, :3]
    base_col = np.median(bottom_rows, axis=0) if len(bottom_rows) else np.asarray(colors[0][0])
    dom = np.asarray(colors[0][0], np.float32)
    color = base_col if rng.random() < 0.6 else dom
    kind = str(rng.choice(["pedestal", "pedestal", "legs", "legs", "handle", "extrude", "top"]))
    if kind == "extrude" and (a[fy - 1] > 0.5).sum() < 0.5 * fext:
        kind = "pedestal"  # a narrow foot (wheels, legs, a tip) would stretch into slivers
    details = {"kind": kind}
    if kind in ("pedestal", "legs", "extrude"):
        ext = int(h * rng.uniform(0.25, 0.45))
        padx = max(0, int(fext * 0.2))
        layer = _pad(layer, bottom=ext, left=padx, right=padx)
        H, W = layer.shape[:2]
        cx = fx + padx
        if kind == "pedestal":
            pw = max(6, fext * rng.uniform(0.6, 1.15))
            style = rng.choice(["block", "cylinder", "trapezoid"])
            top = fy - max(2, int(h * 0.03))
            # Reach up to the product's underside within the pedestal's span (feet or a rounded
            # bottom leave a gap otherwise), so the pedestal always touches the product.
            span = a[:, int(max(0, cx - padx - pw / 2)) : int(min(w, cx - padx + pw / 2)) + 1]
            lows = [np.nonzero(c > 0.5)[0] for c in span.T]
            lows = [c[-1] for c in lows if len(c)]
            if lows:
                top = min(top, max(lows) - 2)

            def draw(d):
                if style == "block":
                    d.rectangle([cx - pw / 2, top, cx + pw / 2, H - 1], fill=255)
                elif style == "cylinder":
                    d.rectangle([cx - pw / 2, top, cx + pw / 2, H - 1 - pw * 0.08], fill=255)
                    d.ellipse([cx - pw / 2, H - 1 - pw * 0.16, cx + pw / 2, H - 1], fill=255)
                else:
                    d.polygon(
                        [
                            (cx - pw * 0.35, top),
                            (cx + pw * 0.35, top),
                            (cx + pw / 2, H - 1),
                            (cx - pw / 2, H - 1),
                        ],
                        fill=255,
                    )

            m = _draw_mask((H, W), draw)
            used = color * rng.uniform(0.85, 1.05)
            rgb = _shade_part(m, used, rng, cx - pw / 2, cx + pw / 2)
            # A rim where the pedestal meets the product makes it read as one object.
            rim = int(fy + max(1, h * 0.01))
            rgb[rim : rim + max(2, S // 100)] *= 0.8
            details.update(style=str(style))
        elif kind == "legs":
            n = int(rng.choice([2, 3, 4]))
            lw = max(3, fext * rng.uniform(0.05, 0.1))
            span = fext * rng.uniform(0.65, 0.95)
            splay = rng.uniform(0.0, 0.25)
            top = fy - max(3, int(h * 0.04))

            def leg_top(x):
                # Each leg grows out of the product's underside right above it (rounded bottoms
                # are higher at the sides), overlapping it a little so they touch.
                col = np.nonzero(a[:, int(np.clip(x - padx, 0, w - 1))] > 0.5)[0]
                return min(top, col[-1] - 2) if len(col) else top

            def draw(d):
                for i in range(n):
                    t = (i / (n - 1)) - 0.5
                    x_top = cx + t * span
                    x_bot = x_top + t * splay * ext * 2
                    y_top = leg_top(x_top)
                    d.polygon(
                        [
                            (x_top - lw / 2, y_top),
                            (x_top + lw / 2, y_top),
                            (x_bot + lw * 0.3, H - 1),
                            (x_bot - lw * 0.3, H - 1),
                        ],
                        fill=255,
                    )

            m = _draw_mask((H, W), draw)
            used = color * rng.uniform(0.7, 0.95)
            rgb = _shade_part(m, used, rng, cx - span / 2, cx + span / 2)
            details.update(legs=n)
        else:
            # Outpainting-like stretch: the bottom rows of the product continue downward.
            band = max(2, int(h * 0.04))
            src = layer[fy - band : fy]
            rep = np.repeat(src[-1:], H - fy, axis=0)
            m = (rep[..., 3] > 0.5).astype(np.float32)
            rgb = rep[..., :3] * np.linspace(1.0, 0.8, H - fy, dtype=np.float32)[:, None, None]
            full_m = np.zeros((H, W), np.float32)
            full_rgb = np.zeros((H, W, 3), np.float32)
            full_m[fy:] = m
            full_rgb[fy:] = rgb
            m, rgb = full_m, full_rgb
            used = src[-1, :, :3][src[-1, :, 3] > 0.5].mean(axis=0)
        layer = _composite_under(layer, rgb, m)
        return layer, (padx, 0), {**details, "color": _u8(used)}
    if kind == "handle":
        r = max(6, int(h * rng.uniform(0.22, 0.35)))
        side = str(rng.choice(["left", "right"]))
        layer = _pad(layer, left=r if side == "left" else 0, right=r if side == "right" else 0)
        H, W = layer.shape[:2]
        rows = np.nonzero(layer[..., 3] > 0.5)
        cy = int(h * rng.uniform(0.35, 0.6))
        row = np.nonzero(layer[cy, :, 3] > 0.5)[0]
        if len(row) == 0:
            row = rows[1]
        ex = (row[0] if side == "left" else row[-1]) + (3 if side == "left" else -3)
        t = max(3, int(r * rng.uniform(0.2, 0.32)))
        m = _draw_mask(
            (H, W), lambda d: d.ellipse([ex - r, cy - r, ex + r, cy + r], outline=255, width=t)
        )
        m = m * (layer[..., 3] < 0.5)
        used = color * rng.uniform(0.7, 1.0)
        rgb = _shade_part(m, used, rng, ex - r, ex + r)
        layer = _composite_under(layer, rgb, m)
        details.update(side=side, color=_u8(used))
        return layer, (r if side == "left" else 0, 0), details
    # "top": an extra cap / knob / spout growing from the top of the product.
    ext = int(h * rng.uniform(0.25, 0.4))
    layer = _pad(layer, top=ext)
    H, W = layer.shape[:2]
    tb = _alpha_bbox(layer[..., 3])
    top_row = np.nonzero(layer[tb[1] + 2, :, 3] > 0.5)[0]
    tx = (top_row[0] + top_row[-1]) / 2 if len(top_row) else W / 2
    kw = max(6, (tb[2] - tb[0]) * rng.uniform(0.3, 0.55))
    y_join = tb[1] + max(3, int(h * 0.04))
    style = str(rng.choice(["cap", "knob", "arch"]))
    if style == "arch" and len(top_row):
        # Both ends of the arch must land on the product's top.
        kw = min(kw, max(3.0, (top_row[-1] - top_row[0]) * 0.45))

    def draw(d):
        if style == "cap":
            d.rounded_rectangle(
                [tx - kw / 2, y_join - ext, tx + kw / 2, y_join], radius=kw * 0.15, fill=255
            )
        elif style == "knob":
            d.rectangle([tx - kw * 0.2, y_join - ext * 0.6, tx + kw * 0.2, y_join], fill=255)
            d.ellipse([tx - kw / 2, y_join - ext, tx + kw / 2, y_join - ext * 0.45], fill=255)
        else:
            d.arc(
                [tx - kw, y_join - ext, tx + kw, y_join + ext],
                180,
                360,
                fill=255,
                width=max(3, int(kw * 0.18)),
            )

    m = _draw_mask((H, W), draw)
    used = color * rng.uniform(0.75, 1.0)
    rgb = _shade_part(m, used, rng, tx - kw / 2, tx + kw / 2)
    layer = _composite_under(layer, rgb, m)
    return layer, (0, ext), {**details, "style": style, "color": _u8(used)}


# --------------------------------------------------------------------------- examples


@dataclass
class SyntheticExample:
    image: Image.Image  # the creative (RGB)
    product: Image.Image  # the source cut-out as given to the generator (RGBA)
    label: str
    sku: str
    title: str
    category: str
    prompt: str
    negative_prompt: str
    params: dict
    seed: int
    mask: Image.Image | None = None  # product pixels as pasted (L), without grafted parts
    family: str = ""  # the product's family (colourway variants share it)
    extra_mask: Image.Image | None = None  # shape_hallucination: the grafted pixels (L)


def _product_size(src: ProductSource, s: float, S: int) -> tuple[int, int]:
    """(w, h) whose longer side is s * S."""
    a = src.aspect
    if a <= 1:
        h = s * S
        w = h * a
    else:
        w = s * S
        h = w / a
    return max(2, round(w)), max(2, round(h))


def generate_example(
    rng: np.random.Generator,
    defect: str,
    size: int = 256,
    product: ProductSource | None = None,
    *,
    products: Sequence[ProductSource] | None = None,
    seed: int | None = None,
) -> SyntheticExample:
    """One creative of `product` (default: a random SKU) showing `defect` (an RF1M class)."""
    if defect not in CLASSES:
        raise ValueError(f"unknown defect {defect!r}; expected one of {', '.join(CLASSES)}")
    S = int(size)
    if S < 32:
        raise ValueError("size must be at least 32 pixels")
    if product is None:
        pool = products if products is not None else load_products()
        product = pool[int(rng.integers(len(pool)))]
    params: dict = {"defect": defect}
    if seed is not None:
        params["seed"] = int(seed)
    colors = [np.asarray(c, np.float32) for c, share in product.colors if share >= 0.2] or [
        np.asarray(product.colors[0][0], np.float32)
    ]

    # Layout: wall/table boundary, table front edge, scene kind.
    kind = str(rng.choice(["room", "room", "studio", "outdoor"]))
    horizon = int(S * rng.uniform(0.45, 0.72))
    front = S if rng.random() < 0.55 or kind == "studio" else int(S * rng.uniform(0.88, 0.96))
    margin = max(2, int(S * 0.03))

    # Product size and placement per class.
    tilt = 0.0
    s_ranges = {
        "available": (0.4, 0.75),
        "unsuitable": (0.45, 0.75),
        "space_mismatch": (0.3, 0.5),
        "indistinctiveness": (0.4, 0.72),
        "shape_hallucination": (0.32, 0.55),
    }
    if defect == "size_mismatch":
        variant = "small" if rng.random() < 0.6 else "large"
        s = rng.uniform(0.08, 0.15) if variant == "small" else rng.uniform(0.88, 0.96)
        params["size_variant"] = variant
    else:
        s = rng.uniform(*s_ranges[defect])
    pw, ph = _product_size(product, s, S)
    layer = product.render(pw, ph)
    src_area = float(layer[..., 3].sum())
    # The intact cut-out's opaque box inside the layer, tracked through the defects that move
    # or pad the layer: the generator's *input* placement is recorded from it, never from the
    # damaged result (that box would leak the label).
    intact = list(_alpha_bbox(layer[..., 3]) or (0, 0, pw, ph))
    dx = dy = 0
    extra_mask_info = None

    if defect == "space_mismatch" and rng.random() < 0.45:
        tilt = float(rng.uniform(8, 25) * rng.choice([-1, 1]))
        img = Image.fromarray((np.clip(layer, 0, 1) * 255).astype(np.uint8), "RGBA")
        img = img.rotate(tilt, Image.BILINEAR, expand=True)
        layer = np.asarray(img, np.float32) / 255.0
        ox, oy = (layer.shape[1] - pw) / 2, (layer.shape[0] - ph) / 2  # rotation keeps the centre
        intact = [intact[0] + ox, intact[1] + oy, intact[2] + ox, intact[3] + oy]
        # The "product pixels" after a rotation are the rotated cut-out itself.
    product_alpha_layer = None
    if defect == "shape_hallucination":
        orig_a = layer[..., 3].copy()
        layer, (dx, dy), hall = _hallucinate(layer, rng, product.colors, S)
        intact = [intact[0] + dx, intact[1] + dy, intact[2] + dx, intact[3] + dy]
        params["hallucination"] = hall
        product_alpha_layer = np.zeros(layer.shape[:2], np.float32)
        product_alpha_layer[dy : dy + orig_a.shape[0], dx : dx + orig_a.shape[1]] = orig_a
        extra = (layer[..., 3] > 0.5) & (product_alpha_layer < 0.5)
        extra_mask_info = int(extra.sum())
    if defect == "unsuitable":
        # Independent mechanisms: cut by the frame, a bite or a straight slice removed, torn
        # along a ragged line, or hidden behind a foreground object (drawn after the paste).
        variant = str(
            rng.choice(
                ["frame", "frame", "frame_bottom", "chunk", "chunk", "slice", "torn", "occluded"]
            )
        )
        params["truncation"] = {"kind": variant}
        if variant in ("chunk", "slice", "torn"):
            layer, info = _remove_chunk(layer, rng, variant)
            params["truncation"].update(info)
    if product_alpha_layer is None:
        product_alpha_layer = layer[..., 3]

    lh, lw = layer.shape[:2]
    fx, fext, fy = _foot(layer[..., 3])
    top_y = _alpha_bbox(layer[..., 3])[1]
    obj_h = fy - top_y  # height of what stands on the table

    # Where the object stands (y of its lowest pixel) and its horizontal position.
    lo = max(horizon + int(S * 0.05), obj_h + margin)
    hi = (front - max(2, S // 100)) if front < S else S - margin
    if defect == "size_mismatch" and params["size_variant"] == "large":
        lo = hi = S - max(2, int(S * rng.uniform(0.01, 0.03)))
    if lo > hi:
        lo = hi
    ground = int(rng.uniform(lo, hi + 1)) if hi > lo else hi
    stand_y = ground  # y of the object's lowest pixel
    shadow_y = ground
    float_gap = 0
    if defect == "space_mismatch":
        variant = (
            "wall" if (rng.random() < 0.35 and horizon - margin > obj_h + S * 0.12) else "float"
        )
        if variant == "float":
            # The shadow stays on the table; the product hangs clearly above it.
            gap_min = int(S * 0.1)
            ground = (
                int(rng.uniform(max(horizon + S * 0.08, obj_h + gap_min + margin), hi + 1))
                if hi > max(horizon + S * 0.08, obj_h + gap_min + margin)
                else hi
            )
            max_gap = ground - obj_h - margin
            float_gap = int(rng.uniform(gap_min, max(gap_min + 1, min(max_gap, S * 0.25))))
            stand_y = ground - float_gap
            shadow_y = ground
        else:
            stand_y = int(rng.uniform(obj_h + margin, horizon - S * 0.12))
            shadow_y = None
            float_gap = horizon - stand_y
        params["space"] = {"kind": variant, "gap": int(float_gap), "tilt": round(tilt, 1)}

    ly = stand_y - fy
    if defect == "size_mismatch" and params["size_variant"] == "large":
        lx = int((S - lw) / 2 + rng.uniform(-0.5, 0.5) * max(0, S - lw - 2 * margin))
    else:
        free = S - lw - 2 * margin
        cxr = rng.uniform(0.25, 0.75) * S if free > 0 else S / 2
        lx = int(np.clip(cxr - lw / 2, margin, max(margin, S - lw - margin)))
    if defect == "unsuitable":
        v = params["truncation"]["kind"]
        if v == "frame":
            bb = _alpha_bbox(layer[..., 3])
            bw = bb[2] - bb[0]
            cut = rng.uniform(0.35, 0.55)
            if rng.random() < 0.5:
                lx = int(-bb[0] - bw * cut)
                params["truncation"]["side"] = "left"
            else:
                lx = int(S - bb[2] + bw * cut)
                params["truncation"]["side"] = "right"
        elif v == "frame_bottom":
            bb = _alpha_bbox(layer[..., 3])
            cut = rng.uniform(0.3, 0.45)
            ly = int(S - bb[3] + (bb[3] - bb[1]) * cut)
            params["truncation"]["side"] = "bottom"
            shadow_y = None

    # Scene colours: contrasting, except for indistinctiveness (the product's own colours).
    tint = None
    product_tex = None
    if defect == "indistinctiveness":
        c0 = colors[0]
        wall = np.clip(c0 + rng.uniform(-0.05, 0.05, 3).astype(np.float32), 0, 1)
        alt = colors[1] if len(colors) > 1 and rng.random() < 0.4 else c0
        surface = np.clip(
            alt * rng.uniform(0.9, 1.08) + rng.uniform(-0.04, 0.04, 3).astype(np.float32), 0, 1
        )
        tex = str(rng.choice(["stone", "cloth", "marble"]))
        tint = c0
        if rng.random() < 0.5:
            product_tex = _product_texture(layer, rng, S)
        else:
            product_tex = np.ones((S, S, 3), np.float32) * wall
        params["blend"] = {"wall": _u8(wall), "product": _u8(c0)}
    else:
        avoid = list(colors)
        if "hallucination" in params:
            # The grafted part must stand out from the scene just like the product does.
            avoid.append(np.asarray(params["hallucination"]["color"], np.float32) / 255.0)
        wall = _pick_wall(rng, avoid)
        surface, tex = _pick_surface(rng, wall, avoid)
        if rng.random() < 0.25:
            # Tone-on-tone scenes exist in every class, so a monochrome scene alone is no cue.
            tint = wall
    scene = _Scene(kind, horizon, front, wall, surface)
    bg = _render_scene(rng, S, horizon, front, wall, surface, tex, kind, product_tex)
    canvas = Image.fromarray((np.clip(bg, 0, 1) * 255).astype(np.uint8), "RGB")
    keep = (lx - S * 0.03, lx + lw + S * 0.03)
    scene.props = _draw_props(rng, canvas, S, scene, keep, tint)
    blur = rng.uniform(0.4, 1.6) * S / 256
    canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    img = np.asarray(canvas, np.float32) * (1.0 / 255.0)
    img = np.array(img)  # writable

    # Shadows.
    shadow_strength = rng.uniform(0.35, 0.6)
    if defect == "indistinctiveness":
        shadow_strength = rng.uniform(0.1, 0.2)
    foot_x = lx + fx
    if shadow_y is not None:
        if defect == "space_mismatch":
            # Detached: smaller, fainter, on the table under the product.
            _ellipse_shadow(
                img,
                foot_x,
                shadow_y,
                fext * rng.uniform(0.35, 0.55),
                max(2, fext * 0.06),
                shadow_strength * 0.6,
                2.0,
            )
        else:
            if rng.random() < 0.6:
                _cast_shadow(img, layer, lx, ly, shadow_strength * 0.55, rng, S)
            ry = max(2.5, fext * rng.uniform(0.08, 0.14))
            _ellipse_shadow(
                img,
                foot_x,
                shadow_y + ry * 0.2,
                fext * rng.uniform(0.6, 0.8) + 2,
                ry,
                shadow_strength,
                1.0,
            )
            # Contact occlusion: the darkest line right where the product touches the table.
            _ellipse_shadow(
                img,
                foot_x,
                shadow_y,
                fext * 0.52 + 1,
                max(1.5, fext * 0.04),
                min(0.85, shadow_strength * 1.5),
                0.7,
            )

    # The product: lit like the scene, then composited.
    light = np.clip(1 + rng.uniform(-0.08, 0.05, 3), 0.85, 1.1).astype(np.float32)
    layer = layer.copy()
    layer[..., :3] = np.clip(layer[..., :3] * light, 0, 1)
    if defect == "indistinctiveness" and rng.random() < 0.6:
        haze = rng.uniform(0.1, 0.3)
        layer[..., :3] = layer[..., :3] * (1 - haze) + wall * haze
        params["blend"]["haze"] = round(float(haze), 3)
    _paste(img, layer, lx, ly)
    mask = np.zeros((S, S), np.float32)
    pa = np.zeros(layer.shape[:2], np.float32)
    pa[:] = product_alpha_layer
    _paste_alpha(mask, pa, lx, ly)
    if params.get("truncation", {}).get("kind") == "occluded":
        params["truncation"].update(_occlude(img, mask, rng, wall, surface, S))
    extra_img = None
    if defect == "shape_hallucination":
        extra = np.zeros((S, S), np.float32)
        _paste_alpha(extra, ((layer[..., 3] > 0.5) & (pa < 0.5)).astype(np.float32), lx, ly)
        extra_img = Image.fromarray((extra * 255).astype(np.uint8), "L")

    # Camera: grade, vignette, grain (equal across classes).
    gain = rng.uniform(0.92, 1.06)
    img *= gain
    vig = rng.uniform(0.0, 0.35)
    if vig > 0.02:
        r2 = (
            (np.arange(S, dtype=np.float32)[None, :] / S - 0.5) ** 2
            + (np.arange(S, dtype=np.float32)[:, None] / S - 0.5) ** 2
        ) * 2
        img *= (1 - vig * r2)[..., None]
    grain = rng.uniform(0.0, 0.02) if rng.random() < 0.5 else 0.0
    if grain > 0.004:
        img += rng.standard_normal((S, S, 1), dtype=np.float32) * grain
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")

    # Geometry of the product as placed (in image pixels; may extend past the frame).
    pbb = _alpha_bbox(product_alpha_layer) or (0, 0, lw, lh)
    box = [lx + pbb[0], ly + pbb[1], lx + pbb[2], ly + pbb[3]]
    visible_area = float(mask.sum())
    vis = _alpha_bbox(mask)
    params.update(
        {
            # Where the layout step put the intact product (what a generation pipeline knows
            # before generating): a legitimate model input.
            "placement": [
                int(round(lx + intact[0])),
                int(round(ly + intact[1])),
                int(round(lx + intact[2])),
                int(round(ly + intact[3])),
            ],
            # Ground-truth geometry of the result (after the defect): for tests and analysis
            # only, never a model input (it encodes the label).
            "box": [int(v) for v in box],
            "visible_box": [int(v) for v in vis] if vis else None,
            "scale": round(float(max(box[2] - box[0], box[3] - box[1]) / S), 4),
            "visible_fraction": round(visible_area / max(src_area, 1e-6), 4),
            "surface_y": int(shadow_y if shadow_y is not None else ground),
            "horizon_y": int(horizon),
            "scene": {
                "kind": kind,
                "table_front_y": int(front),
                "wall": _u8(wall),
                "surface": _u8(surface),
                "texture": tex,
                "props": scene.props,
                "blur": round(float(blur), 2),
            },
            "size": S,
        }
    )
    if extra_mask_info is not None:
        params["hallucination"]["extra_pixels"] = extra_mask_info
    prompt, negative = _prompt(rng, product, wall, surface)
    return SyntheticExample(
        image=out,
        product=product.image,
        label=defect,
        sku=product.sku,
        family=product.family or product.sku,
        title=product.title,
        category=product.category,
        prompt=prompt,
        negative_prompt=negative,
        params=params,
        seed=int(seed) if seed is not None else 0,
        mask=Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8), "L"),
        extra_mask=extra_img,
    )


def _paste_alpha(dst, a, x, y):
    S = dst.shape[0]
    h, w = a.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(S, x + w), min(S, y + h)
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = a[y0 - y : y1 - y, x0 - x : x1 - x]


def _product_texture(layer, rng, S) -> np.ndarray:
    """A blurred tiling of a patch of the product: the background takes on its texture."""
    h, w = layer.shape[:2]
    a = layer[..., 3]
    ys, xs = np.nonzero(a > 0.9)
    if len(ys) == 0:
        return np.tile(layer[..., :3].mean(axis=(0, 1)), (S, S, 1))
    i = int(rng.integers(len(ys)))
    ph = max(4, h // 4)
    pw = max(4, w // 4)
    y0 = int(np.clip(ys[i] - ph // 2, 0, max(0, h - ph)))
    x0 = int(np.clip(xs[i] - pw // 2, 0, max(0, w - pw)))
    patch = layer[y0 : y0 + ph, x0 : x0 + pw, :3]
    pa = layer[y0 : y0 + ph, x0 : x0 + pw, 3:4]
    fill = layer[..., :3][a > 0.9].mean(axis=0)
    patch = patch * pa + fill * (1 - pa)
    tile = Image.fromarray((np.clip(patch, 0, 1) * 255).astype(np.uint8), "RGB")
    reps = int(rng.integers(2, 5))
    tile = tile.resize((max(1, S // reps), max(1, S // reps)), Image.BILINEAR)
    big = Image.new("RGB", (S, S))
    for ty in range(0, S, tile.height):
        for tx in range(0, S, tile.width):
            big.paste(tile, (tx, ty))
    big = big.filter(ImageFilter.GaussianBlur(S / 64))
    return np.asarray(big, np.float32) / 255.0


def _occlude(img, mask, rng, wall, surface, S) -> dict:
    """Hide 35-60% of the product behind a foreground object (a box or vase in a scene-like
    colour, with its own shading) and drop the hidden pixels from the product mask."""
    bb = _alpha_bbox(mask)
    if bb is None:
        return {"occluded_fraction": 0.0}
    x0, y0, x1, y1 = bb
    total = float(mask.sum())
    yy = np.arange(S, dtype=np.float32)[:, None]
    xx = np.arange(S, dtype=np.float32)[None, :]
    shape = str(rng.choice(["box", "vase"]))
    occ = np.zeros((S, S), np.float32)
    for _ in range(8):
        w = (x1 - x0) * rng.uniform(0.45, 0.8)
        cx = rng.choice([x0 + w * 0.3, x1 - w * 0.3])
        top = y0 + (y1 - y0) * rng.uniform(0.15, 0.5)
        if shape == "box":
            occ = ((np.abs(xx - cx) <= w / 2) & (yy >= top)).astype(np.float32)
        else:
            r = np.clip((yy - top) / max(1.0, S - top), 0, 1)
            half = w / 2 * (0.6 + 0.6 * np.sin(np.pi * np.minimum(r * 1.6, 1.0)))
            occ = ((np.abs(xx - cx) <= half) & (yy >= top)).astype(np.float32)
        hidden = float((mask * occ).sum()) / max(total, 1e-6)
        if 0.35 <= hidden <= 0.7:
            break
    base = np.clip(
        (wall * 0.4 + surface * 0.6) * rng.uniform(0.6, 1.2) + rng.uniform(-0.1, 0.1, 3), 0, 1
    ).astype(np.float32)
    shade = np.clip(0.85 + 0.3 * (xx - xx.mean()) / S, 0.6, 1.2)
    layer = base[None, None, :] * shade[..., None]
    img[:] = img * (1 - occ[..., None]) + layer * occ[..., None]
    mask *= 1 - occ
    return {"occluder": shape, "occluded_fraction": round(hidden, 4)}


def _remove_chunk(layer, rng, variant):
    """Cut part of the product away (a straight slice through it or a bite out of a side)."""
    h, w = layer.shape[:2]
    a = layer[..., 3]
    total = float(a.sum())
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    bb = _alpha_bbox(a)
    x0, y0, x1, y1 = bb
    for _ in range(8):
        if variant == "torn":
            # A ragged tear: a random walk across the product, the far side gone.
            ang = rng.uniform(-math.pi * 0.9, -math.pi * 0.1)
            nx, ny = math.cos(ang), math.sin(ang)
            frac = rng.uniform(0.3, 0.5)
            proj = (xx - (x0 + x1) / 2) * nx + (yy - (y0 + y1) / 2) * ny
            along = (xx - (x0 + x1) / 2) * -ny + (yy - (y0 + y1) / 2) * nx
            steps = np.cumsum(rng.normal(0, 1.0, 256)) * max(1.0, (x1 - x0) / 60)
            k = np.clip((along - along.min()) / max(1e-6, np.ptp(along)) * 255, 0, 255)
            proj = proj + steps[k.astype(int)]
            t = np.quantile(proj[a > 0.5], 1 - frac)
            keep = (proj < t).astype(np.float32)
        elif variant == "slice":
            # A straight cut through the upper/side part: the product keeps its base.
            ang = rng.uniform(-math.pi * 0.85, -math.pi * 0.15)  # normal pointing up-ish
            nx, ny = math.cos(ang), math.sin(ang)
            frac = rng.uniform(0.32, 0.5)
            proj = (xx - (x0 + x1) / 2) * nx + (yy - (y0 + y1) / 2) * ny
            vals = proj[a > 0.5]
            t = np.quantile(vals, 1 - frac)
            jag = rng.random() < 0.5
            if jag:
                proj = proj + np.sin(xx * 0.9 + yy * 0.7) * 1.5
            keep = (proj < t).astype(np.float32)
        else:
            side = rng.choice(["left", "right", "top"])
            rx = (x1 - x0) * rng.uniform(0.4, 0.65)
            ry = (y1 - y0) * rng.uniform(0.3, 0.5)
            if side == "left":
                cx, cy = x0, rng.uniform(y0 + ry * 0.5, y1 - ry)
            elif side == "right":
                cx, cy = x1, rng.uniform(y0 + ry * 0.5, y1 - ry)
            else:
                cx, cy = rng.uniform(x0 + rx * 0.3, x1 - rx * 0.3), y0
            keep = ((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) > 1).astype(np.float32)
        removed = 1 - float((a * keep).sum()) / max(total, 1e-6)
        if removed >= 0.28:
            break
    else:
        # No bite was big enough (thin or odd silhouettes): a straight cut always is.
        proj = (xx - (x0 + x1) / 2) * 0.0 + (yy - (y0 + y1) / 2) * -1.0
        keep = (proj < np.quantile(proj[a > 0.5], 0.6)).astype(np.float32)
        removed = 1 - float((a * keep).sum()) / max(total, 1e-6)
    out = layer.copy()
    out[..., 3] = a * keep
    # The exposed edge reads as a cut: a darker rim along it (not along the original outline).
    gone = (keep == 0) & (a > 0.5)
    near = np.zeros_like(gone)
    for d in range(1, max(2, w // 60) + 1):
        near |= (
            np.roll(gone, d, 0) | np.roll(gone, -d, 0) | np.roll(gone, d, 1) | np.roll(gone, -d, 1)
        )
    out[..., :3][near & (keep > 0) & (a > 0.5)] *= 0.62
    return out, {"removed_fraction": round(removed, 4)}


def _prompt(rng, product, wall, surface):
    shared = _default_shared_dir()
    templates = _prompt_templates(str(shared.resolve()) if shared.is_dir() else "")
    t = templates[int(rng.integers(len(templates)))]
    text = t["prompt"]
    if "{}" in text:
        text = text.replace("{}", color_name(wall), 1)
    title = product.title.lower()
    # RF1M prompts say "a product": name it; others get the title in front.
    has_slot = "a product" in text
    text = text.replace("a product", f"a {title}", 1) if has_slot else f"{title}, {text}"
    return text, t.get("negative_prompt", "")


# --------------------------------------------------------------------------- datasets


def example_seed(seed: int, index: int) -> int:
    """The per-example seed of example `index` of a dataset drawn with `seed`."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def _choose_defect(rng, class_weights) -> str:
    if class_weights is None:
        return CLASSES[int(rng.integers(len(CLASSES)))]
    w = np.array([float(class_weights.get(c, 0.0)) for c in CLASSES])
    if w.sum() <= 0:
        raise ValueError("class_weights must give a positive weight to at least one class")
    return CLASSES[int(rng.choice(len(CLASSES), p=w / w.sum()))]


def make_example(
    index: int, seed: int, size: int, products, class_weights=None
) -> SyntheticExample:
    es = example_seed(seed, index)
    rng = np.random.default_rng(es)
    defect = _choose_defect(rng, class_weights)
    product = products[int(rng.integers(len(products)))]
    return generate_example(rng, defect, size, product, seed=es)


def generate_dataset(
    n: int,
    seed: int = 0,
    size: int = 256,
    class_weights: dict | None = None,
    products: Sequence[ProductSource] | None = None,
) -> Iterator[SyntheticExample]:
    """`n` examples; example i depends only on (seed, i), the catalogue and the size."""
    products = list(products) if products is not None else load_products()
    for i in range(int(n)):
        yield make_example(i, seed, size, products, class_weights)


def example_id(seed: int, index: int) -> str:
    return f"synth-{int(seed)}-{int(index):06d}"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _manifest_row(ex: SyntheticExample, index: int, seed: int, with_labels: bool) -> dict:
    eid = example_id(seed, index)
    row = {
        "id": eid,
        "image": f"creatives/{eid}.png",
        "product_image": f"products/{_safe(ex.sku)}.png",
        "sku": ex.sku,
        "family": ex.family,
        "title": ex.title,
        "category": ex.category,
        "prompt": ex.prompt,
        "negative_prompt": ex.negative_prompt,
        "seed": ex.seed,
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "params": ex.params,
    }
    if with_labels:
        row["label"] = ex.label
    return row


def _write_chunk(args) -> list[dict]:
    out_dir, indices, seed, size, with_labels, shared, class_weights = args
    products = load_products(shared or None, include_shared=bool(shared))
    rows = []
    for i in indices:
        ex = make_example(i, seed, size, products, class_weights)
        row = _manifest_row(ex, i, seed, with_labels)
        ex.image.save(Path(out_dir) / row["image"], format="PNG", compress_level=1)
        rows.append(row)
    return rows


def write_manifest(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: int = 256,
    with_labels: bool = True,
    workers: int = 1,
    *,
    shared_dir: str | Path | None = None,
    include_shared: bool = True,
    class_weights: dict | None = None,
) -> Path:
    """Write `creatives/*.png`, `products/<sku>.png` (one per SKU used) and `manifest.jsonl` (the
    import format, paths relative to the manifest) into `out_dir`; returns the manifest path.
    The manifest is written last, atomically: a half-written folder never has one."""
    out = Path(out_dir)
    (out / "creatives").mkdir(parents=True, exist_ok=True)
    (out / "products").mkdir(parents=True, exist_ok=True)
    products = load_products(shared_dir, include_shared=include_shared)
    shared = ""
    if include_shared and products and products[0].origin == "shared":
        shared = (
            str(Path(shared_dir).resolve()) if shared_dir else str(_default_shared_dir().resolve())
        )
    n, workers = int(n), max(1, int(workers))
    step = min(64, max(4, math.ceil(n / (workers * 4))))
    chunks = [list(range(i, min(n, i + step))) for i in range(0, n, step)]
    jobs = [(str(out), c, int(seed), int(size), with_labels, shared, class_weights) for c in chunks]
    rows: list[dict] = []
    if workers == 1 or len(chunks) <= 1:
        for job in jobs:
            rows.extend(_write_chunk(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(_write_chunk, jobs):
                rows.extend(part)
    by_sku = {p.sku: p for p in products}
    for sku in sorted({r["sku"] for r in rows}):
        path = out / "products" / f"{_safe(sku)}.png"
        if not path.exists():
            by_sku[sku].image.save(path, format="PNG")
    manifest = out / "manifest.jsonl"
    tmp = out / "manifest.jsonl.tmp"
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, manifest)
    return manifest


def contact_sheet(
    examples: Sequence[SyntheticExample], columns: int = 4, cell: int = 192
) -> Image.Image:
    """A grid of examples (for eyeballing the generator); each cell is captioned by its label."""
    rows = math.ceil(len(examples) / columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + 14)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, ex in enumerate(examples):
        x, y = (i % columns) * cell, (i // columns) * (cell + 14)
        sheet.paste(ex.image.resize((cell, cell), Image.BILINEAR), (x, y + 14))
        d.text((x + 3, y + 1), f"{ex.label} {ex.sku}"[:34], fill=(0, 0, 0))
    return sheet
