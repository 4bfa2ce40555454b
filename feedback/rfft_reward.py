"""RFNet as a differentiable reward, and the one place RFFT computes P(available).

No Django here (plain torch): the fine-tuning loop (generation.ml.finetune) calls `RFNetReward`
as its `reward(images, batch)`; evaluation (feedback.rfft_eval, bench/rfft.py) scores saved
creatives through `score_images` with the same function, so the reward and the evaluation read
RFNet's verdict identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .ml import diffmaps
from .ml.model import RFNet
from .ml.preprocess import process_images


def p_available(out: dict[str, torch.Tensor], model: RFNet) -> torch.Tensor:
    """Calibrated P(available) per row from RFNet's forward output (differentiable): the model's
    one definition (temperature-scaled softmax, feedback.ml.calibration), the same value the
    scoring job stores and the generation gate reads."""
    return model.p_available(out["logits"])


class ConditionMaps:
    """The product-only RFNet inputs of one (cut-out, placement, canvas): computed once by the
    numpy serving code (feedback.ml.preprocess), cached per key."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._cache: dict = {}

    def get(self, key, product: Image.Image, placement, canvas: tuple[int, int]) -> dict:
        if key not in self._cache:
            blank = Image.new("RGB", canvas, (0, 0, 0))
            arrays = process_images(blank, product, self.size, placement)
            self._cache[key] = {
                "product": torch.from_numpy(arrays["product"]),
                "placed": torch.from_numpy(arrays["placed"]),
                "mask": torch.from_numpy(arrays["mask"]),
                "edges1": torch.from_numpy(arrays["edges"][1:2]),
            }
        return self._cache[key]


class RFNetReward(nn.Module):
    """reward(images (B, 3, H, W) in [0, 1], batch) → P(available) (B,), differentiable in images.

    batch.extra must hold "products" (RGBA PIL cut-outs), "placements" ((x0, y0, x1, y1) boxes
    in image pixels, the generator's own input) and "captions" (the prompts); optional
    "product_keys" (cache keys, default: the product's id()).
    """

    def __init__(self, model: RFNet) -> None:
        super().__init__()
        cfg = model.config
        if "depth" in cfg.modalities:
            raise ValueError("RFNet with a depth modality cannot be a differentiable reward")
        self.model = model.eval().requires_grad_(False)
        self.config = cfg
        self.maps = ConditionMaps(cfg.image_size)

    def train(self, mode: bool = True):  # the reward is frozen: BatchNorm/dropout stay in eval
        return super().train(False)

    def inputs(
        self,
        images: torch.Tensor,
        products: Sequence[Image.Image],
        placements: Sequence,
        captions: Sequence[str],
        keys: Sequence | None = None,
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        dev = images.device
        canvas = (int(images.shape[-1]), int(images.shape[-2]))
        keys = keys or [id(p) for p in products]
        conds = [
            self.maps.get((k, tuple(map(float, pl)), canvas), p, pl, canvas)
            for k, p, pl in zip(keys, products, placements, strict=True)
        ]
        live = diffmaps.image_maps(images, cfg.image_size)
        batch: dict[str, torch.Tensor] = {"image": live["image"]}
        for m in ("product", "placed", "mask"):
            batch[m] = torch.stack([c[m] for c in conds]).to(dev).float() / 255.0
        edges1 = torch.stack([c["edges1"] for c in conds]).to(dev).float() / 255.0
        batch["edges"] = torch.cat([live["edges0"], edges1], 1)
        batch["saliency"] = live["saliency"]
        batch = {m: v for m, v in batch.items() if m in cfg.image_modalities}
        if "caption" in cfg.modalities:
            batch.update({k: v.to(dev) for k, v in self.model.tokenize(list(captions)).items()})
        return batch

    def forward(self, images: torch.Tensor, batch) -> torch.Tensor:
        extra = batch.extra
        inputs = self.inputs(
            images,
            extra["products"],
            extra["placements"],
            extra.get("captions") or [""] * len(images),
            extra.get("product_keys"),
        )
        return p_available(self.model(inputs, return_dict=True), self.model)


@torch.no_grad()
def score_images(
    reward: RFNetReward,
    images: Sequence[Image.Image],
    products: Sequence[Image.Image],
    placements: Sequence,
    captions: Sequence[str],
    batch_size: int = 32,
) -> np.ndarray:
    """P(available) of finished creatives (PIL), decoded to uint8 as served."""
    out = []
    for s in range(0, len(images), batch_size):
        ims = images[s : s + batch_size]
        t = torch.stack(
            [torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255.0) for im in ims]
        ).permute(0, 3, 1, 2)
        dev = next(reward.model.parameters()).device
        inputs = reward.inputs(
            t.to(dev), products[s : s + batch_size], placements[s : s + batch_size],
            captions[s : s + batch_size],
        )  # fmt: skip
        out.append(p_available(reward.model(inputs, return_dict=True), reward.model).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)
