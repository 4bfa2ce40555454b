"""The procedural generator: deterministic, every class, and each defect measurably present."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from generation import synthetic as sy

S = 96


@pytest.fixture(scope="module")
def products():
    return sy.load_products()


@pytest.fixture(scope="module")
def drawn():
    return sy.load_products(include_shared=False, procedural=20)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _examples(defect, products, n=6, size=S):
    return [
        sy.generate_example(np.random.default_rng([11, i]), defect, size, products=products)
        for i in range(n)
    ]


def _arr(img):
    return np.asarray(img, np.float32) / 255.0


def test_catalogue_has_many_distinct_skus(products, drawn):
    skus = [p.sku for p in products]
    assert len(skus) == len(set(skus)) >= 50
    for p in products[:5] + drawn[:5]:
        assert p.image.mode == "RGBA" and p.image.size == (sy.PRODUCT_SIDE, sy.PRODUCT_SIDE)
        alpha = np.asarray(p.image)[..., 3]
        assert 0.05 < (alpha > 127).mean() < 0.95  # a real silhouette, not a full square
        assert p.title and p.category
    assert all(p.origin == "procedural" for p in drawn)


def test_real_cutouts_used_when_shared_dir_present(products):
    from pathlib import Path

    shared = sy._default_shared_dir()
    if not (Path(shared) / "products" / "products.json").is_file():
        pytest.skip("no ../shared/products here")
    real = [p for p in products if p.origin == "shared"]
    assert real and any(p.sku == "SKU-0001" for p in real)
    assert len({p.kind for p in real}) >= 5


def test_deterministic(products):
    a = sy.generate_example(np.random.default_rng(5), "available", S, products=products)
    b = sy.generate_example(np.random.default_rng(5), "available", S, products=products)
    assert _png(a.image) == _png(b.image) and a.params == b.params and a.prompt == b.prompt
    one = list(sy.generate_dataset(8, seed=3, size=64, products=products))
    two = list(sy.generate_dataset(8, seed=3, size=64, products=products))
    other = list(sy.generate_dataset(8, seed=4, size=64, products=products))
    assert [_png(e.image) for e in one] == [_png(e.image) for e in two]
    assert [e.seed for e in one] == [e.seed for e in two]
    assert [_png(e.image) for e in one] != [_png(e.image) for e in other]


def test_every_class_and_fields(products):
    for defect in sy.CLASSES:
        ex = sy.generate_example(np.random.default_rng(1), defect, S, products=products)
        assert ex.label == defect
        assert ex.image.mode == "RGB" and ex.image.size == (S, S)
        assert ex.product.mode == "RGBA"
        assert ex.sku and ex.title and ex.prompt
        box = ex.params["box"]
        assert len(box) == 4 and box[0] < box[2] and box[1] < box[3]
        json.dumps(ex.params)  # serialisable into the manifest
    labels = {e.label for e in sy.generate_dataset(60, seed=0, size=48, products=products)}
    assert labels == set(sy.CLASSES)


def test_class_weights(products):
    labels = [
        e.label
        for e in sy.generate_dataset(
            10, seed=0, size=48, class_weights={"size_mismatch": 1}, products=products
        )
    ]
    assert set(labels) == {"size_mismatch"}
    with pytest.raises(ValueError):
        sy.generate_example(np.random.default_rng(0), "blurry", S, products=products)


def test_mask_matches_placement(products):
    for defect in sy.CLASSES:
        for ex in _examples(defect, products, n=3):
            m = np.asarray(ex.mask) > 127
            assert m.any()
            ys, xs = np.nonzero(m)
            x0, y0, x1, y1 = ex.params["box"]
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
            assert (
                ex.params["visible_box"]
                == [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
                or defect == "unsuitable"
            )  # soft cut edges may shift the 0.5-threshold box by 1


def test_available_is_intact_grounded_and_plausibly_scaled(products):
    for ex in _examples("available", products):
        p = ex.params
        x0, y0, x1, y1 = p["box"]
        assert x0 >= 0 and y0 >= 0 and x1 <= S and y1 <= S
        assert p["visible_fraction"] > 0.97
        assert 0.38 <= p["scale"] <= 0.78
        bottom = np.nonzero((np.asarray(ex.mask) > 127).any(axis=1))[0].max() + 1
        assert abs(bottom - p["surface_y"]) <= 2  # resting on the table
        assert p["surface_y"] > p["horizon_y"]


def test_unsuitable_is_truncated(products):
    for ex in _examples("unsuitable", products, n=8):
        p = ex.params
        m = np.asarray(ex.mask) > 127
        touches_frame = m[:, :2].any() or m[:, -2:].any() or m[-2:, :].any()
        assert p["visible_fraction"] < 0.9
        if p["truncation"]["kind"].startswith("frame"):
            assert touches_frame
            x0, y0, x1, y1 = p["box"]
            assert x0 < 0 or x1 > S or y1 > S
        elif p["truncation"]["kind"] == "occluded":  # hidden behind a foreground object
            assert p["truncation"]["occluded_fraction"] >= 0.2
        else:  # chunk, slice, torn
            assert p["truncation"]["removed_fraction"] >= 0.2


def test_unsuitable_has_independent_mechanisms(products):
    kinds = {ex.params["truncation"]["kind"] for ex in _examples("unsuitable", products, n=40)}
    assert {"frame", "chunk", "torn", "occluded"} <= kinds


def test_input_placement_is_recorded_before_the_defect(products):
    """params.placement is the intact product's layout box: a removed chunk does not shrink it
    (params.box, the post-defect geometry, does)."""
    for ex in _examples("unsuitable", products, n=24):
        p = ex.params
        x0, y0, x1, y1 = p["placement"]
        b = p["box"]
        assert x1 > x0 and y1 > y0
        if p["truncation"]["kind"] in ("chunk", "slice", "torn"):
            assert (x1 - x0) * (y1 - y0) >= (b[2] - b[0]) * (b[3] - b[1])


def test_space_mismatch_floats(products):
    for ex in _examples("space_mismatch", products, n=8):
        p = ex.params
        bottom = np.nonzero((np.asarray(ex.mask) > 127).any(axis=1))[0].max() + 1
        gap = p["space"]["gap"]
        assert gap >= 0.09 * S
        if p["space"]["kind"] == "float":
            assert p["surface_y"] - bottom >= 0.08 * S  # clear air under the product
        else:
            assert bottom <= p["horizon_y"] - 0.1 * S  # on the wall, above the table


def test_size_mismatch_scale(products):
    scales = [ex.params["scale"] for ex in _examples("size_mismatch", products, n=10)]
    assert all(s < 0.17 or s > 0.85 for s in scales)


def test_shape_hallucination_grafts_pixels_onto_silhouette(products):
    for ex in _examples("shape_hallucination", products, n=8, size=128):
        extra = np.asarray(ex.extra_mask) > 127
        m = np.asarray(ex.mask) > 127
        assert extra.sum() >= 0.015 * m.sum(), ex.params["hallucination"]
        assert not (extra & m).any()
        # Adjoining: the grafted part touches the product (dilate the mask by 2 px).
        grown = m.copy()
        for dy in (-2, -1, 0, 1, 2):
            for dx in (-2, -1, 0, 1, 2):
                grown |= np.roll(np.roll(m, dy, 0), dx, 1)
        assert (grown & extra).any()
        # In the product's colours: some product pixel has (nearly) the graft's mean colour.
        img = _arr(ex.image)
        graft = img[extra].mean(axis=0)
        assert np.abs(img[m] - graft).sum(axis=1).min() < 0.5, ex.params["hallucination"]


def _contrast(ex):
    img = _arr(ex.image)
    m = np.asarray(ex.mask) > 127
    grown = m.copy()
    for d in range(1, 6):
        grown |= np.roll(m, d, 0) | np.roll(m, -d, 0) | np.roll(m, d, 1) | np.roll(m, -d, 1)
    ring = grown & ~m
    return float(np.abs(img[m].mean(axis=0) - img[ring].mean(axis=0)).sum())


def test_indistinct_blends_more_than_available(products):
    blend = np.median([_contrast(e) for e in _examples("indistinctiveness", products, n=16)])
    clear = np.median([_contrast(e) for e in _examples("available", products, n=16)])
    assert blend < clear * 0.8, (blend, clear)


def test_procedural_catalogue_alone(drawn):
    for defect in sy.CLASSES:
        ex = sy.generate_example(np.random.default_rng(2), defect, 64, products=drawn)
        assert ex.sku.startswith("SYN-") and ex.label == defect


def test_write_manifest(tmp_path, drawn, monkeypatch):
    path = sy.write_manifest(tmp_path / "a", 10, seed=1, size=48, include_shared=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 10 and not (tmp_path / "a" / "manifest.jsonl.tmp").exists()
    keys = {
        "id",
        "image",
        "product_image",
        "sku",
        "title",
        "category",
        "prompt",
        "negative_prompt",
        "seed",
        "generator",
        "label",
        "params",
    }
    for row in rows:
        assert keys <= set(row)
        assert row["generator"] == "rfstudio-synthetic" and row["label"] in sy.CLASSES
        img = Image.open(tmp_path / "a" / row["image"])
        assert img.size == (48, 48)
        assert Image.open(tmp_path / "a" / row["product_image"]).mode == "RGBA"
    assert len(list((tmp_path / "a" / "products").iterdir())) == len({r["sku"] for r in rows})
    # Same seed, two worker processes: the same bytes.
    path2 = sy.write_manifest(tmp_path / "b", 10, seed=1, size=48, include_shared=False, workers=2)
    assert path2.read_text() == path.read_text()
    for row in rows:
        assert (tmp_path / "a" / row["image"]).read_bytes() == (
            tmp_path / "b" / row["image"]
        ).read_bytes()
    unlabeled = sy.write_manifest(
        tmp_path / "c", 3, seed=1, size=48, with_labels=False, include_shared=False
    )
    assert all("label" not in json.loads(line) for line in unlabeled.read_text().splitlines())
