import math

import numpy as np
import pytest

from annotation.agreement import coefficients, consensus_of, fleiss_kappa, krippendorff_alpha

# Fleiss (1971) as reproduced in most textbooks: 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers × 12 units with
# missing values; nominal alpha = 0.743.
NAN = math.nan
KRIPP_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def kripp_counts():
    data = np.array(KRIPP_DATA)
    counts = np.zeros((data.shape[1], 5))
    for unit in range(data.shape[1]):
        for value in data[:, unit]:
            if not math.isnan(value):
                counts[unit, int(value) - 1] += 1
    return counts


def test_fleiss_kappa_textbook_example():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_edge_cases():
    assert fleiss_kappa([[3, 0], [0, 3]]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))  # one category only: undefined
    assert math.isnan(fleiss_kappa([[1, 0]]))  # single ratings carry no agreement


def test_krippendorff_alpha_textbook_example():
    assert krippendorff_alpha(kripp_counts()) == pytest.approx(0.743, abs=1e-3)


def test_coefficients_per_class_json_ready():
    out = coefficients(FLEISS_TABLE, ["a", "b", "c", "d", "e"])
    assert out["fleiss_kappa"] == pytest.approx(0.21, abs=1e-3)
    assert out["items_with_2plus_votes"] == 10
    assert set(out["per_class"]) == {"a", "b", "c", "d", "e"}
    assert -1 <= out["per_class"]["e"]["krippendorff_alpha"] <= 1
    empty = coefficients(np.zeros((0, 2)), ["a", "b"])
    assert empty["krippendorff_alpha"] is None and empty["fleiss_kappa"] is None


@pytest.mark.parametrize(
    ("counts", "adjudicated", "expected"),
    [
        ({1: 2, 2: 1}, None, (1, 2 / 3, 3)),
        ({1: 1, 2: 1}, None, (None, 0.5, 2)),
        ({1: 2, 2: 1}, 2, (2, 1 / 3, 3)),
        ({}, None, (None, None, 0)),
        ({}, 3, (3, None, 0)),
    ],
)
def test_consensus_rule(counts, adjudicated, expected):
    assert consensus_of(counts, adjudicated) == pytest.approx(expected)
