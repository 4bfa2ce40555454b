"""Generation job kinds: `generate` and `train_diffuser` (queue gpu), registered in
GenerationConfig.ready().

Both are resumable: `generate` stores each image as it goes (unique per job, group and attempt)
and skips what an earlier attempt stored; `train_diffuser` checkpoints into ctx.work_dir
(generation.ml.training resumes from there) and a retried job finds the entry it registered.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from jobs.kinds import JobKind, register

from . import plugins, selectors
from .forms import GenerateForm, TrainDiffuserForm, parse_seeds, parse_skus

log = logging.getLogger(__name__)

GENERATE = "generate"
TRAIN_DIFFUSER = "train_diffuser"


def templates_from_params(params: dict):
    from .ml.prompts import DEFAULT_TEMPLATES, parse_templates

    return parse_templates(params["prompts"]) if params.get("prompts") else list(DEFAULT_TEMPLATES)


def generate_requests(params: dict):
    """Every (product × template × seed) row of a generate job, numbered (group) stably."""
    from .generating import Request

    products = selectors.select_products(
        skus=parse_skus(params.get("skus")),
        category=params.get("category") or "",
        all_products=bool(params.get("all_products")),
    )
    templates = templates_from_params(params)
    seeds = parse_seeds(params["seeds"])
    out, group = [], 0
    for product in products:
        for ti, template in enumerate(templates):
            for seed in seeds:
                out.append(Request(product, template, ti, seed, group))
                group += 1
    return out


def manifest_row(generation) -> dict:
    """One import-manifest row (import_creatives' fields + placement, model, steps)."""
    c, p = generation.creative, generation.product
    params = c.params or {}
    return {
        "image": c.image.name,
        "sku": p.sku,
        "product_image": p.image.name,
        "title": p.title,
        "category": p.category,
        "prompt": c.prompt,
        "negative_prompt": c.negative_prompt,
        "seed": c.seed,
        "generator": c.generator,
        "generator_version": c.generator_version,
        "sha256": c.sha256,
        "params": params,
        "placement": params.get("placement"),
        "model": generation.model.name,
        "steps": params.get("steps"),
    }


def run_generate(ctx) -> dict:
    from generation.models import Generation

    from .generating import Generator, style_kwargs

    params = ctx.params
    model = selectors.resolve_diffusion_model(params["model"])
    requests = generate_requests(params)
    done = set(Generation.objects.filter(job=ctx.job).values_list("group", flat=True))
    todo = [r for r in requests if r.group not in done]
    if done:
        ctx.reporter.log(f"Resuming: {len(done)} of {len(requests)} images already stored.")
    total = len(requests)
    ctx.reporter.progress(len(done), total, phase=f"generating with {model.name}")
    gen = Generator(
        model,
        device=ctx.device,
        size=params.get("size") or 0,
        steps=params["steps"],
        guidance_scale=params["guidance"],
        batch_size=params["batch_size"],
        category_tokens=params.get("category_tokens", True) is not False,
        **style_kwargs(params),
    )
    scratch = Path(ctx.work_dir) / "scratch"
    seconds = 0.0
    chunk = max(1, params["batch_size"])
    for i in range(0, len(todo), chunk):
        for res in gen.run(todo[i : i + chunk]):
            gen.store(res, job=ctx.job, scratch_dir=scratch)
            seconds += res.seconds
        ctx.reporter.progress(len(done) + i + len(todo[i : i + chunk]), total,
                              phase=f"generating with {model.name}")  # fmt: skip
    rows = list(
        Generation.objects.filter(job=ctx.job)
        .select_related("creative", "product", "model")
        .order_by("group", "attempt")
    )
    queued = 0
    if params.get("project"):
        queued = plugins.get("push_to_project")(
            params["project"], [g.creative for g in rows], ctx.job.requested_by
        )
        ctx.reporter.log(f"Queued {queued} new items in project {params['project']}.")
    manifest = Path(ctx.work_dir) / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(manifest_row(g)) + "\n" for g in rows))
    ctx.save_artifact("manifest.jsonl", manifest)
    n = len(rows)
    return {
        "model": model.name,
        "images": n,
        "products": len({g.product_id for g in rows}),
        "queued": queued,
        "project": params.get("project") or None,
        "compute_seconds": round(sum(g.gpu_seconds for g in rows), 2),
        "images_per_second": round(n / seconds, 3) if seconds else None,
        "device": ctx.device,
    }


def training_examples(creatives, *, use_tokens: bool = True):
    """generation.ml.training Examples from creatives (images read through storage)."""
    from django.core.files.storage import default_storage
    from PIL import Image

    from .ml.prompts import category_token
    from .ml.training import Example

    def load(name):
        with default_storage.open(name, "rb") as fh:
            im = Image.open(fh)
            im.load()
        return im

    out = []
    for c in creatives:
        box = _placement(c.params or {})
        prompt = c.prompt or ""
        token = category_token(c.product.category) if use_tokens else ""
        if token:  # the same identifier token generation puts in front of the prompt
            leaf = c.product.category.rsplit("/", 1)[-1].replace("_", " ")
            prompt = f"{token} {leaf}, {prompt}"
        try:
            out.append(Example(image=load(c.image.name).convert("RGB"),
                               product=load(c.product.image.name).convert("RGBA"),
                               box=box, prompt=prompt, key=c.product.sku))  # fmt: skip
        except (OSError, ValueError) as exc:
            log.warning("skipping creative %s: %s", c.pk, exc)
    return out


