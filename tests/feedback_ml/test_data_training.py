import json
import os

import numpy as np
import pytest
import torch

from feedback.ml.data import (
    CachedDataset,
    Sample,
    _shift,
    build_cache,
    group_split,
    make_collate,
)
from feedback.ml.model import RFNet
from feedback.ml.presets import preset
from feedback.ml.reporting import NullReporter
from feedback.ml.scoring import Scorer
from feedback.ml.training import TrainConfig, auto_epochs, auto_patience, train

from ._fixtures import random_samples  # noqa: F401  (fixture)


def test_cache_built_once_and_reused(random_samples, tmp_path):  # noqa: F811
    samples = random_samples[:12]
    c1 = build_cache(samples, tmp_path, 32, workers=1)
    assert c1.built_now and c1.n == 12
    stamp = os.stat(c1.path / "image.u8").st_mtime_ns
    c2 = build_cache(samples, tmp_path, 32, workers=1)
    assert not c2.built_now and c2.path == c1.path
    assert os.stat(c2.path / "image.u8").st_mtime_ns == stamp
    # another size or sample list → another cache; no temp folders left behind
    assert build_cache(samples, tmp_path, 16, workers=1).path != c1.path
    assert build_cache(samples[:5], tmp_path, 32, workers=1).path != c1.path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    img = c1.array("image")
    assert img.shape == (12, 3, 32, 32) and img.dtype == np.uint8
    # the placement mask (channel 1 of "mask") lies inside the product box
    place = c1.array("mask")[0, 1]
    assert place.max() > 200


def test_cache_with_process_pool_matches_in_process(random_samples, tmp_path):  # noqa: F811
    a = build_cache(
        random_samples[:64] if len(random_samples) >= 64 else random_samples,
        tmp_path / "a",
        32,
        workers=1,
    )
    # n < 64 runs in-process; force the pool through a bigger (repeated) list
    big = (random_samples * 2)[:64]
    b = build_cache(big, tmp_path / "b", 32, workers=2)
    n = a.n
    assert np.array_equal(np.asarray(b.array("edges")[:n]), np.asarray(a.array("edges")))


def test_cache_bad_input_is_a_clear_error(tmp_path):
    bad = [Sample(str(tmp_path / "missing.png"), str(tmp_path / "p.png"), 0)]
    with pytest.raises(ValueError, match="missing.png"):
        build_cache(bad, tmp_path / "c", 32, workers=1)
    assert not list((tmp_path / "c").iterdir())


def test_dataset_batches_and_identical_augmentation(random_samples, tmp_path):  # noqa: F811
    cache = build_cache(random_samples, tmp_path, 32, workers=1)
    mods = ["image", "product", "placed", "mask", "edges", "saliency", "caption"]
    ds = CachedDataset(cache, random_samples, mods, augment=True, translate=0.1)
    torch.manual_seed(0)
    batch = ds.__getitems__([5, 1, 3])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].tolist() == [5, 1, 3]
    plain = CachedDataset(cache, random_samples, mods).__getitems__([5, 1, 3])
    torch.manual_seed(0)
    flips, shifts = ds.draw_augmentation(3)
    assert flips.any() or shifts.abs().sum() > 0
    for m in ("image", "product", "placed", "mask", "edges", "saliency"):
        for j in range(3):
            x = plain[m][j].flip(-1) if flips[j] else plain[m][j]
            expected = _shift(x, int(shifts[j, 0]), int(shifts[j, 1]))
            assert torch.equal(batch[m][j], expected), (m, j)
    # _shift moves content and zero-fills
    x = torch.arange(9).view(1, 3, 3)
    assert _shift(x, 1, -1).tolist() == [[[0, 0, 0], [1, 2, 0], [4, 5, 0]]]
    model = RFNet(preset("tiny"))
    collated = make_collate(model.tokenize)(ds.__getitems__([0, 1]))
    assert collated["caption_ids"].shape == (2, model.config.text_max_length)
    assert model(collated).shape == (2, 6)


