"""RFFT job kinds: `rfft` (fine-tune a diffuser's ControlNet against an RFNet) and
`evaluate_generator` (usable rate by the reward and by an independent judge, diversity, blind A/B
pairs for QA). Registered in FeedbackConfig.ready (feedback/apps.py).

`rfft` is resumable: generation.ml.finetune checkpoints into ctx.work_dir and continues from the
last checkpoint after a killed worker; a retry that finds the model its job already registered
returns it. `evaluate_generator` writes its evaluation in one transaction at the end (a retry
starts over: generation is deterministic per seed).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from . import rfft_registry
from .rfft_forms import EvaluateGeneratorParamsForm, RFFTParamsForm
from .selectors import resolve_model

log = logging.getLogger(__name__)

RFFT = "rfft"
EVALUATE_GENERATOR = "evaluate_generator"


def load_prompts() -> list[tuple[str, str]]:
    """(prompt, negative prompt) pairs: ../shared/prompts.json when present, else the built-in
    fallback list (the demo works without the shared folder)."""
    from generation.synthetic import _FALLBACK_PROMPTS

    path = Path(settings.SHARED_DIR) / "prompts.json"
    rows = []
    if path.is_file():
        try:
            rows = [
                (d["prompt"], d.get("negative_prompt", ""))
                for d in json.loads(path.read_text())
                if isinstance(d, dict) and d.get("prompt")
            ]
        except (ValueError, TypeError):
            log.warning("unreadable %s; using the built-in prompts", path)
    if not rows:
        rows = [(d["prompt"].format("white"), d["negative_prompt"]) for d in _FALLBACK_PROMPTS]
    return rows


def product_inputs(skus: list[str] | None):
    """ProductInput per product (cut-out read through the storage API, contract 4)."""
    from PIL import Image

    from generation.ml.finetune_data import ProductInput
    from generation.models import Product

    qs = Product.objects.order_by("sku")
    if skus:
        qs = qs.filter(sku__in=skus)
    out = []
    for p in qs:
        with default_storage.open(p.image.name, "rb") as fh:
            im = Image.open(fh)
            im.load()
        out.append(ProductInput(sku=p.sku, cutout=im.convert("RGBA")))
    if not out:
        raise ValueError("No products to fine-tune on.")
    return out


def _skus(value: str) -> list[str]:
    return [s for s in (value or "").split(",") if s]


def run_rfft(ctx) -> dict:
    import torch

    from generation.ml.finetune import finetune
    from generation.ml.finetune_config import FinetuneConfig
    from generation.ml.finetune_data import ProductBatches

    from .ml.model import RFNet
    from .rfft_reward import RFNetReward

    p = ctx.params
    existing = rfft_registry.finetuned_by_job(ctx.job)
    if existing is not None:  # registered by an attempt that died right after
        return {"model": existing.name, "resumed": True}
    base = rfft_registry.resolve_diffuser(p["base"])
    reward_model = resolve_model(p["reward"])
    ctx.reporter.progress(0, p["steps"], phase="loading models")
    pipe = rfft_registry.load_pipeline(base, device=ctx.device)
    reward = RFNetReward(RFNet.from_pretrained(reward_model.checkpoint_path))
    products = product_inputs(_skus(p.get("products")))
    prompts = load_prompts()
    size = pipe.native_size or 512

    @torch.no_grad()
    def encode(texts):
        return pipe.encode_prompt(texts)

    config = FinetuneConfig(
        method=p["method"],
        beta=float(p["beta"]),
        steps=int(p["steps"]),
        batch_size=int(p["batch_size"]),
        gradient_accumulation_steps=int(p["gradient_accumulation_steps"]),
        lr=float(p["lr"]),
        num_inference_steps=int(p["num_inference_steps"]),
        last_k=int(p["last_k"]),
        guidance_scale=float(p["guidance_scale"]),
        lora_rank=int(p["lora_rank"]),
        gradient_checkpointing=bool(p["gradient_checkpointing"]),
        checkpoint_every=int(p["checkpoint_every"]),
        seed=int(p["seed"]),
        device=ctx.device,
    )
    ctx.reporter.log(
        f"{config.method} on {base.name} against {reward_model.name}: {len(products)} products, "
        f"{len(prompts)} prompts, {size} px"
    )
    batches = ProductBatches(products, prompts, encode, size=size, batch_size=config.batch_size)
    result = finetune(
        components=pipe.c,
        reward=reward,
        batches=batches,
        config=config,
        out_dir=Path(ctx.work_dir) / "finetune",
        reporter=ctx.reporter,
        resume=True,
    )
    if result.resumed_from_step:
        ctx.reporter.log(f"resumed from step {result.resumed_from_step}")
    metrics = {k: v for k, v in result.metrics.items()}
    model = rfft_registry.register_finetuned(
        base=base,
        controlnet_dir=result.controlnet_dir,
        lora_dir=result.lora_dir,
        reward_model=reward_model,
        job=ctx.job,
        params={**dict(ctx.job.params or {}), "finetune": config.to_dict()},
        metrics=metrics,
        name=p.get("name") or None,
    )
    ctx.reporter.log(f"Registered {model.name}")
    return {
        "model": model.name,
        "base": base.name,
        "reward_model": reward_model.name,
        "method": config.method,
        "beta": config.beta,
        "reward_first": metrics.get("reward_first"),
        "reward_last": metrics.get("reward_last"),
        "resumed_from_step": result.resumed_from_step,
    }


def run_evaluate_generator(ctx) -> dict:
    from . import rfft_services

    return rfft_services.evaluate_generator(
        params=ctx.params, job=ctx.job, reporter=ctx.reporter, device=ctx.device
    )


def _rfft_lineage(params: dict):
    base = rfft_registry.resolve_diffuser(params["base"])
    inputs = {"base": base.name, "reward_model": params["reward"], "method": params["method"]}
    if params.get("products"):
        inputs["products"] = params["products"]
    return inputs, base


def _evaluate_lineage(params: dict):
    model = rfft_registry.resolve_diffuser(params["model"])
    inputs = {k: params.get(k) for k in ("model", "baseline", "judge", "reward", "products")}
    return inputs, model


def register_kinds() -> None:
    from jobs.kinds import JobKind, register

    register(
        JobKind(
            name=RFFT,
            queue="gpu",
            run=run_rfft,
            params_form=RFFTParamsForm,
            label="Fine-tune diffuser against RFNet",
            description="RFFT (reward + consistent condition) or ReFL: train the ControlNet "
            "against a frozen RFNet and register the result as a new diffusion model.",
            resumable=True,
            max_attempts=3,
            lineage=_rfft_lineage,
        )
    )
    register(
        JobKind(
            name=EVALUATE_GENERATOR,
            queue="gpu",
            run=run_evaluate_generator,
            params_form=EvaluateGeneratorParamsForm,
            label="Evaluate generator",
            description="Usable rate (reward and independent judge RFNet), diversity and blind "
            "A/B pairs of a diffusion model against a baseline.",
            max_attempts=2,
            lineage=_evaluate_lineage,
        )
    )