def _placement(params: dict):
    # Only the generator's input placement: a recorded post-defect box would encode the label.
    box = params.get("placement")
    if isinstance(box, list | tuple) and len(box) == 4:
        try:
            return tuple(float(v) for v in box)
        except (TypeError, ValueError):
            return None
    return None


def run_train_diffuser(ctx) -> dict:
    from generation.models import DiffusionModel

    from . import registry
    from .ml.config import preset
    from .ml.pipeline import load_components
    from .ml.training import TrainConfig, train

    params = ctx.params
    existing = DiffusionModel.objects.filter(job=ctx.job).first()
    if existing is not None:  # registered by an attempt that died right after
        return {"model": existing.name, "resumed": True}
    creatives = plugins.get("training_creatives")(params["dataset"], params["label"])
    if not creatives:
        raise ValueError(
            f"Dataset version {params['dataset']} has no {params['label']!r} creatives."
        )
    examples = training_examples(creatives)
    ctx.reporter.log(f"{len(examples)} {params['label']} creatives from {params['dataset']}")
    base = selectors.resolve_diffusion_model(params["base"]) if params.get("base") else None
    components, model_config = None, None
    if base is not None:
        components = load_components(base.pipeline_path, controlnet=base.controlnet_full_path,
                                     lora=base.lora_full_path)  # fmt: skip
    else:
        model_config = preset(params["preset"])
    cfg = TrainConfig(
        steps=params["steps"],
        batch_size=params["batch_size"],
        lr=params["lr"],
        unet_lora_rank=params.get("lora_rank") or 0,
        train_text_encoder=base is None,
        gradient_checkpointing=base is not None,
        max_seconds=(params.get("max_minutes") or 0) * 60 or None,
        checkpoint_every=max(1, min(250, params["steps"] // 4 or 1)),
        seed=params.get("seed") or 0,
        device=ctx.device,
    )
    samples = [(ex.product, ex.prompt) for ex in examples[:: max(1, len(examples) // 6)][:6]]
    result = train(examples=examples, out_dir=Path(ctx.work_dir) / "train",
                   model_config=model_config, components=components, config=cfg,
                   reporter=ctx.reporter, resume=True, sample_products=samples)  # fmt: skip
    grid = Path(ctx.work_dir) / "train" / "samples" / "final.png"
    if grid.exists():
        ctx.save_artifact("samples.png", grid)
    metrics = {k: v for k, v in result.metrics.items() if k != "history"}
    model = registry.register_trained_model(
        source_dir=result.model_dir,
        name=params.get("name") or None,
        name_prefix=f"diffuser-{params['preset'] if base is None else base.name}",
        job=ctx.job,
        parent=base,
        lineage={
            "dataset_version": params["dataset"],
            "label": params["label"],
            "examples": len(examples),
            "params": dict(ctx.job.params or {}),
        },  # fmt: skip
        metrics=metrics,
        created_by=ctx.job.requested_by,
    )
    ctx.reporter.log(f"Registered {model.name}")
    return {"model": model.name, "steps": metrics.get("steps"), "loss": metrics.get("loss_last")}


def _generate_lineage(params: dict):
    model = selectors.resolve_diffusion_model(params["model"])
    inputs = {"model": model.name, "model_checksum": model.checksum, "seeds": params["seeds"]}
    if params.get("project"):
        inputs["project"] = params["project"]
    if params.get("style_reference"):
        inputs["style_reference"] = params["style_reference"]
    return inputs, model


def _train_lineage(params: dict):
    inputs = {"dataset_version": params["dataset"], "label": params["label"]}
    base = None
    if params.get("base"):
        base = selectors.resolve_diffusion_model(params["base"])
        inputs["base_model"] = base.name
    return inputs, base


def register_kinds() -> None:
    register(
        JobKind(
            name=GENERATE,
            queue="gpu",
            run=run_generate,
            params_form=GenerateForm,
            label="Generate creatives",
            description="Products × prompt templates × seeds with a registered diffusion model.",
            resumable=True,
            max_attempts=3,
            lineage=_generate_lineage,
        )
    )
    register(
        JobKind(
            name=TRAIN_DIFFUSER,
            queue="gpu",
            run=run_train_diffuser,
            params_form=TrainDiffuserForm,
            label="Train diffuser",
            description="Train the tiny base (or fine-tune a registered model) on a dataset "
            "version's creatives and register the result.",
            resumable=True,
            max_attempts=3,
            lineage=_train_lineage,
        )
    )
