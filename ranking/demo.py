"""Demo impression logs: three segments whose click-through depends on a preference the ranker is
not told (per segment weights over what a creative looks like, plus a penalty for defective
creatives), so the demo has something to learn. Written as a JSONL file and imported through
`import_impressions`, like real logs.

The preference reads only pixels (brightness, warmth, saturation of the image; share of the
image the product covers) and whether the creative is usable; the ranker sees none of these
numbers directly, only its own features of the image and RFNet's verdict.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from pathlib import Path

import numpy as np
from django.core.files.storage import default_storage
from PIL import Image

DEMO_START = dt.date(2026, 11, 1)
DEMO_DAYS = 28
SEGMENTS = {
    "young-urban": {
        "name": "Young urban",
        "features": {"age": 24, "urban": 1.0, "income": 0.6, "device": "mobile"},
        # hidden weights over (brightness, warmth, saturation, product area)
        "pref": (0.4, -0.2, 0.8, 0.1),
    },
    "family-suburban": {
        "name": "Families, suburban",
        "features": {"age": 38, "urban": 0.0, "income": 0.5, "device": "desktop"},
        "pref": (0.1, 0.7, 0.0, 0.5),
    },
    "senior": {
        "name": "Seniors",
        "features": {"age": 67, "urban": 0.3, "income": 0.4, "device": "desktop"},
        "pref": (0.7, 0.2, -0.6, 0.6),
    },
}


def _look(creative) -> np.ndarray | None:
    """(brightness, warmth, saturation, product area share) of a creative, from its pixels."""
    try:
        with default_storage.open(creative.image.name, "rb") as fh:
            img = Image.open(fh).convert("RGB").resize((32, 32))
    except (OSError, ValueError):
        return None
    x = np.asarray(img, np.float32) / 255.0
    hsv = np.asarray(img.convert("HSV"), np.float32) / 255.0
    box = (creative.params or {}).get("box")
    area = 0.2
    if isinstance(box, list) and len(box) == 4 and creative.width and creative.height:
        area = max(0.0, (box[2] - box[0]) * (box[3] - box[1])) / (creative.width * creative.height)
    return np.array(
        [x.mean(), (x[..., 0] - x[..., 2]).mean(), hsv[..., 1].mean(), area], np.float32
    )


def _usable(creative) -> bool:
    defect = (creative.params or {}).get("defect")
    return defect in (None, "", "available")


def demo_rows(
    creatives, *, seed: int = 0, start=DEMO_START, days: int = DEMO_DAYS, new_share: float = 0.25
):
    """Yield log rows (dicts) for `creatives` (with product), every segment, `days` days.
    `new_share` of the creatives launch during the last week (never shown before it), as new
    creatives do: "highest past CTR" knows nothing about them, a content-based ranker does."""
    rng = np.random.default_rng(seed)
    looks, kept = [], []
    for c in creatives:
        look = _look(c)
        if look is not None and c.external_id:
            looks.append(look)
            kept.append(c)
    if not kept:
        return
    looks = np.stack(looks)
    z = (looks - looks.mean(0)) / (looks.std(0) + 1e-6)
    usable = np.array([_usable(c) for c in kept])
    new = rng.random(len(kept)) < new_share
    launch = np.where(new, max(0, days - 7) + rng.integers(0, 3, size=len(kept)), 0)
    for slug, seg in SEGMENTS.items():
        logit = -3.4 + 0.45 * z @ np.array(seg["pref"], np.float32) + np.where(usable, 0.4, -0.4)
        ctr = 1 / (1 + np.exp(-logit))
        reach = rng.uniform(20, 160, size=len(kept))  # daily impressions per creative
        for d in range(days):
            day = (start + dt.timedelta(days=d)).isoformat()
            # Weekly seasonality on traffic, not on preference.
            imps = rng.poisson(reach * (1 + 0.2 * math.sin(d / 7 * 2 * math.pi)))
            clicks = rng.binomial(imps, ctr)
            for i, c in enumerate(kept):
                if imps[i] == 0 or d < launch[i]:
                    continue
                yield {
                    "day": day,
                    "segment": slug,
                    "sku": c.product.sku,
                    "creative": c.external_id,
                    "impressions": int(imps[i]),
                    "clicks": int(clicks[i]),
                    "segment_features": seg["features"] if d == 0 and i == 0 else None,
                }


def write_demo_logs(path: Path, creatives, **kwargs) -> int:
    n = 0
    with Path(path).open("w") as fh:
        for row in demo_rows(creatives, **kwargs):
            if row["segment_features"] is None:
                row.pop("segment_features")
            fh.write(json.dumps(row) + "\n")
            n += 1
    return n


def seed_demo_logs(*, creatives, seed: int = 0, log=None) -> int:
    """Import DEMO_DAYS days of demo logs for `creatives` once (skipped when the demo segments
    already have logs)."""
    from .importing import import_impressions
    from .models import ImpressionLog, Segment

    if ImpressionLog.objects.filter(segment__slug__in=list(SEGMENTS)).exists():
        return 0
    with tempfile.TemporaryDirectory(prefix="rfstudio-logs-") as tmp:
        path = Path(tmp) / "impressions.jsonl"
        n = write_demo_logs(path, creatives, seed=seed)
        if not n:
            return 0
        import_impressions(path=path, fmt="jsonl", log=log)
    for slug, seg in SEGMENTS.items():
        Segment.objects.filter(slug=slug, name=slug.replace("-", " ")).update(name=seg["name"])
    return n


def on_demo_seeded(sender, *, project, seed=0, log=None, **kwargs) -> None:
    from generation.models import Creative

    say = log or (lambda msg: None)
    creatives = Creative.objects.filter(
        items__project=project, items__is_gold=False
    ).select_related("product")
    say("ranking: demo impression logs ...")
    n = seed_demo_logs(creatives=list(creatives), seed=seed, log=say)
    say(f"  {n} log rows" if n else "  logs already present")
