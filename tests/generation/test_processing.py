"""The reference pre/post-processing against hand-made fixtures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation.ml import processing
from tests.generation._tiny import cutout


def test_placement_scales_the_longer_side_and_centres():
    assert processing.placement_box((100, 50), 100, scale=0.7) == (15, 32, 85, 67)
    assert processing.placement_box((50, 100), 100, scale=0.7) == (32, 15, 67, 85)
    # Standing on a line 10% above the bottom edge.
    assert processing.placement_box((50, 100), 100, scale=0.5, anchor="bottom",
                                    bottom_margin=0.1) == (37, 40, 62, 90)  # fmt: skip
    with pytest.raises(ValueError):
        processing.placement_box((0, 10), 100)


def test_tight_crop_uses_alpha_only():
    crop = processing.tight_crop(cutout(20, 40, garbage=True))
    assert crop.size == (20, 40)  # the soft rim counts, the transparent noise does not
    with pytest.raises(ValueError, match="transparent"):
        processing.tight_crop(Image.new("RGBA", (8, 8), (255, 0, 0, 0)))


def test_inpaint_mask_is_inverted_alpha_then_dilated():
    alpha = np.zeros((10, 10), np.uint8)
    alpha[3:7, 3:7] = 255
    alpha[3, 3] = 128  # a soft pixel
    mask = processing.inpaint_mask(alpha, 0)
    expected = np.full((10, 10), 255, np.uint8)
    expected[3:7, 3:7] = 0
    expected[3, 3] = 127
    assert np.array_equal(mask, expected)
    # Radius 1 (a 3×3 elliptic kernel = a cross): the product region loses its border ring.
    dilated = processing.inpaint_mask(alpha, 1)
    kept = np.zeros((10, 10), bool)
    kept[4:6, 4:6] = True
    assert np.array_equal(dilated == 0, kept)
    assert (dilated[~kept] > 0).all()


def test_canny_sees_the_product_only():
    clean = processing.prepare(cutout(), 64, scale=0.74)
    noisy = processing.prepare(cutout(garbage=True), 64, scale=0.74)
    assert np.array_equal(clean.control, noisy.control)  # transparent pixels' RGB never matters
    edges = clean.control[..., 0] > 0
    assert clean.control.shape == (64, 64, 3) and edges.any()
    inside = clean.placed[..., 3] > 0
    x0, y0, x1, y1 = clean.box
    # Every edge lies on or beside the product; the stripe inside it is found.
    import cv2

    near = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert not (edges & ~near).any()
    mid = (y0 + y1) // 2
    assert edges[mid - 3 : mid + 4, x0 + 3 : x1 - 3].any()


def test_paste_back_restores_opaque_pixels_exactly():
    rng = np.random.default_rng(1)
    placed = np.zeros((16, 16, 4), np.uint8)
    placed[..., :3] = rng.integers(0, 256, (16, 16, 3))
    placed[..., 3] = rng.choice([0, 1, 128, 254, 255], (16, 16))
    generated = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    out = processing.paste_back(generated, placed)
    opaque, clear = placed[..., 3] == 255, placed[..., 3] == 0
    assert np.array_equal(out[opaque], placed[..., :3][opaque])
    assert np.array_equal(out[clear], generated[clear])
    half = placed[..., 3] == 128
    blend = (generated.astype(int) * 127 + placed[..., :3].astype(int) * 128 + 127) // 255
    assert np.array_equal(out[half], blend[half].astype(np.uint8))


def test_prepare_places_masks_and_keeps_the_box():
    prep = processing.prepare(cutout(20, 40), 100, scale=0.7, mask_dilation=0)
    assert prep.box == (32, 15, 67, 85)
    assert (prep.mask[prep.placed[..., 3] == 255] == 0).all()  # product pixels are kept
    assert (prep.mask[prep.placed[..., 3] == 0] == 255).all()
    # 2 px of dilation: the painted region grows into the product's rim, never shrinks.
    wide = processing.prepare(cutout(20, 40), 100, scale=0.7, mask_dilation=0.02)
    assert (wide.mask >= prep.mask).all() and (wide.mask > prep.mask).sum() > 100
    given = processing.prepare(cutout(20, 40), 100, box=(10, 10, 30, 50))
    assert given.box == (10, 10, 30, 50) and given.placed[10:50, 10:30, 3].any()
