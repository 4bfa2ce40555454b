"""bench/othergen.py, the independently written generator RFNet's generalisation is measured on:
deterministic, balanced, no placement in its manifests, importable like any outside manifest."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from annotation.importing import import_manifest_file
from annotation.models import Item
from generation.models import Product

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def othergen():
    spec = importlib.util.spec_from_file_location("othergen", ROOT / "bench" / "othergen.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["othergen"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_othergen_manifest_is_deterministic_balanced_and_carries_no_placement(othergen, tmp_path):
    a = othergen.write_manifest(tmp_path / "a", n=12, seed=3, size=64, use_shared=False)
    b = othergen.write_manifest(tmp_path / "b", n=12, seed=3, size=64, use_shared=False)
    assert a.read_bytes() == b.read_bytes()
    rows = [json.loads(line) for line in a.read_text().splitlines()]
    for row in rows[:3]:
        assert (a.parent / row["image"]).read_bytes() == (b.parent / row["image"]).read_bytes()
    labels = [r["label"] for r in rows]
    assert sorted(set(labels)) == sorted(othergen.MECHANISMS) and labels.count("available") == 2
    for row in rows:
        assert set(row["params"]) == {"mechanism"}  # real imports carry no box or placement
        assert row["params"]["mechanism"].split(":")[1] in othergen.MECHANISMS[row["label"]]

    result = import_manifest_file(a, project_slug="othergen", label_source="othergen", workers=1)
    assert (result.created, result.bad, result.labels_created) == (12, 0, 12)
    families = {r["sku"]: r["family"] for r in rows}
    for product in Product.objects.filter(sku__in=families):
        assert product.family == families[product.sku]
    assert Item.objects.filter(project__slug="othergen").count() == 12


def test_source_defects_put_the_damage_in_the_cut_out_the_manifest_names(othergen, tmp_path):
    import numpy as np
    from PIL import Image

    path = othergen.write_manifest(
        tmp_path / "src", n=48, seed=1, size=64, use_shared=False, source_defects=True
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    source = [r for r in rows if r["params"]["mechanism"].split(":")[1].startswith("src_")]
    assert source and all(r["label"] == "unsuitable" for r in source)
    catalogue = {sku.sku: sku for sku in othergen._W["cat"]}  # workers=1: built in-process
    for row in source:
        sku = catalogue[row["sku"].rsplit("-src", 1)[0]]
        assert row["family"] == sku.family and row["product_image"] == f"products/{row['sku']}.png"
        damaged = np.asarray(Image.open(path.parent / row["product_image"]))
        clean = (np.clip(othergen._product(sku), 0, 1) * 255 + 0.5).astype(np.uint8)
        assert damaged.shape != clean.shape or (damaged != clean).any()
    # the other classes and the clean unsuitable mechanisms are unchanged in kind
    for row in rows:
        if row not in source:
            assert row["params"]["mechanism"].split(":")[1] in othergen.MECHANISMS[row["label"]]
