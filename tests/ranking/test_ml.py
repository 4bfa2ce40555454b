"""ranking.ml without Django: loss and metrics against hand-computed values, JAC, an encoder
training step and Faiss recall on a toy set, the ranker's save/load round trip."""

import math

import numpy as np
import pytest
import torch

from ranking.ml.config import EncoderConfig, RankerConfig
from ranking.ml.encoder import CreativeEncoder, MoCo, recall_at_k, train_encoder
from ranking.ml.metrics import EvalList, evaluate_lists, ndcg_at_k, weighted_auc
from ranking.ml.ranker import CreativeRanker, jac_bucket, listwise_loss, smoothed_ctr
from ranking.ml.training import ListData, collate, score_lists, train_ranker


def test_smoothed_ctr_and_jac_quantisation():
    assert smoothed_ctr(7, 120) == pytest.approx((7 + 2.04) / (120 + 2.04 + 54.06))
    p = torch.tensor([0.0, 0.01, 0.05, 1.0])
    expected = [0, math.floor(8192 * math.log(2) / math.log(101)), None, 8191]
    expected[2] = math.floor(8192 * math.log(1 + 100 * 0.05) / math.log(101))
    assert jac_bucket(p).tolist() == expected


def test_listwise_loss_by_hand():
    scores = torch.tensor([[0.0, math.log(3.0), 5.0]])
    target = torch.tensor([[0.1, 0.3, 0.9]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third is padding
    loss, parts = listwise_loss(scores, target, mask, mse_weight=0.5)
    # softmax over (0, ln 3) = (1/4, 3/4); q = (0.25, 0.75)
    ce = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    mse = ((0.5 - 0.1) ** 2 + (0.75 - 0.3) ** 2) / 2  # σ(0) = .5, σ(ln 3) = .75
    assert parts["listwise_ce"] == pytest.approx(ce, abs=1e-6)
    assert parts["mse"] == pytest.approx(mse, abs=1e-6)
    assert float(loss) == pytest.approx(ce + 0.5 * mse, abs=1e-6)


def test_metrics_by_hand():
    # AUC: scores (.9, .5, .1); positives (1, 0, 1), negatives (0, 2, 1).
    # Pairs: pos@.9 beats 3 negs; pos@.1 beats none, ties its own neg (1/2): (3 + 0.5) / (2 * 3)
    assert weighted_auc([0.9, 0.5, 0.1], [1, 0, 1], [0, 2, 1]) == pytest.approx(3.5 / 6)
    assert weighted_auc([1, 2], [0, 0], [1, 1]) is None
    # NDCG@2 with gains (.1, .3, .2) ordered by scores (3, 2, 1): DCG = .1 + .3/log2 3
    dcg = 0.1 + 0.3 / math.log2(3)
    ideal = 0.3 + 0.2 / math.log2(3)
    assert ndcg_at_k([3, 2, 1], [0.1, 0.3, 0.2], 2) == pytest.approx(dcg / ideal)
    lists = [
        EvalList(("s", "a"), np.array([100, 100]), np.array([10, 5])),
        EvalList(("s", "b"), np.array([50, 150]), np.array([1, 15])),
    ]
    m = evaluate_lists(lists, [np.array([0.2, 0.8]), np.array([0.1, 0.9])])
    # list a: top = 2nd (CTR .05); list b: top = 2nd (CTR .1); weights 200, 200
    assert m["nsctr"] == pytest.approx((200 * 0.05 + 200 * 0.1) / 400)
    assert m["ndcg@1"] == pytest.approx((0.05 / 0.1 + 1.0) / 2)
    gauc_a = weighted_auc([0.2, 0.8], [10, 5], [90, 95])
    gauc_b = weighted_auc([0.1, 0.9], [1, 15], [49, 135])
    assert m["gauc"] == pytest.approx((gauc_a * 200 + gauc_b * 200) / 400)


def _toy_images(n_products=6, per=3, size=32, seed=0):
    """Each product: one colour and shape; its creatives: that product on varying backgrounds."""
    rng = np.random.default_rng(seed)
    images, groups = [], []
    for p in range(n_products):
        colour = rng.integers(0, 256, 3)
        for _ in range(per):
            img = np.tile(rng.integers(0, 256, 3), (size, size, 1)).astype(np.uint8)
            y, x = rng.integers(4, 12, 2)
            img[y : y + 14, x : x + 6 + 2 * p] = colour
            images.append(img)
            groups.append(f"P{p}")
    return np.stack(images), groups


class Killed(Exception):
    """Stands in for the worker being killed (SIGKILL, a swept heartbeat) mid-run."""


class KillAt:
    """A reporter that kills the run when progress reaches `step`; logs what it is told."""

    def __init__(self, step: int | None = None) -> None:
        self.step, self.logs = step, []

    def progress(self, step, total=None, phase=None) -> None:
        if self.step is not None and step >= self.step:
            raise Killed(step)

    def metric(self, name, value, step=None) -> None:
        pass

    def log(self, message) -> None:
        self.logs.append(message)


def test_encoder_training_step_and_faiss_recall(tmp_path):
    torch.manual_seed(0)
    config = EncoderConfig(image_size=32, widths=[8, 16], embed_dim=16, proj_dim=8, hidden_dim=16)
    images, groups = _toy_images()
    moco = MoCo(CreativeEncoder(config))
    x = torch.rand(4, 3, 32, 32)
    before = [p.clone() for p in moco.key_backbone.parameters()]
    loss = moco(x, x.flip(-1), m=0.9)
    loss.backward()
    assert loss.item() > 0 and moco.encoder.backbone.head.weight.grad is not None
    assert all(p.grad is None for p in moco.key_backbone.parameters())  # keys: EMA only
    assert any(
        not torch.equal(a, b) for a, b in zip(before, moco.key_backbone.parameters(), strict=True)
    )
    encoder = train_encoder(images, groups, config, steps=3, batch_size=8).encoder
    # A run killed after its step-2 checkpoint resumes there and ends where the straight run
    # ends (the random streams are part of the checkpoint).
    with pytest.raises(Killed):
        train_encoder(
            images,
            groups,
            config,
            steps=3,
            batch_size=8,
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            reporter=KillAt(3),
        )
    assert (tmp_path / "last" / "training_state.pt").is_file()
    resumed = train_encoder(
        images,
        groups,
        config,
        steps=3,
        batch_size=8,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
    )
    assert resumed.resumed_from_step == 2
    x = torch.from_numpy(images[:2]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(encoder.eval().embed(x), resumed.encoder.embed(x), atol=1e-5)
    # Other creatives or settings: the checkpoint is not reused.
    other = train_encoder(
        images[:-1], groups[:-1], config, steps=3, batch_size=8, checkpoint_dir=tmp_path
    )
    assert other.resumed_from_step == 0
    encoder.save_pretrained(tmp_path / "enc")
    again = CreativeEncoder.from_pretrained(tmp_path / "enc")
    x = torch.from_numpy(images[:2]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(encoder.embed(x), again.embed(x), atol=1e-6)
    # Faiss recall on a toy set where the answer is known: two tight clusters.
    vecs = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    assert recall_at_k(vecs, ["a", "a", "b", "b"], ks=(1,))["recall@1"] == 1.0
    assert recall_at_k(vecs, ["a", "b", "a", "b"], ks=(1,))["recall@1"] == 0.0


def _toy_lists(n=40, L=4, seed=0):
    """Segment 0 likes feature 0, segment 1 likes feature 1; clicks drawn from that."""
    rng = np.random.default_rng(seed)
    lists = []
    for i in range(n):
        seg = np.array([i % 2, 1 - i % 2], np.float32)
        crea = rng.random((L, 2)).astype(np.float32)
        ctr = 0.02 + 0.1 * (crea[:, 0] if i % 2 else crea[:, 1])
        imp = np.full(L, 400.0)
        lists.append(
            ListData(
                (str(i % 2), f"p{i}"),
                seg,
                np.zeros(1, np.float32),
                crea,
                list(range(L)),
                imp,
                rng.binomial(400, ctr).astype(float),
            )
        )
    return lists


def test_ranker_learns_a_toy_preference_and_round_trips(tmp_path):
    config = RankerConfig(
        segment_features=["s0", "s1"],
        product_features=["p"],
        creative_features=["f0", "f1"],
        hidden=[16, 8],
        stage1_hidden=[8],
        jac_buckets=64,
    )
    train, test = _toy_lists(60), _toy_lists(30, seed=1)
    result = train_ranker(train, config, epochs=25, batch_size=16, lr=1e-2)
    model, history = result.model, result.history
    assert result.resumed_from_step == 0 and result.steps == 25 * 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    scores, p_ctr = score_lists(model, test)
    lists = [EvalList(t.key, t.impressions, t.clicks) for t in test]
    assert evaluate_lists(lists, scores)["gauc"] > 0.55
    assert all(0 < p < 1 for p in p_ctr)
    model.save_pretrained(tmp_path / "r")
    again = CreativeRanker.from_pretrained(tmp_path / "r")
    assert again.config.norms == model.config.norms
    assert np.allclose(score_lists(again, test)[0][0], scores[0], atol=1e-6)
    contrib = model.contributions(collate(test[:2], config), ["f0", "f1"], top=2)
    assert [name for name, _ in contrib[0][0]] in (["f0", "f1"], ["f1", "f0"])


def test_ranker_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    """Killed after step 7 (checkpoints at 3, 6 and each epoch end of 4 steps), the rerun
    resumes at step 6 — mid-epoch: the epoch's order is a function of (seed, epoch), the
    finished batches are skipped, dropout draws continue from the saved random state — and
    ends with the weights and history of a run never interrupted."""
    config = lambda: RankerConfig(  # noqa: E731
        segment_features=["s0", "s1"],
        product_features=["p"],
        creative_features=["f0", "f1"],
        hidden=[16, 8],
        stage1_hidden=[8],
        jac_buckets=64,
    )
    lists = _toy_lists(60)
    kw = dict(epochs=3, batch_size=16, lr=1e-2, checkpoint_every=3)
    straight = train_ranker(lists, config(), checkpoint_dir=tmp_path / "a", **kw)
    with pytest.raises(Killed):
        train_ranker(lists, config(), checkpoint_dir=tmp_path / "b", reporter=KillAt(8), **kw)
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]  # no debris
    rep = KillAt()
    resumed = train_ranker(lists, config(), checkpoint_dir=tmp_path / "b", reporter=rep, **kw)
    assert resumed.resumed_from_step == 6 and rep.logs == ["Resuming the ranker at step 6 of 12."]
    assert resumed.history == straight.history
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Other lists: the checkpoint is not reused.
    again = train_ranker(lists[:-1], config(), checkpoint_dir=tmp_path / "b", **kw)
    assert again.resumed_from_step == 0


def test_ranker_and_encoder_train_across_two_processes(tmp_path):
    """Two CPU processes started as a job with num_processes=2 starts them (jobs.runner): each
    process trains on its shard of the lists (half the steps per epoch), gradients are
    all-reduced, so both end with the same weights; rank 0 writes the checkpoint."""
    import json
    import os
    import subprocess

    from jobs.runner import launcher

    cmd = [*launcher(2, "cpu"), "-m", "tests.ranking.ddp_train", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RFSTUDIO_DEVICE": "cpu"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["main"] for r in ranks] == [True, False]
    assert ranks[0]["steps"] == 2 * 2  # 60 lists / 16 = 4 batches per epoch, 2 per process
    assert ranks[0]["ranker"] == ranks[1]["ranker"] and ranks[0]["encoder"] == ranks[1]["encoder"]
    assert ranks[0]["history"] == ranks[1]["history"]  # the logged loss is the mean over ranks
    assert (tmp_path / "ranker" / "last" / "training_state.pt").is_file()


def test_served_creative_stage_equals_the_model_on_the_same_lists():
    """CreativeStage (precomputed projections, one batched forward) gives the scores, pCTR,
    order and contributions the ranker gives on collated lists, ragged lists included."""
    from ranking.ml.serving import CreativeStage

    config = RankerConfig(
        segment_features=["s0", "s1"],
        product_features=["p"],
        creative_features=["f0", "f1"],
        hidden=[16, 8],
        stage1_hidden=[8],
        jac_buckets=64,
    )
    model = train_ranker(_toy_lists(40), config, epochs=2, batch_size=16).model
    rng = np.random.default_rng(3)
    lists = _toy_lists(30, L=5, seed=2)
    for i, lst in enumerate(lists):  # ragged: 2..5 creatives, one segment for all
        n = 2 + i % 4
        lst.creatives, lst.segment = lst.creatives[:n], lists[0].segment
        lst.impressions, lst.clicks = lst.impressions[:n], lst.clicks[:n]
        lst.product = rng.random(1).astype(np.float32)
    counts = np.array([len(lst.creatives) for lst in lists])
    padded = np.zeros((len(lists), 5, 2), np.float32)
    for i, lst in enumerate(lists):
        padded[i, : counts[i]] = lst.creatives
    stage = CreativeStage(model, np.stack([lst.product for lst in lists]), padded, counts)
    expected, p_ctr = score_lists(model, lists)
    rows = [7, 0, 29, 3]
    for ranked, which in ((stage.rank(lists[0].segment), range(30)),
                          (stage.rank(lists[0].segment, rows), rows)):  # fmt: skip
        assert np.allclose(ranked.p_ctr, [p_ctr[i] for i in which], atol=1e-6)
        for k, i in enumerate(which):
            n = counts[i]
            assert np.allclose(ranked.scores[k, :n], expected[i], atol=1e-5)
            assert np.isinf(ranked.scores[k, n:]).all()
            assert ranked.order[k, :n].tolist() == np.argsort(-expected[i], kind="stable").tolist()
    want = model.contributions(collate([lists[i] for i in rows], config), ["f0", "f1"], top=2)
    got = stage.contributions(lists[0].segment, rows, ["f0", "f1"], top=2)
    for a, b in zip(want, got, strict=True):
        for x, y in zip(a, b, strict=False):  # padding columns past the shorter batch's width
            assert [n for n, _ in x] == [n for n, _ in y]
            assert np.allclose([v for _, v in x], [v for _, v in y], atol=1e-3)
