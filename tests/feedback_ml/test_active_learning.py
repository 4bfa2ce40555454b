"""Active-learning queue order: random share, per-product cap, audit slice."""

from collections import Counter

import numpy as np
import pytest

from feedback.ml.active import ActiveConfig, entropy_uncertainty, in_audit, order_items


def _order(positions):
    return [i for i, _ in sorted(positions.items(), key=lambda kv: kv[1])]


def test_pure_uncertainty_is_highest_entropy_first():
    probs = np.array([[0.98, 0.01, 0.01], [1 / 3] * 3, [0.6, 0.3, 0.1]])
    unc = entropy_uncertainty(probs)
    assert unc[1] == pytest.approx(1.0) and unc[0] < unc[2] < unc[1]
    cfg = ActiveConfig(random_share=0.0, audit_share=0.0, product_cap=None)
    assert _order(order_items([10, 11, 12], unc, config=cfg)) == [11, 12, 10]


def test_random_share_is_respected():
    n = 2000
    ids = list(range(1, n + 1))
    unc = np.linspace(1, 0, n)  # id order == uncertainty order
    for share in (0.0, 0.2, 0.5):
        cfg = ActiveConfig(random_share=share, audit_share=0.0, product_cap=None, seed=1)
        order = _order(order_items(ids, unc, config=cfg))
        assert sorted(order) == ids  # a permutation: nothing lost, nothing twice
        head = order[:400]
        # slots served from uncertainty are the next most uncertain: count the out-of-turn ones
        off = sum(1 for k, item in enumerate(head) if item > 400 + k)
        assert off / 400 == pytest.approx(share * 0.8, abs=0.07)  # random picks beyond the head


def test_per_product_cap_per_batch():
    ids = list(range(100))
    products = [0] * 60 + list(range(1, 41))  # one product dominates the uncertain end
    unc = [1.0] * 60 + [0.1] * 40
    cfg = ActiveConfig(random_share=0.0, audit_share=0.0, product_cap=3, batch=10)
    order = _order(order_items(ids, unc, products, cfg))
    assert sorted(order) == ids
    for start in range(0, 40, 10):  # while other products remain, <= 3 of product 0 per batch
        counts = Counter(products[i] for i in order[start : start + 10])
        assert counts[0] <= 3


def test_audit_slice_is_stable_random_and_out_of_uncertainty():
    ids = list(range(5000))
    audit = [i for i in ids if in_audit(i, 0.05)]
    assert 0.035 < len(audit) / len(ids) < 0.065
    assert audit == [i for i in ids if in_audit(i, 0.05)]  # stable
    unc = np.linspace(1, 0, len(ids))
    cfg = ActiveConfig(random_share=0.0, audit_share=0.05, product_cap=None)
    pos = order_items(ids, unc, config=cfg)
    # without a random share, audit items are served after every uncertainty-ordered item, in
    # an order unrelated to their uncertainty
    tail = _order(pos)[-len(audit) :]
    assert set(tail) == set(audit) and tail != sorted(tail)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="random_share"):
        ActiveConfig(random_share=1.5)
    with pytest.raises(ValueError, match="product_cap"):
        ActiveConfig(product_cap=0)
