import numpy as np
import pytest
from PIL import Image

from feedback.ml import maps
from feedback.ml.metrics import (
    classification_report,
    cohen_kappa,
    expected_calibration_error,
    model_human_agreement,
)


def test_sobel_edges_on_a_square():
    img = np.zeros((32, 32), np.float32)
    img[8:24, 8:24] = 1.0
    e = maps.sobel_edges(img)
    assert e.shape == (32, 32) and e.min() >= 0 and e.max() <= 1
    assert e[16, 8] > 0.5 and e[8, 16] > 0.5  # on the border
    assert e[16, 16] < 0.01 and e[2, 2] < 0.01  # flat inside / outside
    assert maps.sobel_edges(np.full((16, 16), 0.3, np.float32)).max() == 0.0


def test_spectral_residual_saliency_finds_the_odd_blob():
    img = np.full((64, 64), 0.5, np.float32)
    img[40:48, 10:18] = 1.0
    s = maps.spectral_residual_saliency(img)
    assert s.shape == (64, 64) and s.min() >= 0 and s.max() <= 1.0 + 1e-6
    y, x = np.unravel_index(np.argmax(s), s.shape)
    assert 34 <= y <= 54 and 4 <= x <= 24
    assert s[44, 14] > 3 * s[10, 50]


def test_alpha_and_placement_masks():
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, 5:15, 3] = 255
    m = maps.alpha_mask(rgba)
    assert m[:, 5:15].min() == 1.0 and m[:, :5].max() == 0.0
    assert maps.alpha_mask(np.zeros((4, 4, 3), np.uint8)).min() == 1.0
    product = Image.fromarray(rgba, "RGBA")
    place = maps.placement_mask(product, (10, 20, 30, 30), (64, 48))
    assert place.shape == (48, 64)
    # the opaque part is cropped first, so it fills the whole box
    assert place[20:30, 10:30].min() == 1.0
    assert place[:20].max() == 0.0 and place[:, 30:].max() == 0.0 and place[:, :10].max() == 0.0
    # a box past the frame (a cut-off product) is clipped, not an error
    clipped = maps.placement_mask(product, (-10, 40, 10, 60), (64, 48))
    assert clipped[45, 0:10].min() == 1.0 and clipped.shape == (48, 64)
    with pytest.raises(ValueError):
        maps.placement_mask(product, (1, 2, 3), (8, 8))


def test_classification_report_against_hand_computed_values():
    names = ["available", "unsuitable", "space_mismatch"]
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # 0 → 0 ok
            [0.2, 0.7, 0.1],  # 0 → 1 wrong
            [0.1, 0.8, 0.1],  # 1 → 1 ok
            [0.6, 0.3, 0.1],  # 1 → 0 wrong
            [0.1, 0.1, 0.8],  # 2 → 2 ok
            [0.2, 0.1, 0.7],  # 2 → 2 ok
        ]
    )
    r = classification_report(y, probs, names)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    # available: tp=1 fp=1 fn=1 → P=R=F1=0.5; same for unsuitable; space_mismatch perfect.
    assert r["per_class"]["available"]["precision"] == pytest.approx(0.5)
    assert r["per_class"]["unsuitable"]["f1"] == pytest.approx(0.5)
    assert r["per_class"]["space_mismatch"]["f1"] == pytest.approx(1.0)
    assert r["per_class"]["space_mismatch"]["support"] == 2
    assert r["macro_f1"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert r["available"]["f1"] == pytest.approx(0.5)
    # AP for available: scores 0.9(+) 0.6(-) 0.2(+) 0.2(-) 0.1 0.1 → sklearn step AP:
    # thresholds: 0.9 → P=1,R=.5 ; 0.6 → P=.5 ; 0.2 → P=2/4,R=1 → AP = .5*1 + .5*.5 = .75
    assert r["available"]["ap"] == pytest.approx(0.75)
    # space_mismatch scores rank both positives on top → AP 1.
    assert r["per_class"]["space_mismatch"]["ap"] == pytest.approx(1.0)


def test_ece_and_kappa():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    # bins: conf .9 correct; .8 correct; .6 wrong; .7 correct → each its own bin:
    # |1-.9|+|1-.8|+|0-.6|+|1-.7| over 4 = (0.1+0.2+0.6+0.3)/4 = 0.3
    assert expected_calibration_error(y, probs) == pytest.approx(0.3)
    # kappa: po = 3/4; pe = (2*2 + 2*2)/16 = .5 → (0.75-0.5)/0.5 = 0.5
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(
        (0.75 - (1 * 2 + 3 * 2) / 16) / (1 - (1 * 2 + 3 * 2) / 16)
    )
    agr = model_human_agreement(["a", "b"], ["a", "b"])
    assert agr == {"kappa": 1.0, "agreement": 1.0, "n": 2}
