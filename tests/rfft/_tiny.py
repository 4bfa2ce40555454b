"""Tiny diffusers components and batches for the fine-tuning tests (32 px, real classes)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from generation.ml.finetune import Components, FinetuneBatch

SIZE = 32


def tiny_components(seed: int = 0, *, inpaint: bool = True, prediction_type="epsilon"):
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    common = dict(
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2,
        in_channels=9 if inpaint else 4,
        out_channels=4,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **common,
    )
    controlnet = ControlNetModel(
        in_channels=4, conditioning_embedding_out_channels=(8, 16), **common
    )
    # A random ControlNet is exactly zero at its output (zero convs): give it an effect so the
    # regulariser and the reward see it from the first step, as a trained one would.
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.normal_(0, 0.05)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=SIZE,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        clip_sample=False,
        set_alpha_to_one=False,
    )
    return Components(unet=unet, controlnet=controlnet, scheduler=scheduler, vae=vae)


def tiny_products(n: int = 3, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[:16, :16]
    for _ in range(n):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 255, 3)
        rgba[..., 3] = (((yy - 7.5) / 7) ** 2 + ((xx - 7.5) / 5) ** 2 <= 1) * 255
        out.append(Image.fromarray(rgba, "RGBA"))
    return out


def make_batch(products, *, embeds: torch.Tensor) -> FinetuneBatch:
    """Centre each cut-out at half the canvas (the generator's placement), mask = 1 − alpha."""
    images, masks, controls, prods, alphas, boxes = [], [], [], [], [], []
    box = (8, 8, 24, 24)
    for p in products:
        canvas = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
        canvas.paste(p.resize((16, 16)), box[:2])
        a = np.asarray(canvas, np.float32) / 255.0
        rgb = a[..., :3] * 2 - 1
        alpha = a[..., 3:4]
        images.append(torch.from_numpy((rgb * alpha).transpose(2, 0, 1)))
        masks.append(torch.from_numpy((1 - alpha).transpose(2, 0, 1)))
        edge = np.abs(np.gradient(alpha[..., 0])[0]) + np.abs(np.gradient(alpha[..., 0])[1])
        controls.append(torch.from_numpy(np.repeat((edge > 0)[None], 3, 0).astype(np.float32)))
        prods.append(torch.from_numpy(rgb.transpose(2, 0, 1)))
        alphas.append(torch.from_numpy(alpha.transpose(2, 0, 1)))
        boxes.append(box)
    b = len(products)
    return FinetuneBatch(
        image=torch.stack(images),
        mask=torch.stack(masks),
        control=torch.stack(controls),
        prompt_embeds=embeds[:1].expand(b, -1, -1),
        negative_prompt_embeds=torch.zeros_like(embeds[:1]).expand(b, -1, -1),
        product=torch.stack(prods),
        alpha=torch.stack(alphas),
        extra={
            "products": list(products),
            "placements": boxes,
            "captions": ["a product on a table"] * b,
            "product_keys": list(range(b)),
        },
    )


def tiny_reward(seed: int = 1):
    from feedback.ml.model import RFNet
    from feedback.ml.presets import preset
    from feedback.rfft_reward import RFNetReward

    torch.manual_seed(seed)
    return RFNetReward(RFNet(preset("tiny", 6)))
