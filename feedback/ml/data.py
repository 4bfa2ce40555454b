"""Samples, the per-dataset memmap cache and the torch Dataset over it.

Each image is decoded, resized and turned into its maps ONCE (process pool) into uint8 memmaps
under cache_dir/<key>/, key = hash(sample inputs + file stats + image size + depth model).
Epochs then only slice memmaps: no PNG decoding in the training loop.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import MODALITY_CHANNELS
from .preprocess import (
    MODALITY_PARTS,
    PIXEL_MODALITIES,
    PRODUCT_ARRAYS,
    STORED_CHANNELS,
    process_chunk,
    process_sample,
)

# Bump when preprocessing changes so stale caches are not reused (3: products stored once,
# only the arrays the modalities need; 4: coarse-to-fine localisation; 5: flat-colour products
# localised by their silhouette).
CACHE_VERSION = 5


@dataclass
class Sample:
    creative_path: str
    product_path: str
    label: int | None = None
    caption: str = ""
    group: str = ""  # e.g. the SKU: splits keep a group on one side
    placement: Sequence[float] | None = None  # (x0, y0, x1, y1) creative pixels, if known


def cache_key(
    samples: Sequence[Sample],
    image_size: int,
    depth_model_path: str | None,
    arrays: Sequence[str] = (),
) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps([CACHE_VERSION, image_size, depth_model_path or "", sorted(arrays)]).encode()
    )
    for s in samples:
        stats = []
        for p in (s.creative_path, s.product_path):
            try:
                st = os.stat(p)
                stats.append([st.st_size, st.st_mtime_ns])
            except OSError:
                stats.append(None)
        placement = [float(v) for v in s.placement] if s.placement is not None else None
        h.update(json.dumps([str(s.creative_path), str(s.product_path), placement, stats]).encode())
    return h.hexdigest()[:24]


class Cache:
    """An on-disk cache, opened read-only: one (N, C, S, S) uint8 memmap per stored per-creative
    array and one (P, C, S, S) per per-product array (each product stored once; `product_index`
    maps creative rows to product rows). `rows(modality, idx)` assembles a model input."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta = json.loads((self.path / "meta.json").read_text())
        self.n: int = meta["n"]
        self.n_products: int = meta["n_products"]
        self.image_size: int = meta["image_size"]
        self.arrays: list[str] = meta["arrays"]
        self.modalities: list[str] = meta["modalities"]
        self.built_now = False  # set by build_cache when this call built it
        self._arrays: dict[str, np.memmap] = {}
        self._product_index: np.ndarray | None = None

    def _raw(self, name: str) -> np.memmap:
        if name not in self._arrays:
            rows = self.n_products if name in PRODUCT_ARRAYS else self.n
            shape = (rows, STORED_CHANNELS[name], self.image_size, self.image_size)
            self._arrays[name] = np.memmap(
                self.path / f"{name}.u8", dtype=np.uint8, mode="r", shape=shape
            )
        return self._arrays[name]

    @property
    def product_index(self) -> np.ndarray:
        if self._product_index is None:
            self._product_index = np.load(self.path / "product_index.npy")
        return self._product_index

    def rows(self, modality: str, idx: np.ndarray) -> np.ndarray:
        """(len(idx), C, S, S) uint8 of a modality for creative rows `idx` (sorted is fastest)."""
        if modality not in self.modalities:
            raise KeyError(f"cache {self.path} has no {modality!r} maps")
        idx = np.asarray(idx, dtype=np.int64)

        def get(name: str) -> np.ndarray:
            if name in PRODUCT_ARRAYS:
                return np.asarray(self._raw(name)[self.product_index[idx]])
            return np.asarray(self._raw(name)[idx])

        parts = [get(name)[:, ch] for name, ch in MODALITY_PARTS[modality]]
        return np.ascontiguousarray(np.stack(parts, 1))

    def array(self, modality: str) -> np.ndarray:
        """Every row of a modality (small caches, tests and benches)."""
        return self.rows(modality, np.arange(self.n))

    def __getstate__(self) -> dict[str, Any]:  # memmaps reopen lazily in DataLoader workers
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state


def arrays_for(modalities: Sequence[str]) -> list[str]:
    """The stored arrays the given modalities are assembled from."""
    out = []
    for m in modalities:
        for name, _ in MODALITY_PARTS.get(m, ()):
            if name not in out:
                out.append(name)
    return out


