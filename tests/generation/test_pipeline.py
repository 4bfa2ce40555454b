"""The composed pipeline on tiny real diffusers models: determinism, paste-back, folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.ml.pipeline import InpaintPipeline, PipelineLoadError, save_components
from tests.generation._tiny import cutout, sample_config, tiny_pipeline

PROMPTS = ["front view of a product on a marble desktop, beige walls", "a product, blue walls"]


def _run(pipe, seeds, **kw):
    products = [cutout(), cutout(30, 18, color=(20, 200, 90))]
    return pipe.generate(products, PROMPTS, ["lowres", ""], seeds, sample_config(**kw))


def test_same_inputs_same_bytes_and_the_seed_matters():
    pipe = tiny_pipeline()
    a, b = _run(pipe, [0, 1]), _run(pipe, [0, 1])
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b, strict=True))
    c = _run(pipe, [5, 1])
    assert c[0].image.tobytes() != a[0].image.tobytes()
    assert c[1].image.tobytes() == a[1].image.tobytes()  # noise is per image, not per batch


def test_every_opaque_product_pixel_is_pasted_back_exactly():
    for out in _run(tiny_pipeline(), [3, 4]):
        placed = out.prepared.placed
        opaque = placed[..., 3] == 255
        assert opaque.sum() > 50
        assert np.array_equal(out.image[opaque], placed[..., :3][opaque])
        assert out.image.shape == (32, 32, 3) and out.image.dtype == np.uint8
        # The diffuser painted the rest (the raw image differs from the grey canvas).
        assert not np.array_equal(out.raw[~opaque], out.prepared.image[~opaque])


def test_folder_round_trip_is_byte_identical(tmp_path):
    pipe = tiny_pipeline()
    save_components(pipe.c, tmp_path / "m")
    loaded = InpaintPipeline.from_pretrained(tmp_path / "m")
    assert loaded.native_size == 32
    a, b = _run(pipe, [7, 8]), _run(loaded, [7, 8])
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="32 px"):
        loaded.generate([cutout()], ["x"], [""], [0], sample_config(size=64))


def test_broken_folders_are_refused_by_part(tmp_path):
    pipe = tiny_pipeline()
    save_components(pipe.c, tmp_path / "m")
    with pytest.raises(PipelineLoadError, match="not a directory"):
        InpaintPipeline.from_pretrained(tmp_path / "nope")
    (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(PipelineLoadError, match="^unet:"):
        InpaintPipeline.from_pretrained(tmp_path / "m")


def test_reference_diffusers_pipeline_runs_on_an_autoencoder_kl_model():
    """diffusers' StableDiffusionControlNetInpaintPipeline over the same components (the path
    real SD-1.5 folders take), deterministic and pasted back."""
    pipe = tiny_pipeline("autoencoder_kl")
    a = _run(pipe, [0, 1], steps=2)
    ref = _run(pipe, [0, 1], steps=2)
    assert a[0].image.tobytes() == ref[0].image.tobytes()
    out = pipe.generate([cutout()], PROMPTS[:1], [""], [0], sample_config(steps=2),
                        backend="diffusers")  # fmt: skip
    placed = out[0].prepared.placed
    opaque = placed[..., 3] == 255
    assert np.array_equal(out[0].image[opaque], placed[..., :3][opaque])
    again = pipe.generate([cutout()], PROMPTS[:1], [""], [0], sample_config(steps=2),
                          backend="diffusers")  # fmt: skip
    assert again[0].image.tobytes() == out[0].image.tobytes()


def test_building_blocks_match_the_prediction_type():
    from generation.ml.pipeline import to_eps_x0

    x0, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    a = torch.tensor([0.3, 0.9])
    s, s1 = a.sqrt().view(-1, 1, 1, 1), (1 - a).sqrt().view(-1, 1, 1, 1)
    xt = s * x0 + s1 * eps
    v = s * eps - s1 * x0
    for ptype, out in (("epsilon", eps), ("v_prediction", v), ("sample", x0)):
        e, x = to_eps_x0(ptype, out, xt, a)
        assert torch.allclose(e, eps, atol=1e-5) and torch.allclose(x, x0, atol=1e-5)
