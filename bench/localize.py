"""Localisation of flat-colour and textured products (`feedback.ml.localize.locate_product`).

Independent generators often draw products as flat-colour shapes. Zero-mean correlation has
nothing to correlate in such a cut-out, so before the silhouette matcher they were never found
(no placement, zero `placed` maps, for every creative of such a catalogue). This draws N
creatives per case, each a product pasted at a random scale (0.1-0.8 of the frame) and position
(a quarter of them cut by the frame) on one of four backgrounds (flat, gradient, noise, a scene
of random boxes), then lighting gain, noise and a JPEG round trip at random, and reports how
often the box is found with IoU >= 0.5 against the true box (clipped to the frame), the median
IoU, how often a creative WITHOUT the product gets a box (false positives), and ms/creative.

    python bench/localize.py --n 300 --seed 0            # appends to bench/RESULTS.md
    python bench/localize.py --n 300 --seed 0 --no-flat  # the matcher without the flat path
    python bench/localize.py --manifest /tmp/ogflat/manifest.jsonl   # + an imported manifest

With --manifest (e.g. `bench/othergen.py OUT --flat-products`), whose rows carry no box, the
first --n `available` / `size_mismatch` rows (intact products) are also localised and a box
counts as right when the cut-out resized into it differs from the creative there by at most
0.12 (mean absolute difference over its opaque pixels, in [0, 1]).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedback.ml import localize  # noqa: E402

SIZE = 256
SHAPES = ("ellipse", "rectangle", "polygon", "l_shape", "bottle")


def _silhouette(rng, shape: str, w: int, h: int) -> np.ndarray:
    a = np.zeros((h, w), np.uint8)
    if shape == "ellipse":
        cv2.ellipse(a, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 255, -1)
    elif shape == "rectangle":
        a[:] = 255
    elif shape == "polygon":
        n = int(rng.integers(5, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.55, 1.0, n)
        pts = np.stack(
            [w / 2 + rad * (w / 2 - 1) * np.cos(ang), h / 2 + rad * (h / 2 - 1) * np.sin(ang)], 1
        )
        cv2.fillPoly(a, [pts.astype(np.int32)], 255)
    elif shape == "l_shape":
        a[:, : w // 2] = 255
        a[h // 2 :, :] = 255
    else:  # bottle: a neck on a body
        a[h // 3 :, :] = 255
        a[: h // 3, w // 3 : w - w // 3] = 255
    return a


def product(rng, textured: bool) -> np.ndarray:
    w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
    rgb = np.zeros((h, w, 3), np.float32) + rng.uniform(0, 1, 3)
    if textured:  # stripes and a label
        yy, xx = np.mgrid[0:h, 0:w]
        rgb += 0.25 * np.sin(yy[..., None] / rng.uniform(2, 6) + rng.uniform(0, 6, 3))
        rgb[h // 3 : h // 2, w // 5 : 4 * w // 5] = rng.uniform(0, 1, 3)
    a = _silhouette(rng, str(rng.choice(SHAPES)), w, h)
    return np.dstack([np.clip(rgb * 255, 0, 255).astype(np.uint8), a])


def background(rng) -> np.ndarray:
    kind = int(rng.integers(4))
    c = rng.uniform(0, 1, 3)
    if kind == 0:
        bg = np.zeros((SIZE, SIZE, 3)) + c
    elif kind == 1:
        t = np.linspace(0, 1, SIZE)[:, None, None]
        bg = c * (1 - t) + rng.uniform(0, 1, 3) * t + np.zeros((SIZE, SIZE, 3))
    elif kind == 2:
        bg = np.clip(c + rng.normal(0, 0.15, (SIZE, SIZE, 3)), 0, 1)
    else:
        bg = np.zeros((SIZE, SIZE, 3)) + c
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = rng.integers(0, SIZE, 2)
            bw, bh = rng.integers(10, 90, 2)
            bg[y0 : y0 + bh, x0 : x0 + bw] = rng.uniform(0, 1, 3)
    return bg.astype(np.float32)


def creative(rng, prod: np.ndarray | None) -> tuple[Image.Image, tuple[float, ...] | None]:
    img = background(rng)
    box = None
    if prod is not None:
        s = rng.uniform(0.1, 0.8) * SIZE / max(prod.shape[:2])
        w, h = max(4, round(prod.shape[1] * s)), max(4, round(prod.shape[0] * s))
        p = cv2.resize(prod, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        if rng.random() < 0.25:  # cut by the frame
            x0 = int(rng.choice([-w // 3, SIZE - 2 * w // 3]))
            y0 = int(rng.integers(0, max(1, SIZE - h)))
        else:
            x0, y0 = int(rng.integers(0, max(1, SIZE - w))), int(rng.integers(0, max(1, SIZE - h)))
        X0, Y0, X1, Y1 = max(0, x0), max(0, y0), min(SIZE, x0 + w), min(SIZE, y0 + h)
        sub = p[Y0 - y0 : Y1 - y0, X0 - x0 : X1 - x0]
        a = sub[..., 3:]
        img[Y0:Y1, X0:X1] = img[Y0:Y1, X0:X1] * (1 - a) + sub[..., :3] * a
        ys, xs = np.nonzero(sub[..., 3] >= 0.5)
        if len(ys):  # else the frame cut off all of it: the caller draws again
            box = (X0 + xs.min(), Y0 + ys.min(), X0 + xs.max() + 1, Y0 + ys.max() + 1)
    if rng.random() < 0.5:
        img = img * rng.uniform(0.85, 1.1)
    if rng.random() < 0.5:
        img = img + rng.normal(0, 0.02, img.shape)
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out, box


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def run_case(textured: bool, n: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, int(textured)])
    ious, false_pos, t = [], 0, 0.0
    for _ in range(n):
        prod = product(rng, textured)
        cut = Image.fromarray(prod, "RGBA")
        im, box = creative(rng, prod)
        while box is None:
            im, box = creative(rng, prod)
        t0 = time.perf_counter()
        found = localize.locate_product(im, cut)
        t += time.perf_counter() - t0
        if found is None:
            ious.append(0.0)
        else:  # the true box is clipped to the frame; so is the found one
            fb = [min(max(v, 0), SIZE) for v in found.box]
            ious.append(iou(fb, box))
        empty, _ = creative(rng, None)
        false_pos += localize.locate_product(empty, cut) is not None
    ious = np.array(ious)
    return {
        "hit": float((ious >= 0.5).mean()),
        "found": float((ious > 0).mean()),
        "median_iou": float(np.median(ious)),
        "false_pos": false_pos / n,
        "ms": 1000 * t / n,
    }


def pasted_difference(im: Image.Image, cut: Image.Image, box) -> float:
    """Mean |creative - cut-out| over the cut-out's opaque pixels resized into `box`."""
    x0, y0, x1, y1 = box
    tight = Image.fromarray(localize._tight_rgba(cut))  # the crop the matcher searches with
    w, h = max(1, round(x1 - x0)), max(1, round(y1 - y0))
    c = np.asarray(tight.resize((w, h), Image.BILINEAR), np.float32) / 255
    img = np.asarray(im, np.float32) / 255
    X0, Y0 = round(x0), round(y0)
    sx0, sy0 = max(0, X0), max(0, Y0)
    sx1, sy1 = min(img.shape[1], X0 + w), min(img.shape[0], Y0 + h)
    if sx1 <= sx0 or sy1 <= sy0:
        return 1.0
    cc = c[sy0 - Y0 : sy1 - Y0, sx0 - X0 : sx1 - X0]
    m = cc[..., 3] > 0.5
    diff = np.abs(img[sy0:sy1, sx0:sx1] - cc[..., :3]).mean(-1)
    return float(diff[m].mean()) if m.any() else 1.0


