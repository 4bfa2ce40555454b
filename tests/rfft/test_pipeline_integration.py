"""The fine-tuning loop on generation's own tiny pipeline (generation.ml.pipeline): the sampler it
trains through is the sampler that serves, and a fine-tuned ControlNet loads back into it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from generation.ml.config import SampleConfig, preset
from generation.ml.finetune import finetune
from generation.ml.finetune_config import FinetuneConfig
from generation.ml.finetune_data import ProductBatches, ProductInput, build_batch, sample_images
from generation.ml.pipeline import InpaintPipeline, build_components
from tests.rfft._tiny import tiny_products, tiny_reward


def _pipe(seed=0):
    comps = build_components(preset("tiny"), seed=seed)
    # A fresh ControlNet copies the UNet encoder but its zero convs are 0: give it an effect.
    with torch.no_grad():
        for block in [
            *comps.controlnet.controlnet_down_blocks,
            comps.controlnet.controlnet_mid_block,
        ]:
            block.weight.normal_(0, 0.05)
    return InpaintPipeline(comps)


def _products():
    return [ProductInput(sku=f"S{i}", cutout=p) for i, p in enumerate(tiny_products(2))]


def test_training_sampler_equals_serving_sampler():
    pipe = _pipe()
    products = _products()
    prompts = [("a product on a wooden table", "lowres")] * 2

    @torch.no_grad()
    def encode(texts):
        return pipe.encode_prompt(texts)

    cfg = SampleConfig(size=32, steps=5, guidance_scale=3.0)
    batch = build_batch(products, prompts, encode, size=32, scales=[cfg.product_scale] * 2)
    ours = sample_images(pipe.c, batch, seeds=[3, 4], num_inference_steps=5, guidance_scale=3.0)
    served = pipe.generate(
        [p.cutout for p in products], [p[0] for p in prompts], [p[1] for p in prompts], [3, 4], cfg
    )
    ours_u8 = (ours.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for a, g in zip(ours_u8, served, strict=True):
        assert np.abs(a.astype(int) - g.image.astype(int)).max() <= 1
        # Same placement as the serving pre-processing.
    assert [tuple(b) for b in batch.extra["placements"]] == [g.prepared.box for g in served]


def test_finetuned_controlnet_loads_into_the_serving_pipeline(tmp_path):
    pipe = _pipe()

    @torch.no_grad()
    def encode(texts):
        return pipe.encode_prompt(texts)

    batches = ProductBatches(
        _products(), [("a product on a table", "")], encode, size=32, batch_size=2
    )
    cfg = FinetuneConfig(
        method="rfft",
        beta=0.5,
        steps=2,
        batch_size=2,
        num_inference_steps=4,
        last_k=2,
        guidance_scale=3.0,
        lr=1e-3,
        checkpoint_every=1,
    )
    res = finetune(
        components=pipe.c,
        reward=tiny_reward(),
        batches=batches,
        config=cfg,
        out_dir=tmp_path / "ft",
    )
    assert res.history[0]["l_cc"] == 0.0 and res.history[1]["l_cc"] > 0
    pipe.save_pretrained(tmp_path / "base")
    tuned = InpaintPipeline.from_pretrained(tmp_path / "base", controlnet=res.controlnet_dir)
    out = tuned.generate(
        [tiny_products(1)[0]],
        ["a product"],
        [""],
        [0],
        SampleConfig(size=32, steps=3, guidance_scale=1.0),
    )
    assert out[0].image.shape == (32, 32, 3)
    assert isinstance(Image.fromarray(out[0].image), Image.Image)
