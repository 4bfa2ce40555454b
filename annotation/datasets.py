"""Dataset versions: frozen, immutable snapshots of consensus labels that training cites.

Rules (docs/datasets.md): every finished item (status done) gets its consensus recomputed from the
live (non-discarded) annotations: majority wins, the QA-adjudicated label wins over any vote, a tie
for first place is excluded and counted. Items whose agreement (share of votes for the label) is
below `min_agreement` are excluded and counted (adjudicated items are exempt: QA decided). Gold
items count only when annotators labeled them. The split is grouped by product family
(`Product.family`, the SKU when empty) so no product, nor a colourway of it, appears in two splits.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count

from annotation import agreement, item_state
from annotation.models import Annotation, AuditEvent, DatasetItem, DatasetVersion, Item, Project
from core.bulk import insert_rows

SPLITS = ("train", "val", "test")
NAME_RE = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")
BATCH_SIZE = 5000


def parse_ratios(value) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' or a sequence → three non-negative floats summing to 1."""
    if isinstance(value, str):
        try:
            value = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValidationError(f"ratios must be three numbers like 0.8,0.1,0.1, got {value!r}")
    try:
        ratios = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValidationError(f"ratios must be three numbers like 0.8,0.1,0.1, got {value!r}")
    if not all(math.isfinite(r) for r in ratios):
        raise ValidationError(f"ratios must be finite numbers, got {value!r}")
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValidationError(f"ratios must be three non-negative numbers summing to 1: {value!r}")
    if ratios[0] <= 0:
        raise ValidationError("the train ratio must be positive")
    return ratios  # type: ignore[return-value]


def split_groups(
    sizes: dict[str, int], ratios: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Assign each group (SKU) to a split so item counts approach the ratios; seedable.

    Groups are shuffled with `seed`, then placed largest first into the split furthest below its
    target (greedy bin filling), which keeps ratios close even with few, unequal groups.
    """
    groups = sorted(sizes)
    random.Random(seed).shuffle(groups)
    groups.sort(key=lambda g: -sizes[g])  # stable: equal sizes keep the seeded order
    total = sum(sizes.values())
    targets = [r * total for r in ratios]
    filled = [0.0, 0.0, 0.0]
    out = {}
    for group in groups:
        best = max(
            (i for i in range(3) if ratios[i] > 0), key=lambda i: (targets[i] - filled[i], -i)
        )
        out[group] = SPLITS[best]
        filled[best] += sizes[group]
    return out


def _votes_by_item(project: Project) -> dict[int, dict[int, int]]:
    votes: dict[int, dict[int, int]] = defaultdict(dict)
    rows = (
        Annotation.objects.filter(
            item__project=project, item__status=Item.Status.DONE, discarded_at__isnull=True
        )
        .values_list("item_id", "label_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    for item_id, label_id, n in rows.iterator(chunk_size=20000):
        votes[item_id][label_id] = n
    return votes


def create_dataset_version(
    *,
    project: Project,
    name: str,
    min_agreement: float = 0.0,
    ratios=(0.8, 0.1, 0.1),
    seed: int = 0,
    created_by=None,
) -> DatasetVersion:
    """Freeze the project's consensus labels into a new immutable DatasetVersion.

    Raises ValidationError for a bad name (or one in use), ratios or min_agreement.
    """
    if not NAME_RE.match(name or ""):
        raise ValidationError(f"invalid dataset name {name!r} (letters, digits, - and _)")
    ratios = parse_ratios(ratios)
    if not 0.0 <= float(min_agreement) <= 1.0:
        raise ValidationError("min_agreement must be between 0 and 1")
    min_agreement = float(min_agreement)
    if DatasetVersion.objects.filter(name=name).exists():
        raise ValidationError(f"dataset version {name!r} already exists (versions are immutable)")

    classes = list(project.schema.classes.values_list("id", "slug"))
    slug_of = dict(classes)
    votes = _votes_by_item(project)
    items = (
        Item.objects.filter(project=project, status=Item.Status.DONE)
        .values_list(
            "id",
            "creative_id",
            "creative__product__sku",
            "creative__product__family",
            "is_gold",
            "adjudicated_label_id",
        )
        .order_by("id")
    )
    excluded = Counter()
    kept: list[tuple[int, int, str, int, int, float]] = []
    for item_id, creative_id, sku, family, is_gold, adjudicated in items.iterator(chunk_size=20000):
        sku = family or sku  # the split's group: the product family
        counts = votes.get(item_id, {})
        label, agree, n = item_state.consensus_of(counts, adjudicated)
        if label is None:
            if n == 0:
                excluded["gold_unlabeled" if is_gold else "no_votes"] += 1
            else:
                excluded["ties"] += 1
            continue
        if adjudicated is None and (agree or 0.0) < min_agreement:
            excluded["below_min_agreement"] += 1
            continue
        if label not in slug_of:
            excluded["unknown_label"] += 1
            continue
        kept.append((item_id, creative_id, sku, label, n, agree if agree is not None else 1.0))

    sizes = Counter(sku for _, _, sku, *_ in kept)
    split_of = split_groups(dict(sizes), ratios, seed)
    per_split: dict[str, Counter] = {s: Counter() for s in SPLITS}
    for _, _, sku, label, _, _ in kept:
        per_split[split_of[sku]][slug_of[label]] += 1
    class_slugs = [s for _, s in classes]
    matrix = agreement.vote_matrix(
        ((i, lab, n) for i, c in votes.items() for lab, n in c.items()), [c for c, _ in classes]
    )
    stats = {
        "items": len(kept),
        "finished_items": len(kept) + sum(excluded.values()),
        "open_items": Item.objects.filter(project=project, status=Item.Status.OPEN).count(),
        "excluded": {
            key: excluded.get(key, 0)
            for key in (
                "ties",
                "below_min_agreement",
                "gold_unlabeled",
                "no_votes",
                "unknown_label",
            )
        },
        "class_counts": {slug: sum(per_split[s][slug] for s in SPLITS) for slug in class_slugs},
        "splits": {
            s: {
                "items": sum(per_split[s].values()),
                "skus": sum(1 for g in split_of.values() if g == s),
                "class_counts": {slug: per_split[s][slug] for slug in class_slugs},
            }
            for s in SPLITS
        },
        "mean_agreement": (round(sum(row[5] for row in kept) / len(kept), 4) if kept else None),
        "mean_votes": round(sum(row[4] for row in kept) / len(kept), 3) if kept else None,
        "agreement": agreement.coefficients(matrix, class_slugs),
    }
    params = {
        "min_agreement": min_agreement,
        "ratios": list(ratios),
        "seed": seed,
        "schema": project.schema.slug,
        "classes": class_slugs,
        "project": project.slug,
    }
    with transaction.atomic():
        version = DatasetVersion.objects.create(
            project=project,
            name=name,
            created_by=created_by,
            params=params,
            stats=stats,
            item_count=len(kept),
        )
        # executemany in batches (bulk_create makes one statement per ~70 rows on SQLite).
        insert_rows(
            DatasetItem,
            ["version", "item", "creative", "label", "split", "votes", "agreement"],
            (
                (
                    version.id,
                    item_id,
                    creative_id,
                    slug_of[label],
                    split_of[sku],
                    min(n, 32767),
                    agree,
                )
                for item_id, creative_id, sku, label, n, agree in kept
            ),
        )
        AuditEvent.objects.create(
            project=project,
            actor=created_by,
            action="dataset_version_created",
            data={"name": name, "items": len(kept), "excluded": stats["excluded"]},
        )
    return version
