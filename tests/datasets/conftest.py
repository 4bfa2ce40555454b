"""Fixtures for import/dataset tests: real PNG files and JSON-lines manifests in tmp folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import png_bytes


class ManifestBuilder:
    """Writes tiny images + a manifest.jsonl; `row()` returns a valid row dict."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def image(self, name: str, *, mode="RGB", size=(32, 32), data: bytes | None = None) -> str:
        self.n += 1
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else png_bytes(size=size, mode=mode))
        return name

    def row(self, i: int, *, sku=None, label=None, **extra) -> dict:
        sku = sku or f"SKU-{i % 3}"
        product = f"products/{sku}.png"
        if not (self.root / product).exists():
            self.image(product, mode="RGBA")
        row = {
            "image": self.image(f"creatives/c{i}.png"),
            "product_image": product,
            "sku": sku,
            "title": f"Product {sku}",
            "category": "test",
            "prompt": f"prompt {i}",
            "negative_prompt": "blurry",
            "seed": i,
            "generator": "sd-test",
            "id": f"ext-{i}",
            "params": {"steps": 20},
        }
        if label:
            row["label"] = label
        row.update(extra)
        return row

    def write(self, rows: list, name="manifest.jsonl") -> Path:
        path = self.root / name
        with path.open("w") as fh:
            for row in rows:
                fh.write(row if isinstance(row, str) else json.dumps(row))
                fh.write("\n")
        return path


@pytest.fixture
def builder(tmp_path) -> ManifestBuilder:
    return ManifestBuilder(tmp_path / "import")


def make_voted_project(specs, *, overlap=3, slug=None):
    """A project whose items carry the given votes. specs: list of dicts with `sku`, `votes`
    (label slugs, one per annotator), optional `adjudicated`, `gold` (gold label slug), `done`."""
    from annotation import services
    from annotation.agreement import consensus_of
    from annotation.models import Annotation, Item, LabelClass
    from generation.models import Product
    from tests.factories import make_creative, make_product, make_user

    project = services.create_project(name=slug or "voted", slug=slug or "voted", overlap=overlap)
    classes = {c.slug: c for c in LabelClass.objects.filter(schema=project.schema)}
    width = max((len(s["votes"]) for s in specs), default=0)
    users = [make_user() for _ in range(width)]
    items = []
    for spec in specs:
        product = Product.objects.filter(sku=spec["sku"]).first() or make_product(sku=spec["sku"])
        gold = spec.get("gold")
        item = Item.objects.create(
            project=project,
            creative=make_creative(product=product),
            is_gold=bool(gold),
            gold_label=classes[gold] if gold else None,
            adjudicated_label=classes[spec["adjudicated"]] if spec.get("adjudicated") else None,
        )
        for user, slug_ in zip(users, spec["votes"], strict=False):
            Annotation.objects.create(
                item=item,
                annotator=user,
                label=classes[slug_],
                idempotency_key=f"k{item.id}",
                duration_ms=spec.get("duration_ms", 2000),
            )
        counts, votes = {}, {}
        for slug_ in spec["votes"]:
            counts[classes[slug_].id] = counts.get(classes[slug_].id, 0) + 1
            votes[slug_] = votes.get(slug_, 0) + 1
        label, agree, n = consensus_of(counts, item.adjudicated_label_id)
        done = spec.get("done", n >= overlap or item.adjudicated_label_id is not None)
        Item.objects.filter(id=item.id).update(
            annotation_count=n,
            votes=votes,
            consensus_label_id=label,
            agreement=agree,
            status="done" if done else "open",
        )
        items.append(item)
    return project, users, items
