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
    return fresh_components(codec)


def fresh_components(codec: str = "pixel_unshuffle") -> Components:
    """Uncached: for tests that change the components (attaching an IP-Adapter)."""
    if codec == "pixel_unshuffle":
        cfg = preset("tiny", unet_block_out_channels=[16, 32], text_layers=1)
    else:
        cfg = DiffusionConfig(
            codec="autoencoder_kl", vae_block_out_channels=[16, 32], vae_scaling_factor=1.0,
            unet_block_out_channels=[16, 32], text_layers=1, prediction_type="epsilon",
            # Epsilon prediction needs a terminal SNR above zero (x0 = (x - σε)/0 otherwise:
            # NaN images).
            rescale_betas_zero_snr=False, timestep_spacing="leading",
        )  # fmt: skip
    return build_components(cfg, seed=0)


def tiny_pipeline(codec: str = "pixel_unshuffle") -> InpaintPipeline:
    return InpaintPipeline(_components(codec))


def sample_config(**kw) -> SampleConfig:
    return SampleConfig(**{"size": 32, "steps": 3, "guidance_scale": 2.0, "batch_size": 2, **kw})


def make_cutout_product(sku: str, *, category: str = "beauty/makeup", **kw):
    """A Product whose image is a hand-made RGBA cut-out (stored through default storage)."""
    import hashlib
    import io

    from django.core.files.base import ContentFile

    from generation.models import Product

    buf = io.BytesIO()
    im = cutout(**kw)
    im.save(buf, format="PNG")
    data = buf.getvalue()
    product = Product(
        sku=sku,
        title=f"Product {sku}",
        category=category,
        sha256=hashlib.sha256(data).hexdigest(),
        width=im.width,
        height=im.height,
    )
    product.image.save(f"{sku}.png", ContentFile(data), save=False)
    product.save()
    return product


def register_tiny(tmp_path, name: str = "tiny", codec: str = "pixel_unshuffle"):
    from generation import registry
    from generation.ml.pipeline import save_components

    folder = save_components(_components(codec), tmp_path / f"model-{name}")
    return registry.register_diffusion_model(name=name, path=folder)


def style_pipeline(tmp_path, codec: str = "pixel_unshuffle"):
    """A tiny pipeline with the tiny IP-Adapter + CLIP image encoder attached (fresh components:
    loading an adapter changes the UNet), and the (weights file, encoder folder) it loaded."""
    from generation.ml.style import build_tiny_style_adapter

    pipe = InpaintPipeline(fresh_components(codec))
    weights, encoder = build_tiny_style_adapter(pipe.c.unet, tmp_path / f"style-{codec}")
    pipe.load_ip_adapter(weights, encoder)
    return pipe, weights, encoder


def style_image(color=(20, 160, 220), size: int = 40) -> Image.Image:
    """A hand-made style reference: two colour bands and noise (deterministic)."""
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    arr[: size // 2] += np.array(color, np.uint8) // 2
    arr[size // 2 :] += np.array(color[::-1], np.uint8) // 2
    return Image.fromarray(arr, "RGB")


def register_tiny_style(tmp_path, name: str = "tiny-style", codec: str = "pixel_unshuffle"):
    """register_tiny + the tiny IP-Adapter and image encoder (built for the same UNet)."""
    from generation import registry
    from generation.ml.pipeline import save_components
    from generation.ml.style import build_tiny_style_adapter

    comps = _components(codec)  # read only: saving and building the adapter change nothing
    folder = save_components(comps, tmp_path / f"model-{name}")
    weights, encoder = build_tiny_style_adapter(comps.unet, tmp_path / f"style-{name}")
    return registry.register_diffusion_model(
        name=name, path=folder, ip_adapter_path=weights, image_encoder_path=encoder
    )


def png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
