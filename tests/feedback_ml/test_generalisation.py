"""Issue 8: honest inputs (localisation, modality dropout), calibration, the paper path."""

import numpy as np
import pytest
import torch
from PIL import Image

from feedback.ml.calibration import apply_calibration, fit_temperature, p_available
from feedback.ml.data import CachedDataset, build_cache
from feedback.ml.localize import box_features, locate_product
from feedback.ml.metrics import expected_calibration_error
from feedback.ml.model import RFNet, param_groups
from feedback.ml.preprocess import process_images
from feedback.ml.presets import preset

from ._fixtures import random_samples  # noqa: F401  (fixture)

torch.set_num_threads(1)


def _product(rng, w=40, h=56):
    """A textured RGBA cut-out (ellipse silhouette, stripes)."""
    yy, xx = np.mgrid[0:h, 0:w]
    a = (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1).astype(np.uint8)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 40 + (yy * 7 % 180)
    rgb[..., 1] = 200 - (xx * 5 % 150)
    rgb[..., 2] = rng.integers(0, 60)
    return Image.fromarray(np.dstack([rgb, a * 255]).astype(np.uint8), "RGBA")


def _creative(product, box, size=160, seed=0):
    rng = np.random.default_rng(seed)
    bg = np.zeros((size, size, 3), np.uint8) + rng.integers(150, 230, 3).astype(np.uint8)
    bg[size // 2 :] = (bg[size // 2 :] * 0.7).astype(np.uint8)  # a table
    im = Image.fromarray(bg)
    x0, y0, x1, y1 = box
    im.paste(product.resize((x1 - x0, y1 - y0)), (x0, y0), product.resize((x1 - x0, y1 - y0)))
    return im


@pytest.mark.parametrize("box", [(30, 40, 70, 96), (90, 20, 150, 104), (60, 100, 80, 128)])
def test_localisation_finds_the_pasted_product(box):
    product = _product(np.random.default_rng(1))
    found = locate_product(_creative(product, box), product)
    assert found is not None and found.score > 0.5
    got = np.array(found.box)
    size = max(box[2] - box[0], box[3] - box[1])
    assert np.abs(got - np.array(box)).max() <= 0.15 * size + 2, (found, box)


def _flat_product(shape: str, colour=(200, 40, 40), w=44, h=60):
    """A cut-out of one flat colour, as drawing generators make them: nothing to correlate
    inside it, only its silhouette."""
    a = np.zeros((h, w), np.uint8)
    if shape == "ellipse":
        yy, xx = np.mgrid[0:h, 0:w]
        a[((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1] = 255
    else:  # an L: its bounding box is not its shape
        a[:, : w // 2] = 255
        a[h // 2 :, :] = 255
    rgb = np.zeros((h, w, 3), np.uint8) + np.array(colour, np.uint8)
    return Image.fromarray(np.dstack([rgb, a]), "RGBA")


def _jpeg(im):
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=75)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.mark.parametrize("shape", ["ellipse", "l_shape"])
@pytest.mark.parametrize("box", [(30, 40, 66, 89), (90, 20, 150, 102), (2, 100, 24, 130)])
def test_localisation_finds_a_flat_colour_product_by_its_silhouette(shape, box):
    product = _flat_product(shape)
    for seed in (0, 1):  # flat wall + table, and the same through a JPEG round trip
        creative = _creative(product, box, seed=seed)
        found = locate_product(_jpeg(creative) if seed else creative, product)
        assert found is not None and found.score > 0.5, (shape, box, seed)
        size = max(box[2] - box[0], box[3] - box[1])
        assert np.abs(np.array(found.box) - np.array(box)).max() <= 0.15 * size + 2, (found, box)


def test_flat_colour_search_ignores_windows_of_constant_colour():
    """Unmasked, OpenCV's normalised correlation returns arbitrary values where a window of the
    colour map is constant (all background): they must not outscore the product."""
    for seed in range(16):
        rng = np.random.default_rng(seed)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        product = _flat_product("l_shape", colour=colour)
        scene = np.zeros((160, 160, 3), np.uint8) + rng.integers(0, 256, 3).astype(np.uint8)
        x, y = int(rng.integers(0, 40)), int(rng.integers(0, 90))
        # a bar of a near colour in the other half: a few similar pixels beside constant ones
        scene[y : y + 25, 120:130] = np.clip(np.array(colour) + 50, 0, 255)
        im = Image.fromarray(scene)
        im.paste(product, (x, y), product)
        found = locate_product(im, product)
        assert found is not None and np.abs(np.array(found.box[:2]) - (x, y)).max() < 6, seed


def test_a_flat_colour_product_that_is_not_there_is_not_found():
    product = _flat_product("ellipse")
    # Flat regions of other colours (where an unmasked correlation is undefined), and a
    # scene painted in the product's own colour: no box either way.
    scene = np.zeros((160, 160, 3), np.uint8) + np.array([40, 90, 200], np.uint8)
    scene[100:] = (230, 220, 90)
    scene[20:60, 30:70] = (20, 20, 20)
    assert locate_product(Image.fromarray(scene), product) is None
    same = Image.new("RGB", (160, 160), (200, 40, 40))
    assert locate_product(same, product) is None


def test_localisation_gives_every_creative_a_placement_mask():
    product = _product(np.random.default_rng(2))
    creative = _creative(product, (40, 30, 80, 86))
    localised = process_images(creative, product, 32)
    given = process_images(creative, product, 32, placement=(40, 30, 80, 86))
    assert localised["mask"][1].max() > 200
    overlap = ((localised["mask"][1] > 127) & (given["mask"][1] > 127)).sum()
    assert overlap / max(1, (given["mask"][1] > 127).sum()) > 0.7
    # no product in the image → not found → zeros, as modality dropout trains for
    blank = Image.new("RGB", (160, 160), (200, 200, 200))
    assert process_images(blank, product, 32)["placed"].max() == 0


def test_box_features_are_ten_numbers():
    assert box_features(None, (100, 100)).tolist() == [0.0] * 10
    f = box_features((-10, 10, 50, 90), (100, 100))
    assert f.shape == (10,) and f[8] == 1.0


def test_modality_dropout_zeroes_placement_and_caption(random_samples, tmp_path):  # noqa: F811
    cache = build_cache(random_samples, tmp_path, 32, workers=1)
    mods = ["image", "product", "placed", "mask", "edges", "saliency", "caption"]
    ds = CachedDataset(
        cache,
        random_samples,
        mods,
        augment=True,
        hflip=False,
        translate=0.0,
        drop_placement=1.0,
        drop_caption=1.0,
    )
    batch = ds.__getitems__(list(range(8)))
    assert batch["placed"].sum() == 0 and batch["mask"][:, 1].sum() == 0
    assert batch["mask"][:, 0].sum() > 0  # the cut-out's own alpha is never dropped
    assert batch["caption"] == [""] * 8
    keep = CachedDataset(cache, random_samples, mods, augment=False, drop_placement=1.0)
    assert keep.__getitems__(list(range(8)))["placed"].sum() > 0  # eval: nothing dropped


def test_temperature_scaling_lowers_ece_on_a_miscalibrated_toy():
    g = torch.Generator().manual_seed(0)
    n, c = 2000, 6
    y = torch.randint(0, c, (n,), generator=g)
    clean = torch.randn(n, c, generator=g) + 2.0 * torch.nn.functional.one_hot(y, c)
    # The Bayes posterior of this toy is softmax(2 * clean): 4 * clean is 2x too sharp.
    logits = clean * 4.0
    cal = fit_temperature(logits[:1000], y[:1000])
    assert 1.6 < cal["temperature"] < 2.5
    before = expected_calibration_error(y[1000:].numpy(), torch.softmax(logits[1000:], -1).numpy())
    after_p = apply_calibration(logits[1000:], cal)
    after = expected_calibration_error(y[1000:].numpy(), after_p.numpy())
    assert after < before / 2 and cal["ece_after"] < cal["ece_before"]
    # argmax (so accuracy / F1) unchanged; P(available) is the calibrated column
    assert torch.equal(after_p.argmax(1), logits[1000:].argmax(1))
    assert torch.allclose(p_available(logits[1000:], cal, 0), after_p[:, 0])
    # differentiable (the RFFT reward backpropagates through it)
    z = logits[:4].clone().requires_grad_(True)
    p_available(z, cal, 0).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_calibration_is_saved_beside_the_weights(tmp_path):
    model = RFNet(preset("tiny"))
    model.calibration = {"method": "temperature", "temperature": 2.0}
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "calibration.json").exists()
    again = RFNet.from_pretrained(tmp_path / "m")
    assert again.calibration["temperature"] == 2.0
    z = torch.tensor([[2.0, 0.0, 0, 0, 0, 0]])
    assert torch.allclose(again.calibrated_probs(z), torch.softmax(z / 2, -1))


def _tiny_roberta(folder):
    from transformers import RobertaConfig, RobertaModel

    from feedback.ml.text import build_char_tokenizer

    tok = build_char_tokenizer()
    cfg = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=0,
        type_vocab_size=1,
    )
    torch.manual_seed(0)
    RobertaModel(cfg).save_pretrained(folder)  # with its pooler, like roberta-base
    tok.save_pretrained(folder)
    return folder


def test_roberta_caption_folder_round_trip(tmp_path):
    from safetensors.torch import load_file

    folder = _tiny_roberta(tmp_path / "roberta")
    assert any("pooler" in k for k in load_file(str(folder / "model.safetensors")))
    cfg = preset("tiny", text_encoder=str(folder), text_config=None, text_max_length=20)
    model = RFNet(cfg)
    assert model.config.text_config["model_type"] == "roberta"
    model.save_pretrained(tmp_path / "best")
    again = RFNet.from_pretrained(tmp_path / "best")  # crashed on pooler weights before
    ids = again.tokenize(["a red mug"])
    assert torch.equal(ids["caption_ids"], model.tokenize(["a red mug"])["caption_ids"])
    batch = {
        m: torch.zeros(1, c, 32, 32, dtype=torch.uint8)
        for m, c in [
            ("image", 3),
            ("product", 4),
            ("placed", 4),
            ("mask", 2),
            ("edges", 2),
            ("saliency", 1),
        ]
    } | ids
    with torch.no_grad():
        assert torch.allclose(model.eval()(batch), again(batch), atol=1e-6)
    # per-module learning rates: the pretrained text encoder gets lr_pretrained
    groups = param_groups(again, 0.01, lr=1e-3, lr_pretrained=1e-5)
    pre = [g for g in groups if g.get("lr") == 1e-5]
    names = {id(p): n for n, p in again.named_parameters()}
    assert pre and all(
        names[id(p)].startswith("caption.encoder.") for g in pre for p in g["params"]
    )
    frozen = RFNet(
        preset("tiny", text_encoder=str(folder), text_config=None, freeze_text_encoder=True)
    )
    assert not any(p.requires_grad for p in frozen.caption.encoder.parameters())


def test_cache_stores_each_product_once_and_only_needed_inputs(random_samples, tmp_path):  # noqa: F811
    from feedback.ml.data import Sample as S

    base = random_samples[:4]
    # 12 creatives of 4 products: product maps are stored 4 times, not 12
    samples = [
        S(s.creative_path, base[k % 4].product_path, 0) for k, s in enumerate(random_samples[:12])
    ]
    cache = build_cache(samples, tmp_path, 32, workers=1)
    assert cache.n == 12 and cache.n_products == 4
    assert (tmp_path / cache.path.name / "product.u8").stat().st_size == 4 * 4 * 32 * 32
    prod = cache.array("product")
    assert np.array_equal(prod[0], prod[4]) and np.array_equal(prod[1], prod[9])
    # the assembled maps equal the uncached preprocessing
    from feedback.ml.data import sample_arrays

    ref = sample_arrays(samples[5], 32)
    for m in ("image", "product", "placed", "mask", "edges", "saliency"):
        assert np.array_equal(cache.rows(m, np.array([5]))[0], ref[m]), m
    # an image-only model caches the image only
    image_only = build_cache(samples, tmp_path, 32, modalities=["image"], workers=1)
    assert image_only.arrays == ["image"] and image_only.path != cache.path
    assert not (image_only.path / "placed.u8").exists()
    with pytest.raises(ValueError, match="lacks"):
        CachedDataset(image_only, samples, ["image", "product"])
