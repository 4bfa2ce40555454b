import dataclasses

import pytest
import torch

from feedback.ml.config import MODALITY_CHANNELS, BackboneConfig
from feedback.ml.model import RFNet
from feedback.ml.presets import RF1M_SLUGS, preset


def _batch(model, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    s = cfg.image_size
    batch = {
        m: torch.randint(0, 256, (b, MODALITY_CHANNELS[m], s, s), generator=g, dtype=torch.uint8)
        for m in cfg.image_modalities
    }
    captions = ["Hard-shell cabin suitcase", "", "lipstick"]
    batch.update(model.tokenize([captions[i % 3] for i in range(b)]))
    return batch


def test_tiny_preset_shapes_and_size():
    cfg = preset("tiny")
    assert cfg.class_names == RF1M_SLUGS and cfg.available_index == 0
    model = RFNet(cfg)
    out = model(_batch(model), return_dict=True)
    assert out["logits"].shape == (3, 6)
    assert out["available_logit"].shape == (3,)
    assert out["embedding"].shape == (3, model.head.in_features)
    assert sum(p.numel() for p in model.parameters()) < 30_000


@pytest.mark.parametrize("modality", ["product", "placed", "mask", "edges", "saliency", "caption"])
def test_every_modality_can_be_switched_off(modality):
    cfg = preset("tiny")
    cfg.modalities = [m for m in cfg.modalities if m != modality]
    model = RFNet(cfg)
    batch = _batch(model)
    assert modality not in batch and ("caption_ids" in batch) == (modality != "caption")
    assert model(batch).shape == (3, 6)


def test_single_image_and_depth_modality():
    model = RFNet(preset("single_image", image_size=32, class_names=["available", "bad"]))
    assert model.config.modalities == ["image"]
    assert model(_batch(model)).shape == (3, 2)
    cfg = preset("tiny", depth_model_path="/nonexistent/dpt")
    assert "depth" in cfg.modalities
    model = RFNet(cfg)  # the model itself only needs the depth map tensor
    assert model(_batch(model)).shape == (3, 6)
    with pytest.raises(KeyError):
        model({k: v for k, v in _batch(model).items() if k != "depth"})


def test_missing_modality_and_bad_config_errors():
    with pytest.raises(ValueError):
        preset("tiny", modalities=["image", "sound"])
    with pytest.raises(ValueError):
        preset("nope")
    for radius in (0, -0.1, 0.5):
        with pytest.raises(ValueError, match="ring_radius"):
            preset("tiny", ring_radius=radius)


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_transformers_backbones_and_shared_condition_encoder(kind, tmp_path):
    hf = {
        "resnet": {
            "embedding_size": 8,
            "hidden_sizes": [8, 16],
            "depths": [1, 1],
            "layer_type": "basic",
        },
        "convnext": {"hidden_sizes": [8, 16], "depths": [1, 1]},
    }[kind]
    cfg = preset(
        "tiny",
        image_backbone=BackboneConfig(kind=kind, hf_config=dict(hf)),
        condition_backbone=BackboneConfig(kind=kind, hf_config=dict(hf)),
        share_condition_backbone=True,
    )
    model = RFNet(cfg).eval()
    assert len(model.encoders) == 1  # image only; conditions share one encoder
    batch = _batch(model)
    with torch.no_grad():
        ref = model(batch)
    model.save_pretrained(tmp_path / "m")
    again = RFNet.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(again(batch), ref)


def test_pretrained_local_backbone_folder(tmp_path):
    from transformers import ResNetConfig, ResNetModel

    ResNetModel(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ).save_pretrained(tmp_path / "resnet")
    src = BackboneConfig(kind="pretrained", path=str(tmp_path / "resnet"))
    cfg = preset(
        "tiny",
        modalities=["image", "product", "saliency"],
        image_backbone=src,
        condition_backbone=src,
    )
    model = RFNet(cfg).eval()
    assert model.config.image_backbone.kind == "resnet"  # resolved: reload needs no folder
    assert cfg.image_backbone.kind == "pretrained"  # the caller's config is left alone
    assert set(model.adapters) == {"product", "saliency"}  # 4 / 1 channels → RGB stem
    pretrained = ResNetModel.from_pretrained(tmp_path / "resnet").state_dict()
    for m in ("image", "product", "saliency"):  # every encoder got the pretrained weights
        got = model.encoders[m].model.state_dict()
        assert all(torch.equal(got[k], v) for k, v in pretrained.items())
    batch = _batch(model)
    model.save_pretrained(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(RFNet.from_pretrained(tmp_path / "m")(batch), model(batch))


def test_save_load_round_trip_is_identical(tmp_path):
    model = RFNet(preset("tiny")).eval()
    batch = _batch(model)
    with torch.no_grad():
        ref = model(batch, return_dict=True)
    out_dir = model.save_pretrained(tmp_path / "rfnet")
    assert (out_dir / "model.safetensors").exists() and (out_dir / "rfnet_config.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    loaded = RFNet.from_pretrained(out_dir)
    assert dataclasses.asdict(loaded.config) == dataclasses.asdict(model.config)
    with torch.no_grad():
        out = loaded(batch, return_dict=True)
    assert torch.equal(out["logits"], ref["logits"])
    assert torch.equal(out["available_logit"], ref["available_logit"])
    model.save_pretrained(out_dir)  # overwriting an existing folder works too
    with pytest.raises(FileNotFoundError):
        RFNet.from_pretrained(tmp_path / "missing")


def test_gradients_reach_every_trainable_part():
    model = RFNet(preset("tiny", dropout=0.0)).train()
    out = model(_batch(model, b=4), return_dict=True)
    (out["logits"].sum() + out["available_logit"].sum()).backward()
    dead = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert dead == []


def test_placed_ring_shows_product_like_pixels_just_outside_the_cut_out():
    cfg = preset("tiny", placed_ring=True, ring_radius=0.125)  # 4 px at 32 px
    model = RFNet(cfg).eval()
    s = cfg.image_size
    image = torch.full((2, 3, s, s), 10, dtype=torch.uint8)
    image[:, :, 8:24, 8:24] = 120
    placed = torch.zeros((2, 4, s, s), dtype=torch.uint8)
    placed[:, 3, 8:24, 8:24] = 255
    placed[:, :3, 8:24, 8:24] = 120
    image[1, :, 8:24, 24:28] = 120  # second creative: the product grew 4 px to the right
    ring, similar = model._placed_ring(image, placed).unbind(1)
    lo, hi = (0.0 - 0.5) / 0.25, (1.0 - 0.5) / 0.25
    # The ring lies just outside the cut-out, never inside it or far from it.
    assert torch.allclose(ring[0, 8:24, 24:27], torch.tensor(hi))
    assert torch.allclose(ring[0, 10:22, 10:22], torch.tensor(lo))
    assert torch.allclose(ring[0, 0:2, :], torch.tensor(lo))
    # Background next to the product is not product-like; the grown part is.
    assert torch.allclose(similar[0], torch.tensor(lo))
    assert (similar[1, 9:23, 24:27] > hi - 0.01).all()
    assert torch.allclose(similar[1, :, :24], torch.tensor(lo))
    # Product not found: both channels carry nothing.
    assert torch.allclose(model._placed_ring(image, torch.zeros_like(placed)), torch.tensor(lo))
    assert model(_batch(model)).shape == (3, 6)
    # Differentiable in the image through the similarity channel itself (the RFFT reward).
    grown = image.float()
    grown[1, :, 8:24, 24:28] = 100  # close to the product's colour, not equal (|d| has a kink at 0)
    img = grown.div(255).requires_grad_(True)
    model._placed_ring(img, placed)[:, 1].sum().backward()
    assert img.grad[1, :, 8:24, 24:28].abs().sum() > 0


def test_placed_residual_shows_where_the_creative_differs_from_the_cut_out():
    cfg = preset("tiny", placed_residual=True)
    model = RFNet(cfg).eval()
    s = cfg.image_size
    image = torch.full((2, 3, s, s), 120, dtype=torch.uint8)
    placed = torch.zeros((2, 4, s, s), dtype=torch.uint8)
    placed[:, 3, 8:24, 8:24] = 255
    placed[:, :3, 8:24, 8:24] = 120  # the product exactly as pasted (premultiplied RGB)
    image[1, :, 8:16, 8:24] = 10  # second creative: the top half of the product is gone
    res = model._placed_residual(image, placed)
    zero = (0.0 - 0.1) / 0.2  # the map's value where nothing differs
    assert torch.allclose(res[0], torch.full_like(res[0], zero))
    assert (res[1, :, 8:16, 8:24] > 1.0).all() and torch.allclose(
        res[1, :, 16:, :], torch.tensor(zero)
    )
    # Outside the cut-out (and when the product was not found) the map carries nothing.
    assert torch.allclose(
        model._placed_residual(image, torch.zeros_like(placed))[1], torch.tensor(zero)
    )
    batch = _batch(model)
    assert model(batch).shape == (3, 6)
    # Differentiable in the image (the reward path back-propagates through it).
    img = batch["image"].float().div(255).requires_grad_(True)
    model({**batch, "image": img}).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
