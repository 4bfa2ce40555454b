"""Generating creatives with a registered diffusion model (the Django side of generation.ml).

`Generator` loads a registry entry once, turns requests (product, template, seed, group,
attempt) into pasted-back images in batches and stores each as a Creative + Generation with its
full provenance. The `generate` job, recurrent generation (feedback.recurrent) and the demo use it.

A style reference (a stored image's name, `style_kwargs(params)`) loads the model's IP-Adapter
and conditions every image of the Generator on it; provenance records the image's storage name,
the sha256 of its bytes and the scale. Without one the adapter is never loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.storage import default_storage
from PIL import Image

from generation import images, selectors, services
from generation.ml.prompts import PromptTemplate, render
from generation.models import DiffusionModel, Product


@dataclass
class Request:
    product: Product
    template: PromptTemplate
    template_index: int
    seed: int
    group: int
    attempt: int = 1
    extra: dict = field(default_factory=dict)


@dataclass
class Result:
    request: Request
    image: object  # (S, S, 3) uint8, pasted back
    prompt: str
    negative_prompt: str
    tokens: list[str]
    box: tuple[int, int, int, int]
    seconds: float  # this image's share of its batch's compute time


def style_kwargs(params: dict) -> dict:
    """The Generator's style-reference arguments from a generate-like job's params."""
    scale = params.get("style_scale")
    return {
        "style_reference": params.get("style_reference") or "",
        "style_scale": 0.5 if scale in (None, "") else float(scale),
    }


def product_image(product: Product) -> Image.Image:
    """The RGBA cut-out, read through the storage API (contract 4)."""
    with default_storage.open(product.image.name, "rb") as fh:
        im = Image.open(fh)
        im.load()
    return im.convert("RGBA")


class Generator:
    def __init__(
        self,
        model: DiffusionModel,
        *,
        device: str = "cpu",
        size: int = 0,
        steps: int = 40,
        guidance_scale: float = 7.5,
        batch_size: int = 4,
        category_tokens: bool = True,
        backend: str = "rfstudio",
        style_reference: str = "",
        style_scale: float = 0.5,
    ) -> None:
        import io

        import torch

        from generation.ml.config import SampleConfig
        from generation.ml.pipeline import InpaintPipeline

        self.model = model
        self.style_image: Image.Image | None = None
        self.style: dict | None = None
        style = {}
        if style_reference:
            problem = selectors.style_reference_error(model)
            if problem:
                raise ValueError(problem)
            name, data = selectors.style_reference_bytes(style_reference)
            self.style_image = Image.open(io.BytesIO(data)).convert("RGB")
            self.style = {"image": name, "sha256": images.sha256_bytes(data),
                          "scale": float(style_scale)}  # fmt: skip
            style = {"ip_adapter": model.ip_adapter_full_path,
                     "image_encoder": model.image_encoder_full_path}  # fmt: skip
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        self.pipe = InpaintPipeline.from_pretrained(
            model.pipeline_path,
            controlnet=model.controlnet_full_path,
            lora=model.lora_full_path,
            device=device,
            dtype=dtype,
            **style,
        )
        native = self.pipe.native_size
        if native and size and size != native:
            raise ValueError(f"{model.name} generates {native} px canvases, not {size} px")
        self.size = size or native or 512
        self.sample = SampleConfig(
            size=self.size, steps=steps, guidance_scale=guidance_scale, batch_size=batch_size,
            ip_adapter_scale=float(style_scale),
        )  # fmt: skip
        self.category_tokens = category_tokens
        self.backend = backend
        self.device = str(device)
        self._images: dict[int, Image.Image] = {}

    def _cutout(self, product: Product) -> Image.Image:
        if product.pk not in self._images:
            self._images[product.pk] = product_image(product)
        return self._images[product.pk]

    def run(self, requests: list[Request]) -> list[Result]:
        """Generate every request (same-scale requests batched together)."""
        import dataclasses

        results: list[Result] = []
        by_scale: dict[float, list[Request]] = {}
        for r in requests:
            by_scale.setdefault(r.template.image_scale, []).append(r)
        for scale, reqs in by_scale.items():
            cfg = dataclasses.replace(self.sample, product_scale=scale)
            for i in range(0, len(reqs), cfg.batch_size):
                chunk = reqs[i : i + cfg.batch_size]
                rendered = [
                    render(r.template, category=r.product.category, title=r.product.title,
                           seed=r.seed, use_token=self.category_tokens)
                    for r in chunk
                ]  # fmt: skip
                t0 = time.perf_counter()
                outs = self.pipe.generate(
                    [self._cutout(r.product) for r in chunk],
                    [p for p, _, _ in rendered],
                    [n for _, n, _ in rendered],
                    [r.seed for r in chunk],
                    cfg,
                    backend=self.backend,
                    style_image=self.style_image,
                )
                share = (time.perf_counter() - t0) / len(chunk)
                for r, (p, n, toks), out in zip(chunk, rendered, outs, strict=True):
                    results.append(Result(r, out.image, p, n, toks, out.prepared.box, share))
        order = {id(r): i for i, r in enumerate(requests)}
        results.sort(key=lambda res: order[id(res.request)])
        return results

    def provenance(self, res: Result, job=None) -> dict:
        r = res.request
        return {
            "model": self.model.name,
            "model_checksum": self.model.checksum,
            "prompt_template": r.template_index,
            "template": r.template.prompt,
            "category_tokens": res.tokens,
            "placement": list(res.box),  # input to the generator (where the cut-out was put)
            "image_scale": r.template.image_scale,
            "size": self.size,
            "steps": self.sample.steps,
            "guidance_scale": self.sample.guidance_scale,
            "controlnet_conditioning_scale": self.sample.controlnet_conditioning_scale,
            "mask_dilation": self.sample.mask_dilation,
            "scheduler": "ddim",
            "backend": self.backend,
            "device": self.device,
            # {image (storage name), sha256 (of its bytes), scale} or None.
            "style_reference": dict(self.style) if self.style else None,
            "job": getattr(job, "pk", None),
            "group": r.group,
            "attempt": r.attempt,
            **r.extra,
        }

    def store(self, res: Result, *, job=None, scratch_dir: str | Path, score=None, kept=None):
        r = res.request
        return services.store_generated(
            model=self.model,
            product=r.product,
            image=res.image,
            prompt=res.prompt,
            negative_prompt=res.negative_prompt,
            seed=r.seed,
            provenance=self.provenance(res, job),
            group=r.group,
            attempt=r.attempt,
            job=job,
            score=score,
            kept=kept,
            gpu_seconds=res.seconds,
            scratch_dir=scratch_dir,
        )