def test_group_split_keeps_groups_apart(random_samples):  # noqa: F811
    tr, va, te = group_split(random_samples, seed=1)
    groups = [{s.group for s in part} for part in (tr, va, te)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2])
    assert len(tr) + len(va) + len(te) == len(random_samples)


class CancelAt(NullReporter):
    def __init__(self, step):
        self.step = step
        self.metrics = []

    def progress(self, step, total=None, phase=None):
        if phase == "train" and step >= self.step:
            raise KeyboardInterrupt("cancelled")

    def metric(self, name, value, step=None):
        self.metrics.append((name, value, step))


def test_train_checkpoints_cancel_resume_and_score(random_samples, tmp_path):  # noqa: F811
    tr, va, te = random_samples[:28], random_samples[28:34], random_samples[34:]
    cfg = preset("tiny")
    tc = TrainConfig(
        epochs=2,
        batch_size=8,
        lr=3e-3,
        step_epoch=1,
        seed=0,
        class_weighting="inverse",
        cache_dir=str(tmp_path / "cache"),
        early_stopping_patience=5,
    )
    out = tmp_path / "run"
    steps_per_epoch = 28 // 8
    # Cancel in the middle of epoch 2: epoch 1 is checkpointed, nothing partial afterwards.
    with pytest.raises(KeyboardInterrupt):
        train(
            model_config=cfg,
            train_config=tc,
            train=tr,
            val=va,
            test=te,
            out_dir=out,
            reporter=CancelAt(steps_per_epoch + 2),
        )
    assert (out / "checkpoints" / "epoch-1" / "model.safetensors").exists()
    assert not (out / "checkpoints" / "epoch-2").exists()
    assert (out / "last" / "training_state.pt").exists() and (out / "best").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    rep = CancelAt(10**9)
    result = train(
        model_config=cfg, train_config=tc, train=tr, val=va, test=te, out_dir=out, reporter=rep
    )
    assert [h["epoch"] for h in result.history] == [1, 2]  # resumed: epoch 1 not redone
    assert all(step == 2 for name, _, step in rep.metrics if name == "train_loss")
    assert (out / "checkpoints" / "epoch-2").exists()
    m = result.metrics
    assert set(m["test"]) >= {"accuracy", "macro_f1", "per_class", "available", "confusion", "ece"}
    assert m["epochs_run"] == 2 and m["best_epoch"] in (1, 2)
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
    # resuming a finished run only re-evaluates
    again = train(model_config=cfg, train_config=tc, train=tr, val=va, test=te, out_dir=out)
    assert len(again.history) == 2
    # the standalone scorer gives the same probabilities as the training-time evaluation
    scorer = Scorer.from_pretrained(result.best_dir, device="cpu")
    probs = scorer.score(te, batch_size=4)
    assert probs.shape == (len(te), 6) and np.allclose(probs.sum(1), 1, atol=1e-5)
    detailed = scorer.score_detailed(te[:2])
    assert detailed["p_available"].shape == (2,)
    # ONE P(available): the calibrated class probability, not the auxiliary binary head
    assert np.allclose(detailed["p_available"], probs[:2, 0], atol=1e-6)
    best = RFNet.from_pretrained(result.best_dir)
    assert best.calibration is not None and best.calibration["method"] == "temperature"
    assert m["calibration"]["temperature"] == best.calibration["temperature"]
    ds = CachedDataset(build_cache(te, tmp_path / "cache", 32), te, best.config.modalities)
    batch = make_collate(best.tokenize)(ds.__getitems__(list(range(len(te)))))
    with torch.no_grad():
        logits = best(batch)
        ref = best.calibrated_probs(logits).numpy()
    assert np.allclose(ref, probs, atol=1e-5)
    t = best.calibration["temperature"]
    assert np.allclose(torch.softmax(logits / t, -1).numpy(), probs, atol=1e-5)


