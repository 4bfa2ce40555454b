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
    res = train(
        model_config=preset("tiny", ["available", "unavailable"]),
        train_config=TrainConfig(epochs=8, batch_size=32, lr=3e-3, schedule="cosine",
                                 mixed_precision="no", device="cpu", seed=0),
        train=samples, val=samples[:40], test=None, out_dir=root / "rfnet",
    )  # fmt: skip
    return Scorer.from_pretrained(res.best_dir, device="cpu"), products[0::2][:30], root


def test_recurrent_generation_raises_the_true_available_rate(gate):
    threshold = 0.7
    scorer, products, root = gate
    truth: dict[tuple, str] = {}

    def generate(attempts: list[Attempt]) -> list[Attempt]:
        for a in attempts:
            rng = np.random.default_rng(a.seed * 1009 + a.group)
            defect = RF1M[int(rng.choice(len(RF1M), p=MIX))]
            a.payload = _example(rng, products[a.group], root, f"g{a.group}-{a.attempt}", defect)
            truth[(a.group, a.attempt)] = defect
        return attempts

    kept: list[Attempt] = []
    stats = recurrent(
        groups=list(range(len(products))), budget=10, threshold=threshold, generate=generate,
        score=lambda atts: p_available(scorer, [a.payload for a in atts]),
        on_attempt=lambda a: kept.append(a) if a.kept else None,
        seed_for=lambda g, k: 100 + k,
    )  # fmt: skip
    first = [truth[(g, 1)] for g in range(len(products))]
    base_rate = np.mean([d == "available" for d in first])
    all_rate = np.mean([d == "available" for d in truth.values()])
    kept_rate = np.mean([truth[(a.group, a.attempt)] == "available" for a in kept])
    report = stats.as_dict()
    print(f"\nτ={threshold}: base rate {base_rate:.2f} (all attempts {all_rate:.2f}), "
          f"kept {len(kept)}/"
          f"{len(products)} true-available {kept_rate:.2f}, attempts/usable "
          f"{report['attempts_per_usable_image']:.2f}")  # fmt: skip
    assert len(kept) >= len(products) // 2
    # Measured here (seeded, reproducible): base 0.33 → kept 0.46 with 3.8 attempts per kept
    # image (bench/RESULTS.md). The gate is a tiny RFNet trained for a minute on 960 images
    # (held-out AUC ≈ 0.8); a better gate raises this further.
    assert kept_rate >= base_rate + 0.12 and kept_rate >= 1.3 * base_rate
    assert report["attempts"] == len(truth) and report["kept"] == len(kept)