def build_cache(
    samples: Sequence[Sample],
    cache_dir: str | os.PathLike,
    image_size: int,
    *,
    modalities: Sequence[str] | None = None,
    depth_model_path: str | None = None,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Cache:
    """Return the cache for these samples, building it (atomically) if it does not exist yet.

    Only what `modalities` (default: every pixel modality) needs is computed and stored, and
    each product's maps once however many creatives show it."""
    if not samples:
        raise ValueError("build_cache: no samples")
    wanted = [m for m in (modalities or PIXEL_MODALITIES) if m in PIXEL_MODALITIES]
    arrays = arrays_for(wanted)
    cache_dir = Path(cache_dir)
    key = cache_key(samples, image_size, depth_model_path, arrays)
    final = cache_dir / f"{key}-{image_size}px"
    if (final / "meta.json").exists():
        return Cache(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        n = len(samples)
        product_rows: dict[str, int] = {}
        product_index = np.array(
            [product_rows.setdefault(str(s.product_path), len(product_rows)) for s in samples],
            dtype=np.int64,
        )
        n_products = len(product_rows)
        np.save(tmp / "product_index.npy", product_index)
        for name in arrays:
            rows_n = n_products if name in PRODUCT_ARRAYS else n
            shape = (rows_n, STORED_CHANNELS[name], image_size, image_size)
            np.memmap(tmp / f"{name}.u8", dtype=np.uint8, mode="w+", shape=shape).flush()
        first_of_product = set()
        rows = []
        for i, s in enumerate(samples):
            p = int(product_index[i])
            write_product = p not in first_of_product
            first_of_product.add(p)
            rows.append(
                (
                    i,
                    p if write_product else -1,  # product maps written by its first creative
                    str(s.creative_path),
                    str(s.product_path),
                    list(s.placement) if s.placement is not None else None,
                )
            )
        if workers is None:
            workers = min(4, os.cpu_count() or 1)
        common = (str(tmp), n, n_products, image_size, arrays)
        if workers <= 1 or n < 64:
            process_chunk((*common, rows))
        else:
            chunk = max(16, -(-n // (workers * 4)))
            jobs = [(*common, rows[i : i + chunk]) for i in range(0, n, chunk)]
            # spawn: safe next to torch threads; the worker module imports no torch.
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                done = 0
                for k in pool.map(process_chunk, jobs):
                    done += k
                    if log:
                        log(f"cache {key}: {done}/{n} decoded")
        if depth_model_path:
            _write_depth(tmp, samples, image_size, depth_model_path)
            arrays.append("depth")
            wanted.append("depth")
        (tmp / "meta.json").write_text(
            json.dumps(
                {
                    "n": n,
                    "n_products": n_products,
                    "image_size": image_size,
                    "arrays": arrays,
                    "modalities": wanted,
                    "version": CACHE_VERSION,
                    "samples": [
                        asdict(s)
                        | {"placement": (list(s.placement) if s.placement is not None else None)}
                        for s in samples
                    ],
                }
            )
        )
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same cache first: theirs is identical.
            if not (final / "meta.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return Cache(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cache = Cache(final)
    cache.built_now = True
    return cache


def _write_depth(root: Path, samples: Sequence[Sample], size: int, path: str) -> None:
    from .maps import DepthEstimator

    est = DepthEstimator(path)
    mm = np.memmap(
        root / "depth.u8", dtype=np.uint8, mode="w+", shape=(len(samples), 1, size, size)
    )
    for start in range(0, len(samples), 8):
        batch = samples[start : start + 8]
        ims = [Image.open(s.creative_path).convert("RGB") for s in batch]
        for j, d in enumerate(est.predict(ims, size)):
            mm[start + j, 0] = np.clip(np.rint(d * 255), 0, 255).astype(np.uint8)
    mm.flush()


def sample_arrays(
    sample: Sample, image_size: int, depth: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Uncached preprocessing of one sample (scoring a handful of images)."""
    arrays = process_sample(sample.creative_path, sample.product_path, image_size, sample.placement)
    if depth is not None:
        arrays["depth"] = depth
    return arrays


# Modalities whose first three channels are the product's colours (creative, cut-out, placed).
COLOUR_MODALITIES = ("image", "product", "placed")


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate (C, H, W) by (dy, dx) pixels, zero fill."""
    if dy == 0 and dx == 0:
        return x
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


class CachedDataset(torch.utils.data.Dataset):
    """Items from a Cache. Batched fetch (`__getitems__`) slices the memmaps once per batch.

    Augmentation (train only): horizontal flip and a small translation, applied identically to
    every image modality; no colour changes (they would erase "indistinctiveness").

    Modality dropout (train only): the optional inputs are randomly removed the way they are
    missing at serving time: the product's placement (`placed` and the placement channel of
    `mask` set to zero, as when the product is not found in the creative) with probability
    `drop_placement`, the caption (empty string) with probability `drop_caption`.
    """

    def __init__(
        self,
        cache: Cache,
        samples: Sequence[Sample],
        modalities: Sequence[str],
        *,
        augment: bool = False,
        hflip: bool = True,
        translate: float = 0.05,
        colour_permute: float = 0.0,
        drop_placement: float = 0.0,
        drop_caption: float = 0.0,
    ) -> None:
        if len(samples) != cache.n:
            raise ValueError("samples do not match the cache")
        self.cache = cache
        self.modalities = [m for m in modalities if m in MODALITY_CHANNELS]
        missing = [m for m in self.modalities if m not in cache.modalities]
        # (a cache built for a subset of the modalities cannot serve a model needing more)
        if missing:
            raise ValueError(f"cache lacks modalities {missing} (depth needs depth_model_path)")
        self.want_caption = "caption" in modalities
        self.labels = np.array([-1 if s.label is None else int(s.label) for s in samples])
        self.captions = [s.caption or "" for s in samples]
        self.augment = augment
        self.hflip = hflip
        self.max_shift = int(round(translate * cache.image_size))
        self.colour_permute = float(colour_permute)
        self.drop_placement = float(drop_placement)
        self.drop_caption = float(drop_caption)

    def __len__(self) -> int:
        return self.cache.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # sequential memmap reads
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        batch: dict[str, Any] = {}
        for m in self.modalities:
            arr = self.cache.rows(m, idx[order])[inverse]
            batch[m] = torch.from_numpy(arr)
        if self.augment:
            self._augment(batch, len(idx))
        batch["label"] = torch.from_numpy(self.labels[idx])
        if self.want_caption:
            batch["caption"] = [self.captions[i] for i in idx]
        if self.augment:
            self._drop_modalities(batch, len(idx))
        return batch

    def _drop_modalities(self, batch: dict[str, Any], n: int) -> None:
        if self.drop_placement > 0:
            drop = torch.rand(n) < self.drop_placement
            if drop.any():
                if "placed" in batch:
                    batch["placed"][drop] = 0
                if "mask" in batch:
                    batch["mask"][drop, 1] = 0
        if self.drop_caption > 0 and "caption" in batch:
            drop = (torch.rand(n) < self.drop_caption).tolist()
            batch["caption"] = ["" if d else c for c, d in zip(batch["caption"], drop, strict=True)]

    def _augment(self, batch: dict[str, Any], n: int) -> None:
        flips, shifts = self.draw_augmentation(n)
        self.apply_augmentation(batch, flips, shifts)
        if self.colour_permute > 0:
            self.permute_colours(batch, self.draw_colour_permutation(n))

    def draw_augmentation(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (flip, (dy, dx)) from torch's RNG (seeded per epoch / worker)."""
        flips = torch.rand(n) < 0.5 if self.hflip else torch.zeros(n, dtype=torch.bool)
        s = self.max_shift
        shifts = torch.randint(-s, s + 1, (n, 2)) if s > 0 else torch.zeros(n, 2, dtype=torch.long)
        return flips, shifts

    def draw_colour_permutation(self, n: int) -> torch.Tensor:
        """(n, 3) RGB orders: a random one with P(colour_permute), else the identity."""
        perms = torch.stack([torch.randperm(3) for _ in range(n)])
        keep = torch.rand(n) >= self.colour_permute
        perms[keep] = torch.arange(3)
        return perms

    @staticmethod
    def permute_colours(batch: dict[str, Any], perms: torch.Tensor) -> None:
        """Reorder the RGB channels of the creative and both cut-outs alike (in place).

        A red mug becomes a blue or green one, in the creative and in the cut-out at once: the
        model must judge the product against its cut-out and its scene, not by its colour, which
        differs in every product family it has not seen. Alpha and derived maps stay.
        """
        for j in torch.nonzero((perms != torch.arange(3)).any(1)).flatten().tolist():
            for m in COLOUR_MODALITIES:
                if m in batch:
                    batch[m][j, :3] = batch[m][j, perms[j]]

    def apply_augmentation(
        self, batch: dict[str, Any], flips: torch.Tensor, shifts: torch.Tensor
    ) -> None:
        """The same flip and shift on every image modality of each sample (in place)."""
        for m in self.modalities:
            x = batch[m]
            if flips.any():
                x[flips] = x[flips].flip(-1)
            for j in range(len(flips)):
                dy, dx = int(shifts[j, 0]), int(shifts[j, 1])
                if dy or dx:
                    x[j] = _shift(x[j], dy, dx)


def make_collate(tokenize: Callable[[list[str]], dict[str, torch.Tensor]] | None):
    """DataLoader collate for CachedDataset batches: tokenizes captions (if any)."""

    def collate(batch: Any) -> dict[str, Any]:
        if isinstance(batch, list):  # per-item fetch fallback (e.g. a wrapping sampler)
            batch = _stack(batch)
        captions = batch.pop("caption", None)
        if captions is not None and tokenize is not None:
            batch.update(tokenize(list(captions)))
        return batch

    return collate


def _stack(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.cat(vals) if torch.is_tensor(vals[0]) else sum(vals, [])
    return out


def group_split(
    samples: Sequence[Sample], ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Split by `group` (e.g. SKU) so no group appears on two sides."""
    groups = sorted({s.group or s.creative_path for s in samples})
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    n = len(groups)
    a = int(round(ratios[0] * n))
    b = a + int(round(ratios[1] * n))
    side = {g: 0 if i < a else 1 if i < b else 2 for i, g in enumerate(groups)}
    out: tuple[list[Sample], list[Sample], list[Sample]] = ([], [], [])
    for s in samples:
        out[side[s.group or s.creative_path]].append(s)
    return out