def test_train_rejects_unlabeled_and_mismatched_resume(random_samples, tmp_path):  # noqa: F811
    cfg = preset("tiny")
    tc = TrainConfig(epochs=1, batch_size=8, cache_dir=str(tmp_path / "cache"))
    unlabeled = [Sample(s.creative_path, s.product_path, None) for s in random_samples[:4]]
    with pytest.raises(ValueError, match="label"):
        train(
            model_config=cfg,
            train_config=tc,
            train=unlabeled,
            val=None,
            test=None,
            out_dir=tmp_path / "x",
        )
    train(
        model_config=cfg,
        train_config=tc,
        train=random_samples[:16],
        val=None,
        test=None,
        out_dir=tmp_path / "y",
    )
    with pytest.raises(ValueError, match="different model config"):
        train(
            model_config=preset("tiny", width=8),
            train_config=tc,
            train=random_samples[:16],
            val=None,
            test=None,
            out_dir=tmp_path / "y",
        )


def test_depth_modality_from_a_local_dpt_folder(random_samples, tmp_path):  # noqa: F811
    from transformers import DPTConfig, DPTForDepthEstimation

    dpt = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        head_hidden_size=8,
    )
    DPTForDepthEstimation(dpt).save_pretrained(tmp_path / "dpt")
    cfg = preset("tiny", depth_model_path=str(tmp_path / "dpt"))
    assert "depth" in cfg.modalities
    samples = random_samples[:6]
    cache = build_cache(samples, tmp_path / "cache", 32, depth_model_path=cfg.depth_model_path)
    depth = np.asarray(cache.array("depth"))
    assert depth.shape == (6, 1, 32, 32) and depth.max() == 255  # min-max scaled per image
    model = RFNet(cfg).eval()
    ds = CachedDataset(cache, samples, cfg.modalities)
    batch = make_collate(model.tokenize)(ds.__getitems__([0, 1, 2]))
    with torch.no_grad():
        ref = torch.softmax(model(batch), -1).numpy()
    model.save_pretrained(tmp_path / "m")
    probs = Scorer.from_pretrained(tmp_path / "m", device="cpu").score(samples[:3])
    assert np.allclose(probs, ref, atol=1e-5)
    # without the depth maps a depth model refuses the cache
    plain = build_cache(samples, tmp_path / "cache", 32)
    with pytest.raises(ValueError, match="depth"):
        CachedDataset(plain, samples, cfg.modalities)


def test_colour_permutation_reorders_rgb_of_creative_and_cut_outs_alike(
    random_samples,  # noqa: F811
    tmp_path,
):
    cache = build_cache(random_samples, tmp_path, 32, workers=1)
    mods = ["image", "product", "placed", "mask", "edges", "saliency", "caption"]
    ds = CachedDataset(
        cache, random_samples, mods, augment=True, hflip=False, translate=0.0, colour_permute=1.0
    )
    torch.manual_seed(1)
    batch = ds.__getitems__(list(range(8)))
    plain = CachedDataset(cache, random_samples, mods).__getitems__(list(range(8)))
    torch.manual_seed(1)
    perms = ds.draw_colour_permutation(8)
    assert (perms != torch.arange(3)).any(1).sum() >= 4  # most orders are not the identity
    for j in range(8):
        for m in ("image", "product", "placed"):
            assert torch.equal(batch[m][j, :3], plain[m][j, perms[j]]), (m, j)
            assert torch.equal(batch[m][j, 3:], plain[m][j, 3:]), (m, j)  # alpha stays
        for m in ("mask", "edges", "saliency"):
            assert torch.equal(batch[m][j], plain[m][j]), (m, j)
    off = CachedDataset(cache, random_samples, mods, colour_permute=0.0)
    assert (off.draw_colour_permutation(8) == torch.arange(3)).all()


def test_default_training_length_is_counted_in_optimizer_steps():
    assert auto_epochs(1900, 32) == 34  # 59 steps an epoch: 34 epochs reach 2,000 steps
    assert auto_epochs(1_000_000, 32) == 10  # large datasets: the paper's 10
    assert auto_epochs(40, 32) == 100 and auto_epochs(0, 32) == 100  # capped
    assert auto_epochs(6400, 32, min_steps=1000) == 10
    # early stopping waits a third of the epochs (at least 5): a long schedule's noisy middle
    assert auto_patience(34) == 11 and auto_patience(10) == 5 and auto_patience(100) == 33
