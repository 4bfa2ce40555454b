"""Products × prompts → FinetuneBatch for the fine-tuning loop, and full DDIM sampling with the same
Denoiser (evaluation, bench). No Django.

Pre-processing follows the reference pipeline (public code of the ECCV 2024 paper): the cut-out
is scaled so its longer side is `scale` (0.70–0.78) of the canvas and centred; the inpaint mask is
255 − alpha, dilated; the Canny condition is computed on the placed product only; after decoding
the product pixels are pasted back. The same functions prepare training batches and evaluation
inputs, so the fine-tuned model is trained on exactly what it is later asked to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from . import processing
from .finetune import Components, Denoiser, FinetuneBatch, paste_back
from .finetune_config import FinetuneConfig

PromptEncoder = Callable[[list[str]], torch.Tensor]  # prompts → (B, L, D) text states


@dataclass
class ProductInput:
    sku: str
    cutout: Image.Image
    box: tuple[int, int, int, int] | None = None  # a layout rule's box; None = centred, scaled


def build_batch(
    products: Sequence[ProductInput],
    prompts: Sequence[tuple[str, str]],
    encode: PromptEncoder,
    *,
    size: int,
    scales: Sequence[float],
    mask_dilation: float = 0.01,
) -> FinetuneBatch:
    """One batch: products[i] with prompts[i] = (prompt, negative prompt), placed at scales[i]
    (or at products[i].box) by generation.ml.processing.prepare, the pipeline's own code."""
    images, masks, controls, prods, alphas, boxes = [], [], [], [], [], []
    for p, scale in zip(products, scales, strict=True):
        prep = processing.prepare(
            p.cutout, size, scale=scale, box=p.box, mask_dilation=mask_dilation
        )
        a = prep.placed[..., 3].astype(np.float32) / 255.0
        images.append(_chw(prep.image))
        masks.append(torch.from_numpy((prep.mask >= 128).astype(np.float32))[None])
        controls.append(torch.from_numpy(prep.control.transpose(2, 0, 1) / 255.0).float())
        prods.append(_chw(prep.placed[..., :3]))
        alphas.append(torch.from_numpy(a)[None])
        boxes.append(prep.box)
    pos = encode([pr[0] for pr in prompts])
    neg = encode([pr[1] for pr in prompts])
    return FinetuneBatch(
        image=torch.stack(images),
        mask=torch.stack(masks),
        control=torch.stack(controls),
        prompt_embeds=pos,
        negative_prompt_embeds=neg,
        product=torch.stack(prods),
        alpha=torch.stack(alphas),
        extra={
            "products": [p.cutout for p in products],
            "placements": boxes,
            "captions": [pr[0] for pr in prompts],
            "product_keys": [p.sku for p in products],
            "skus": [p.sku for p in products],
        },
    )


def _chw(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0)


class ProductBatches:
    """The loop's BatchSource: each micro-batch draws products, prompts and scales from the
    step's generator (so a resumed run draws the same ones)."""

    def __init__(
        self,
        products: Sequence[ProductInput],
        prompts: Sequence[tuple[str, str]],
        encode: PromptEncoder,
        *,
        size: int,
        batch_size: int,
        scale_range: tuple[float, float] = (0.70, 0.78),
        mask_dilation: float = 0.01,
    ) -> None:
        if not products or not prompts:
            raise ValueError("fine-tuning needs at least one product and one prompt")
        self.products, self.prompts, self.encode = list(products), list(prompts), encode
        self.size, self.batch_size = size, batch_size
        self.scale_range, self.mask_dilation = scale_range, mask_dilation

    def __call__(self, step: int, gen: torch.Generator) -> FinetuneBatch:
        b = self.batch_size
        pi = torch.randint(len(self.products), (b,), generator=gen).tolist()
        qi = torch.randint(len(self.prompts), (b,), generator=gen).tolist()
        lo, hi = self.scale_range
        scales = (lo + (hi - lo) * torch.rand(b, generator=gen)).tolist()
        return build_batch(
            [self.products[i] for i in pi],
            [self.prompts[i] for i in qi],
            self.encode,
            size=self.size,
            scales=scales,
            mask_dilation=self.mask_dilation,
        )


class HashPromptEncoder:
    """Toy-world text states: a fixed random vector sequence per prompt (hash-seeded). For tiny
    pipelines without a text encoder; real pipelines pass their CLIP encoder instead."""

    def __init__(self, length: int, dim: int) -> None:
        self.length, self.dim = length, dim

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        out = []
        for p in prompts:
            seed = int.from_bytes(hashlib.sha256(p.encode()).digest()[:8], "little")
            g = torch.Generator().manual_seed(seed)
            vec = torch.randn(self.length, self.dim, generator=g)
            out.append(vec if p else torch.zeros_like(vec))
        return torch.stack(out)


@torch.no_grad()
def sample_images(
    components: Components,
    batch: FinetuneBatch,
    *,
    seeds: Sequence[int],
    num_inference_steps: int,
    guidance_scale: float,
    controlnet_conditioning_scale: float = 1.0,
) -> torch.Tensor:
    """Full DDIM sampling with paste-back → (B, 3, H, W) in [0, 1]; per-image seeds."""
    cfg = FinetuneConfig(
        num_inference_steps=num_inference_steps,
        last_k=1,
        guidance_scale=guidance_scale,
        controlnet_conditioning_scale=controlnet_conditioning_scale,
    )
    den = Denoiser(components, cfg)
    device = next(components.unet.parameters()).device
    dtype = next(components.unet.parameters()).dtype
    batch = batch.to(device, dtype)
    prep = den.prepare(batch)
    sched = components.scheduler
    sched.set_timesteps(num_inference_steps, device=device)
    shape = (den.latent_channels, *prep["init_latents"].shape[-2:])
    noise = torch.stack(
        [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    ).to(device, dtype)
    x = noise * sched.init_noise_sigma
    ts = sched.timesteps
    for i, t in enumerate(ts):
        out, _ = den.guided(sched.scale_model_input(x, t), t, prep, components.controlnet)
        x = sched.step(out, t, x, return_dict=True).prev_sample
        x = den.blend_known(x, prep, ts[i + 1] if i + 1 < len(ts) else None, noise)
    return paste_back(den.codec.decode(x), batch).float()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    arr = (images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]
