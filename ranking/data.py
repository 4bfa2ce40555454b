"""Django → ranking.ml bridge: aggregated logs per (segment, creative), feature vectors by name,
(segment, product) lists.

Every input is built here, the same way for training, evaluation, previews and the live API:
segment features from `Segment.features` (numbers as they are, strings one-hot as `seg.key=value`),
product category one-hot, creative features from the newest version of each extractor
(`CreativeFeatures`, numeric values only), RFNet's stored probabilities, and the encoder's
embedding. A name the model was not trained with is ignored; a missing one is 0.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.db.models import Sum

from generation.models import Creative

from .ml.features import numeric
from .ml.training import ListData
from .models import ImpressionLog, Segment
from .rfnet import rfnet_p_available
from .selectors import embeddings, latest_features

# {(segment slug, creative id): (impressions, clicks)}
Agg = dict[tuple[str, int], tuple[int, int]]


def segment_values(features: dict | None) -> dict[str, float]:
    out = {}
    for key, value in (features or {}).items():
        if isinstance(value, int | float):  # bools too
            out[f"seg.{key}"] = float(value)
        elif isinstance(value, str):
            out[f"seg.{key}={value}"] = 1.0
    return out


def product_values(category: str) -> dict[str, float]:
    top = (category or "").split("/")[0]
    return {f"product.category={top}": 1.0} if top else {}


def creative_values(creative_ids) -> dict[int, dict[str, float]]:
    ids = list(creative_ids)
    feats = latest_features(ids)
    verdicts = rfnet_p_available(creative_ids=ids)
    out = {}
    for cid in ids:
        values: dict[str, float] = {}
        for extractor, v in feats.get(cid, {}).items():
            values.update(numeric(v, extractor))
        verdict = verdicts.get(cid)
        if verdict is not None:
            values["rfnet.p_available"] = float(verdict["p_available"])
        out[cid] = values
    return out


# --- logs ------------------------------------------------------------------------------------
def parse_days(value: str | None) -> tuple[dt.date | None, dt.date | None]:
    """ "FROM:TO" (either side may be empty) → dates; ValueError with the reason."""
    if not value:
        return None, None
    if ":" not in value:
        raise ValueError("days must be FROM:TO, e.g. 2026-11-01:2026-11-28")
    lo, hi = (s.strip() for s in value.split(":", 1))
    try:
        a = dt.date.fromisoformat(lo) if lo else None
        b = dt.date.fromisoformat(hi) if hi else None
    except ValueError:
        raise ValueError(f"days: dates must be YYYY-MM-DD, got {value!r}")
    if a and b and a > b:
        raise ValueError("days: FROM is after TO")
    return a, b


def log_days(day_from=None, day_to=None) -> list[dt.date]:
    qs = ImpressionLog.objects.all()
    if day_from:
        qs = qs.filter(day__gte=day_from)
    if day_to:
        qs = qs.filter(day__lte=day_to)
    # order_by() first: the model's default ordering (day, id) would make DISTINCT per row.
    return list(qs.order_by("day").values_list("day", flat=True).distinct())


def aggregate_logs(day_from=None, day_to=None) -> Agg:
    qs = ImpressionLog.objects.all()
    if day_from:
        qs = qs.filter(day__gte=day_from)
    if day_to:
        qs = qs.filter(day__lte=day_to)
    rows = qs.values("segment__slug", "creative_id").annotate(
        imp=Sum("impressions"), clk=Sum("clicks")
    )
    return {(r["segment__slug"], r["creative_id"]): (r["imp"], r["clk"]) for r in rows}


def logs_from_file(path: str | Path, fmt: str | None = None) -> tuple[Agg, dict[str, dict]]:
    """A log file that was never imported, aggregated the same way; bad rows raise
    ImpressionImportError (by line) as in an import."""
    from .importing import ImpressionImportError, detect_format, parse_row, read_rows

    path = Path(path)
    fmt = detect_format(path, fmt)
    keys: dict[tuple[str, str], list[int]] = defaultdict(list)
    agg: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    features: dict[str, dict] = {}
    errors = []
    for line, raw in read_rows(path, fmt):
        if isinstance(raw, str):
            errors.append((line, raw))
            continue
        try:
            _, seg, sku, ext, imp, clk, feats = parse_row(raw)
        except ValueError as exc:
            errors.append((line, str(exc)))
            continue
        if feats:
            features[seg] = feats
        agg[(seg, sku, ext)][0] += imp
        agg[(seg, sku, ext)][1] += clk
        keys[(sku, ext)].append(line)
    ids = {}
    for sku, ext, cid in Creative.objects.filter(
        product__sku__in={k[0] for k in keys}, external_id__in={k[1] for k in keys}
    ).values_list("product__sku", "external_id", "id"):
        ids.setdefault((sku, ext), []).append(cid)
    for key, lines in keys.items():
        found = ids.get(key, [])
        if len(found) != 1:
            what = "no creative" if not found else f"{len(found)} creatives"
            errors.append((lines[0], f"{what} with manifest id {key[1]!r} for product {key[0]!r}"))
    if errors:
        raise ImpressionImportError(errors[:200], len(errors))
    out = {(seg, ids[(sku, ext)][0]): (v[0], v[1]) for (seg, sku, ext), v in agg.items()}
    return out, features


# --- lists -----------------------------------------------------------------------------------
@dataclass
class Catalogue:
    """What the lists need to know about the creatives involved."""

    product_of: dict[int, int]
    sku: dict[int, str]
    category: dict[int, str]
    values: dict[int, dict[str, float]]
    vectors: dict[int, np.ndarray]


def catalogue(creative_ids, encoder=None) -> Catalogue:
    ids = list(set(creative_ids))
    product_of, sku, category = {}, {}, {}
    for cid, pid, s, cat in Creative.objects.filter(id__in=ids).values_list(
        "id", "product_id", "product__sku", "product__category"
    ):
        product_of[cid] = pid
        sku[pid] = s
        category[pid] = cat
    vectors = embeddings(encoder=encoder, creative_ids=ids) if encoder is not None else {}
    return Catalogue(product_of, sku, category, creative_values(ids), vectors)


def segment_features_by_slug(slugs) -> dict[str, dict]:
    return dict(Segment.objects.filter(slug__in=list(slugs)).values_list("slug", "features"))


def feature_names(agg: Agg, cat: Catalogue, seg_features: dict[str, dict]) -> dict[str, list]:
    seg_names, prod_names, crea_names = set(), set(), set()
    for slug in {s for s, _ in agg}:
        seg_names.update(segment_values(seg_features.get(slug)))
    for pid in set(cat.product_of.values()):
        prod_names.update(product_values(cat.category.get(pid, "")))
    for cid in {c for _, c in agg}:
        crea_names.update(cat.values.get(cid, {}))
    return {
        "segment_features": sorted(seg_names),
        "product_features": sorted(prod_names) or ["product.bias"],
        "creative_features": sorted(crea_names) or ["creative.bias"],
    }


def _vec(values: dict[str, float], names: list[str]) -> np.ndarray:
    return np.array([values.get(n, 0.0) for n in names], np.float32)


def segment_vector(features: dict | None, config) -> np.ndarray:
    """A segment's input vector in the ranker's order (as build_lists makes it)."""
    return _vec(segment_values(features), config.segment_features)


def build_lists(
    groups: dict[tuple[str, int], list[int]],
    cat: Catalogue,
    seg_features: dict[str, dict],
    config,
    agg: Agg | None = None,
) -> list[ListData]:
    """groups: {(segment slug, product id): [creative ids]} → ListData in the config's order."""
    dim = config.embedding_dim
    lists = []
    for (slug, pid), cids in groups.items():
        rows = []
        for cid in cids:
            row = _vec(cat.values.get(cid, {}), config.creative_features)
            if dim:
                emb = cat.vectors.get(cid)
                row = np.concatenate([row, emb if emb is not None else np.zeros(dim, np.float32)])
            rows.append(row)
        imp = clk = None
        if agg is not None:
            imp = np.array([agg[(slug, c)][0] for c in cids], np.float64)
            clk = np.array([agg[(slug, c)][1] for c in cids], np.float64)
        lists.append(
            ListData(
                key=(slug, cat.sku.get(pid, str(pid))),
                segment=segment_vector(seg_features.get(slug), config),
                product=_vec(
                    {**product_values(cat.category.get(pid, "")), "product.bias": 1.0},
                    config.product_features,
                ),
                creatives=np.stack(rows).astype(np.float32),
                creative_ids=list(cids),
                impressions=imp,
                clicks=clk,
            )
        )
    return lists


def group_by_list(agg: Agg, cat: Catalogue) -> dict[tuple[str, int], list[int]]:
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for slug, cid in sorted(agg):
        if cid in cat.product_of:
            groups[(slug, cat.product_of[cid])].append(cid)
    return dict(groups)
