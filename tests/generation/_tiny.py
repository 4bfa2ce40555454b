"""Tiny generation fixtures: hand-made cut-outs and tiny real diffusers pipelines (32 px)."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from generation.ml.config import DiffusionConfig, SampleConfig, preset
from generation.ml.pipeline import Components, InpaintPipeline, build_components


def cutout(w: int = 20, h: int = 40, *, color=(200, 40, 30), garbage: bool = False) -> Image.Image:
    """An RGBA cut-out: an opaque rectangle with a soft (alpha 128) rim and a dark stripe,
    inside a transparent margin whose RGB is noise when `garbage` (it must never matter)."""
    rng = np.random.default_rng(0)
    arr = np.zeros((h + 8, w + 8, 4), np.uint8)
    if garbage:
        arr[..., :3] = rng.integers(0, 255, arr[..., :3].shape)
    arr[4 : h + 4, 4 : w + 4] = (*color, 128)
    arr[5 : h + 3, 5 : w + 3] = (*color, 255)
    arr[4 + h // 2 : 6 + h // 2, 5 : w + 3, :3] = 20  # a stripe: an inner edge
    return Image.fromarray(arr, "RGBA")


@functools.cache
def _components(codec: str) -> Components:
    if codec == "pixel_unshuffle":
        cfg = preset("tiny", unet_block_out_channels=[16, 32], text_layers=1)
    else:
        cfg = DiffusionConfig(
            codec="autoencoder_kl", vae_block_out_channels=[16, 32], vae_scaling_factor=1.0,
            unet_block_out_channels=[16, 32], text_layers=1, prediction_type="epsilon",
        )  # fmt: skip
    return build_components(cfg, seed=0)


def tiny_pipeline(codec: str = "pixel_unshuffle") -> InpaintPipeline:
    return InpaintPipeline(_components(codec))


def sample_config(**kw) -> SampleConfig:
    return SampleConfig(**{"size": 32, "steps": 3, "guidance_scale": 2.0, "batch_size": 2, **kw})