def run_manifest(manifest: Path, n: int) -> dict:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["label"] in ("available", "size_mismatch")][:n]
    diffs, t = [], 0.0
    for r in rows:
        im = Image.open(manifest.parent / r["image"]).convert("RGB")
        cut = Image.open(manifest.parent / r["product_image"])
        t0 = time.perf_counter()
        found = localize.locate_product(im, cut)
        t += time.perf_counter() - t0
        diffs.append(1.0 if found is None else pasted_difference(im, cut, found.box))
    diffs = np.array(diffs)
    return {
        "n": len(rows),
        "right": float((diffs <= 0.12).mean()),
        "none": float((diffs == 1.0).mean()),
        "ms": 1000 * t / max(1, len(rows)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-flat", action="store_true", help="disable the flat-colour path")
    ap.add_argument("--manifest", type=Path, default=None, help="also localise this manifest")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if args.no_flat:
        localize.FLAT_STD = 0.0
    cv2.setNumThreads(1)
    rows = []
    for textured in (False, True):
        r = run_case(textured, args.n, args.seed)
        name = "textured" if textured else "flat colour"
        rows.append(
            f"| {name} | {args.n} | {r['hit']:.3f} | {r['found']:.3f} | {r['median_iou']:.3f} "
            f"| {r['false_pos']:.3f} | {r['ms']:.0f} |"
        )
        print(rows[-1], flush=True)
    extra = []
    if args.manifest is not None:
        r = run_manifest(args.manifest, args.n)
        extra = [
            "",
            f"`{args.manifest}`, first {r['n']} available / size_mismatch rows: box right "
            f"(pasted difference ≤ 0.12) **{r['right']:.3f}**, not found {r['none']:.3f}, "
            f"{r['ms']:.0f} ms / creative.",
        ]
        print(extra[-1], flush=True)
    cmd = "python bench/localize.py " + " ".join(sys.argv[1:])
    text = "\n".join(
        [
            "",
            "## Localisation of flat-colour and textured products "
            f"({dt.datetime.now():%Y-%m-%d %H:%M})",
            "",
            f"Command: `{cmd}`  ",
            f"Machine: {platform.machine()}, 1 thread. Matcher: "
            + ("without the flat-colour path (FLAT_STD = 0)" if args.no_flat else "as shipped")
            + f". {args.n} creatives per row at {SIZE} px, seed {args.seed}; false positives on "
            "as many creatives without the product.",
            "",
            "| products | n | IoU ≥ 0.5 | found | median IoU | false positives | ms / creative |",
            "|---|---|---|---|---|---|---|",
            *rows,
            *extra,
            "",
        ]
    )
    if not args.no_append:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
