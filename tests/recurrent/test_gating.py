"""Honest gating: the procedural generator stands in as the diffuser (its true labels are known),
a tiny RFNet trained here on other procedural creatives is the gate; recurrent generation must
raise the true `available` rate of the kept images well above the generator's base rate."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.ml.data import Sample
from feedback.recurrent import p_available
from feedback.recurrent_core import Attempt, recurrent

pytestmark = pytest.mark.slow  # trains its own gate (~1 min of CPU)

RF1M = ["available", "unsuitable", "space_mismatch", "size_mismatch", "indistinctiveness",
        "shape_hallucination"]  # fmt: skip
# The stand-in generator's label mix: 30% usable, the rest spread over the defects.
MIX = [0.30, 0.14, 0.14, 0.14, 0.14, 0.14]
SIZE = 64


def _example(rng, product, root, name, defect):
    from generation import synthetic

    ex = synthetic.generate_example(rng, defect, size=SIZE, product=product)
    cp, pp = root / f"{name}.png", root / f"{name}-p.png"
    ex.image.save(cp)
    ex.product.save(pp)
    return Sample(str(cp), str(pp), label=RF1M.index(defect), caption=ex.title,
                  group=ex.sku, placement=tuple(ex.params["placement"]))  # fmt: skip


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """A tiny binary RFNet trained on 960 procedural creatives of the training products."""
    from feedback.ml.presets import preset
    from feedback.ml.scoring import Scorer
    from feedback.ml.training import TrainConfig, train
    from generation import synthetic

    root = tmp_path_factory.mktemp("gate")
    products = synthetic.load_products()
    train_products = products[1::2]
    rng = np.random.default_rng(1)
    samples = []
    for i in range(960):
        defect = "available" if i % 2 else RF1M[1 + (i // 2) % 5]  # half usable
        product = train_products[i % len(train_products)]
        sample = _example(rng, product, root, f"t{i}", defect)
        sample.label = int(defect != "available")  # the gate's question: usable or not
        samples.append(sample)
    # The gate's own val: products held out of training and of the test (as training carves val
    # out by product family), for checkpoint selection, calibration and the threshold.
    val_products, val = products[0::2][30:], []
    for i in range(160):
        defect = "available" if i % 2 else RF1M[1 + (i // 2) % 5]
        sample = _example(rng, val_products[i % len(val_products)], root, f"v{i}", defect)
        sample.label = int(defect != "available")
        val.append(sample)
    res = train(
        model_config=preset("tiny", ["available", "unavailable"]),
        train_config=TrainConfig(epochs=8, batch_size=32, lr=3e-3, schedule="cosine",
                                 mixed_precision="no", device="cpu", seed=0),
        train=samples, val=val, test=None, out_dir=root / "rfnet",
    )  # fmt: skip
    scorer = Scorer.from_pretrained(res.best_dir, device="cpu")
    # τ keeps half of val's usable creatives: a fixed τ would test how the tiny gate's
    # calibration transfers to whichever catalogue is installed (procedural only, or with
    # ../shared), not whether gating works.
    p_val = np.asarray(p_available(scorer, val))
    threshold = float(np.quantile(p_val[[s.label == 0 for s in val]], 0.5))
    return scorer, products[0::2][:30], root, threshold


def test_recurrent_generation_raises_the_true_available_rate(gate):
    scorer, products, root, threshold = gate
    # Three requests per test product: the kept rate's sampling error is then ±0.05, not ±0.1.
    groups = list(range(3 * len(products)))
    truth: dict[tuple, str] = {}

    def generate(attempts: list[Attempt]) -> list[Attempt]:
        for a in attempts:
            rng = np.random.default_rng(a.seed * 1009 + a.group)
            defect = RF1M[int(rng.choice(len(RF1M), p=MIX))]
            a.payload = _example(
                rng, products[a.group % len(products)], root, f"g{a.group}-{a.attempt}", defect
            )
            truth[(a.group, a.attempt)] = defect
        return attempts

    kept: list[Attempt] = []
    stats = recurrent(
        groups=groups, budget=10, threshold=threshold, generate=generate,
        score=lambda atts: p_available(scorer, [a.payload for a in atts]),
        on_attempt=lambda a: kept.append(a) if a.kept else None,
        seed_for=lambda g, k: 100 + k,
    )  # fmt: skip
    # Attempts are drawn from MIX whatever the gate says, so every attempt estimates the
    # ungated rate; the first attempts alone are a third as many.
    first_rate = np.mean([truth[(g, 1)] == "available" for g in groups])
    base_rate = np.mean([d == "available" for d in truth.values()])
    kept_rate = np.mean([truth[(a.group, a.attempt)] == "available" for a in kept])
    report = stats.as_dict()
    print(f"\nτ={threshold:.3f}: base rate {base_rate:.2f} (first attempts {first_rate:.2f}), "
          f"kept {len(kept)}/"
          f"{len(groups)} true-available {kept_rate:.2f}, attempts/usable "
          f"{report['attempts_per_usable_image']:.2f}")  # fmt: skip
    assert len(kept) >= len(groups) // 2
    # Measured here (seeded, reproducible): base 0.31 → kept 0.51 with ../shared's products,
    # 0.30 → 0.48 with procedural products only. The gate is a tiny RFNet trained for a minute
    # on 960 images; a better gate raises this further.
    assert kept_rate >= base_rate + 0.12 and kept_rate >= 1.3 * base_rate
    assert report["attempts"] == len(truth) and report["kept"] == len(kept)
