"""Style-reference conditioning (IP-Adapter) on the tiny pipelines: real diffusers loading,
processors and pipelines, no Django."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.ml.pipeline import InpaintPipeline, PipelineLoadError
from generation.ml.style import (
    StyleAdapterConfig,
    build_image_encoder,
    build_ip_adapter_state_dict,
    read_ip_adapter_weights,
    save_style_adapter,
)
from tests.generation._tiny import (
    cutout,
    fresh_components,
    sample_config,
    style_image,
    style_pipeline,
    tiny_pipeline,
)

PROMPTS = ["front view of a product on a marble desktop, beige walls", "a product, blue walls"]


def _run(pipe, seeds=(0, 1), style=None, **kw):
    products = [cutout(), cutout(30, 18, color=(20, 200, 90))]
    return pipe.generate(products, PROMPTS, ["lowres", ""], list(seeds), sample_config(**kw),
                         style_image=style)  # fmt: skip


def _same(a, b) -> bool:
    return all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b, strict=True))


def test_style_reference_changes_the_output_deterministically(tmp_path):
    pipe, _, _ = style_pipeline(tmp_path)
    plain = _run(tiny_pipeline())  # same weights, no adapter ever loaded
    assert _same(_run(pipe), plain)  # loaded but unused: byte-identical
    styled = _run(pipe, style=style_image())
    assert _same(styled, _run(pipe, style=style_image()))  # deterministic
    assert not any(x.raw.tobytes() == y.raw.tobytes() for x, y in zip(styled, plain, strict=True))
    other = _run(pipe, style=style_image(color=(230, 40, 10)))
    assert other[0].raw.tobytes() != styled[0].raw.tobytes()  # the reference matters
    weaker = _run(pipe, style=style_image(), ip_adapter_scale=0.1)
    diff = [np.abs(o.raw.astype(int) - p.raw.astype(int)).mean() for o, p in
            ((styled[0], plain[0]), (weaker[0], plain[0]))]  # fmt: skip
    assert diff[1] < diff[0]  # the scale weighs the reference
    assert _same(_run(pipe), plain)  # and switching back restores the original UNet
    placed = styled[0].prepared.placed  # paste-back still holds
    opaque = placed[..., 3] == 255
    assert np.array_equal(styled[0].image[opaque], placed[..., :3][opaque])


def test_a_style_reference_without_an_adapter_is_refused():
    with pytest.raises(ValueError, match="IP-Adapter"):
        _run(tiny_pipeline(), style=style_image())


def test_reference_diffusers_pipeline_takes_the_same_image_embeddings(tmp_path):
    """diffusers' StableDiffusionControlNetInpaintPipeline (AutoencoderKL) with the adapter:
    its own prepare_ip_adapter_image_embeds gives what our loop feeds the UNet, and the
    reference changes its output deterministically."""
    pipe, _, _ = style_pipeline(tmp_path, "autoencoder_kl")
    ref = pipe.reference_pipeline()
    pipe._use_ip_adapter(True)
    try:
        theirs = ref.prepare_ip_adapter_image_embeds(style_image(), None, pipe.device, 2, True)
    finally:
        pipe._use_ip_adapter(False)
    pos, neg = pipe.encode_style(style_image(), 2, cfg=True)
    assert len(theirs) == 1 and torch.equal(theirs[0], torch.cat([neg, pos]))
    assert not neg.any()  # the unconditional branch sees zero image embeddings

    def run(style):
        return pipe.generate([cutout()], PROMPTS[:1], [""], [0], sample_config(steps=2),
                             backend="diffusers", style_image=style)[0]  # fmt: skip

    plain, styled = run(None), run(style_image())
    assert plain.raw.std() > 0  # a real image, not NaN-zeros
    assert styled.raw.tobytes() != plain.raw.tobytes()
    assert run(style_image()).raw.tobytes() == styled.raw.tobytes()
    assert run(None).raw.tobytes() == plain.raw.tobytes()


def test_broken_or_mismatched_adapters_are_refused(tmp_path):
    pipe = InpaintPipeline(fresh_components())
    enc = build_image_encoder(StyleAdapterConfig())
    state = build_ip_adapter_state_dict(pipe.c.unet, image_embed_dim=32)
    weights, enc_dir = save_style_adapter(tmp_path / "ok", enc, state)
    assert set(read_ip_adapter_weights(weights)) == {"image_proj", "ip_adapter"}

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(PipelineLoadError, match="^ip_adapter: unreadable"):
        pipe.load_ip_adapter(garbage, enc_dir)
    # Made for another UNet: too few key/value pairs.
    short = {k: v for k, v in state.items() if not k.startswith("ip_adapter.1.")}
    w2, _ = save_style_adapter(tmp_path / "short", enc, short)
    with pytest.raises(PipelineLoadError, match="cross-attention layers"):
        pipe.load_ip_adapter(w2, enc_dir)
    # An image encoder whose embedding is not what the projection takes.
    wide = build_image_encoder(StyleAdapterConfig(projection_dim=48))
    _, wide_dir = save_style_adapter(tmp_path / "wide", wide, state)
    with pytest.raises(PipelineLoadError, match="does not fit the adapter"):
        pipe.load_ip_adapter(weights, wide_dir)
    with pytest.raises(PipelineLoadError, match="^image_encoder"):
        pipe.load_ip_adapter(weights, tmp_path / "nope")
    # Nothing of the failed attempts stuck: the UNet is the plain one, and a good pair loads.
    assert pipe.c.unet.encoder_hid_proj is None and not pipe.has_ip_adapter
    assert _same(_run(pipe), _run(tiny_pipeline()))
    pipe.load_ip_adapter(weights, enc_dir)
    assert pipe.has_ip_adapter
