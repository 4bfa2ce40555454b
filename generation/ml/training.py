"""Supervised training of the inpainting diffuser on creatives (plain torch/diffusers, no Django).

Trains the tiny base from scratch (UNet + ControlNet + text encoder; the pixel-unshuffle codec
has nothing to learn) or fine-tunes a real SD-1.5 folder (ControlNet in full, the UNet as a peft
LoRA, gradient checkpointing, mixed precision; `accelerate` for devices and several processes),
laid out like diffusers' examples/controlnet/train_controlnet.py.

Each example is (creative image, product cut-out, placement box in creative pixels or None,
prompt). The inputs are built by generation.ml.processing exactly as at generation time: the
cut-out is placed at the box (the reference placement when the box is unknown), the mask is
255 − alpha dilated, the ControlNet condition is Canny of the cut-out; the known region the UNet
sees is the creative's own pixels under the product. Loss: MSE on the scheduler's prediction
type (v for the tiny presets), uniform timesteps, prompt dropout for classifier-free guidance,
horizontal flips. An EMA of the trained weights is what gets saved.

Checkpoints: `out_dir/last/` (weights, EMA, optimizer, step, history) every `checkpoint_every`
steps through an atomic folder swap; `train(resume=True)` continues from it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from jobs.accel import make_accelerator
from jobs.devices import pick_device

from . import processing
from .config import DiffusionConfig, SampleConfig
from .pipeline import (
    Components,
    InpaintPipeline,
    build_components,
    prepared_tensors,
    save_components,
)

LAST_DIR = "last"
STATE_NAME = "state.json"
TRAIN_CONFIG_NAME = "train_config.json"


@dataclass
class TrainConfig:
    steps: int = 4000  # optimizer steps
    batch_size: int = 32
    lr: float = 1e-3  # AdamW; tiny models from scratch tolerate a high rate
    lr_warmup_steps: int = 100
    lr_schedule: str = "cosine"  # cosine | constant (after warmup)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999  # EMA of trained weights (what is saved); 0 = no EMA
    prompt_dropout: float = 0.1  # share of empty prompts (the unconditional branch of CFG)
    hflip: bool = True
    # What trains: the UNet in full or as a LoRA of this rank (0 = full), the ControlNet, the
    # text encoder (tiny presets learn their own; SD-1.5's CLIP stays frozen).
    unet_lora_rank: int = 0
    train_controlnet: bool = True
    train_text_encoder: bool = True
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"  # auto (bf16/fp16 on CUDA, none on CPU) | no | bf16 | fp16
    gradient_accumulation_steps: int = 1
    checkpoint_every: int = 500
    sample_every: int = 0  # steps between sample grids (0: only at the end)
    max_seconds: float | None = None  # stop (and save) after this much training time
    seed: int = 0
    device: str | None = None  # None: RFSTUDIO_DEVICE, else CUDA when present, else CPU
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(steps=20, guidance_scale=2.0))

    def __post_init__(self) -> None:
        if isinstance(self.sample, dict):
            self.sample = SampleConfig.from_dict(self.sample)
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError("lr_schedule must be cosine or constant")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"unknown mixed_precision {self.mixed_precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Example:
    image: str | os.PathLike | Image.Image  # the creative
    product: str | os.PathLike | Image.Image  # RGBA cut-out
    box: tuple[float, float, float, float] | None  # product box in creative pixels, if known
    prompt: str = ""
    key: str = ""  # e.g. the SKU, for held-out sampling


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path
    history: list[dict]
    metrics: dict[str, Any]
    resumed_from_step: int


class _Null:
    def progress(self, step, total=None, phase=None) -> None:
        pass

    def metric(self, name, value, step=None) -> None:
        pass

    def log(self, message) -> None:
        pass


def _open(source, mode: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.convert(mode)
    with Image.open(source) as im:
        return im.convert(mode)


def square(image: Image.Image, size: int) -> tuple[Image.Image, float, int, int]:
    """Centre-crop to a square and resize; (image, scale, crop x0, crop y0) to map boxes."""
    w, h = image.size
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    crop = image.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BICUBIC)
    return crop, size / side, x0, y0


def example_arrays(ex: Example, size: int, sample: SampleConfig) -> dict[str, np.ndarray]:
    """The training inputs of one example, built with the serving pre-processing."""
    image, scale, cx, cy = square(_open(ex.image, "RGB"), size)
    product = _open(ex.product, "RGBA")
    box = None
    if ex.box is not None:
        x0, y0, x1, y1 = ((ex.box[0] - cx) * scale, (ex.box[1] - cy) * scale,
                          (ex.box[2] - cx) * scale, (ex.box[3] - cy) * scale)  # fmt: skip
        x0, y0 = max(0, round(x0)), max(0, round(y0))
        x1, y1 = min(size, round(x1)), min(size, round(y1))
        box = (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None
    prep = processing.prepare(
        product,
        size,
        scale=sample.product_scale,
        anchor=sample.anchor,
        bottom_margin=sample.bottom_margin,
        box=box,
        mask_dilation=sample.mask_dilation,
        canny_low=sample.canny_low,
        canny_high=sample.canny_high,
    )
    # The known region is the creative itself (its product pixels), the target the whole image.
    prep.image = np.asarray(image, np.uint8)
    return {"image": prep.image, "mask": prep.mask, "control": prep.control}


def build_dataset(
    examples: Sequence[Example], size: int, sample: SampleConfig, reporter=None
) -> dict[str, Any]:
    reporter = reporter or _Null()
    images, masks, controls, prompts, skipped = [], [], [], [], 0
    for i, ex in enumerate(examples):
        try:
            arr = example_arrays(ex, size, sample)
        except (OSError, ValueError) as exc:
            skipped += 1
            reporter.log(f"skipped example {ex.key or i}: {exc}")
            continue
        images.append(arr["image"])
        masks.append(arr["mask"])
        controls.append(arr["control"])
        prompts.append(ex.prompt)
        if (i + 1) % 200 == 0:
            reporter.progress(i + 1, len(examples), phase="preparing examples")
    if not images:
        raise ValueError("no usable training examples")
    prep = [processing.Prepared((0, 0, 0, 0), np.zeros((1, 1, 4), np.uint8), im, m, c)
            for im, m, c in zip(images, masks, controls, strict=True)]  # fmt: skip
    t = prepared_tensors(prep)
    return {"image": t["image"], "mask": t["mask"], "control": t["control"],
            "prompts": prompts, "skipped": skipped}  # fmt: skip


def resolve_device(device: str | None = None) -> str:
    """The one device rule (jobs.devices): RFSTUDIO_DEVICE, else CUDA when present, else CPU."""
    return pick_device(device)


def _accelerator(config: TrainConfig):
    return make_accelerator(
        config.device,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )


def _trained_modules(components: Components, config: TrainConfig) -> dict[str, nn.Module]:
    mods: dict[str, nn.Module] = {"unet": components.unet}
    if config.train_controlnet and components.controlnet is not None:
        mods["controlnet"] = components.controlnet
    if config.train_text_encoder:
        mods["text_encoder"] = components.text_encoder
    return mods


def add_unet_lora(unet: nn.Module, rank: int) -> None:
    from peft import LoraConfig

    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights="gaussian",
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < config.lr_warmup_steps:
            return (step + 1) / config.lr_warmup_steps
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - config.lr_warmup_steps) / max(1, config.steps - config.lr_warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def train(
    *,
    examples: Sequence[Example],
    out_dir: str | os.PathLike,
    model_config: DiffusionConfig | None = None,
    components: Components | None = None,
    config: TrainConfig | None = None,
    reporter: Any = None,
    resume: bool = True,
    sample_products: Sequence[tuple[Image.Image, str]] = (),
) -> TrainResult:
    """Train (from `model_config`) or fine-tune (`components`, e.g. a loaded SD-1.5 folder)."""
    from diffusers.training_utils import EMAModel
    from safetensors.torch import load_file, save_file

    from jobs.files import atomic_save, atomic_write_dir

    config = config or TrainConfig()
    reporter = reporter or _Null()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if components is None:
        if model_config is None:
            raise ValueError("give model_config (train from scratch) or components")
        words = [w for ex in examples for w in ex.prompt.replace(",", " ").split()]
        components = build_components(model_config, seed=config.seed, words=words)
    size = components.config.size if components.config else config.sample.size
    accelerator = _accelerator(config)
    torch.manual_seed(config.seed)
    data = build_dataset(examples, size, config.sample, reporter)
    n = len(data["prompts"])
    reporter.log(f"{n} training examples at {size} px ({data['skipped']} skipped)")
    tokenizer = components.tokenizer
    ids = tokenizer(
        data["prompts"] + [""],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    empty_ids, ids = ids[-1], ids[:-1]

    lora = config.unet_lora_rank > 0
    for m in (components.unet, components.controlnet, components.text_encoder, components.vae):
        if m is not None:
            m.requires_grad_(False)
    trained = _trained_modules(components, config)
    if lora:
        add_unet_lora(components.unet, config.unet_lora_rank)
    for name, m in trained.items():
        if not (name == "unet" and lora):
            m.requires_grad_(True)
        m.train()
        if config.gradient_checkpointing and getattr(m, "_supports_gradient_checkpointing", 0):
            m.enable_gradient_checkpointing()
    params = [p for m in trained.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    emas = {}
    if config.ema_decay > 0:
        emas = {k: EMAModel([p for p in m.parameters() if p.requires_grad],
                            decay=config.ema_decay, use_ema_warmup=True, power=0.75)
                for k, m in trained.items()}  # fmt: skip

    start, history = 0, []
    state_path = out_dir / LAST_DIR / STATE_NAME
    if resume and state_path.exists():
        state = json.loads(state_path.read_text())
        for name, m in trained.items():
            weights = load_file(str(out_dir / LAST_DIR / f"{name}.safetensors"))
            m.load_state_dict(weights, strict=False)
            if name in emas:
                emas[name].load_state_dict(
                    torch.load(out_dir / LAST_DIR / f"{name}.ema.pt", weights_only=False)
                )
        optimizer.load_state_dict(
            torch.load(out_dir / LAST_DIR / "optimizer.pt", map_location="cpu", weights_only=True)
        )
        lr_sched.load_state_dict(state["lr_scheduler"])
        start, history = int(state["step"]), list(state["history"])
        reporter.log(f"resuming from checkpoint at step {start}")

    mp = accelerator.mixed_precision
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mp, torch.float32)
    dev = accelerator.device
    for m in (components.unet, components.controlnet, components.text_encoder, components.vae):
        if m is not None:
            m.to(dev)
            if m not in trained.values() and weight_dtype != torch.float32:
                m.to(dtype=weight_dtype)
    prepared = accelerator.prepare(*trained.values(), optimizer, lr_sched)
    wrapped = dict(zip(trained, prepared[: len(trained)], strict=True))
    optimizer, lr_sched = prepared[len(trained)], prepared[len(trained) + 1]
    for k in emas:
        emas[k].to(dev)

    sched = components.scheduler
    pipe = InpaintPipeline(components, device=dev)
    unet = wrapped["unet"]
    controlnet = wrapped.get("controlnet", components.controlnet)
    text_encoder = wrapped.get("text_encoder", components.text_encoder)

    def save_checkpoint(step: int) -> None:
        if not accelerator.is_main_process:
            return
        with atomic_write_dir(out_dir / LAST_DIR) as tmp:
            for name, m in trained.items():
                state = accelerator.unwrap_model(m).state_dict()
                if lora and name == "unet":
                    state = {k: v for k, v in state.items() if "lora_" in k}
                save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                          str(tmp / f"{name}.safetensors"))  # fmt: skip
                if name in emas:
                    torch.save(emas[name].state_dict(), tmp / f"{name}.ema.pt")
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            (tmp / STATE_NAME).write_text(json.dumps({
                "step": step, "history": history, "lr_scheduler": lr_sched.state_dict(),
                "config": config.to_dict(),
            }))  # fmt: skip

    gen = torch.Generator().manual_seed(config.seed * 7919 + start)
    reporter.progress(start, config.steps, phase="training diffuser")
    t_start = time.perf_counter()
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        # Every step's draws come from (seed, step): a resumed run draws what the killed one would.
        gen.manual_seed(config.seed * 1_000_003 + step)
        idx = torch.randint(n, (config.batch_size,), generator=gen)
        image, mask, control = data["image"][idx], data["mask"][idx], data["control"][idx]
        if config.hflip:
            flip = torch.rand(config.batch_size, generator=gen) < 0.5
            image, mask, control = (torch.where(flip.view(-1, 1, 1, 1), t.flip(-1), t)
                                    for t in (image, mask, control))  # fmt: skip
        drop = torch.rand(config.batch_size, generator=gen) < config.prompt_dropout
        tok = torch.where(drop.view(-1, 1), empty_ids.view(1, -1), ids[idx])
        timesteps = torch.randint(sched.config.num_train_timesteps, (config.batch_size,),
                                  generator=gen)  # fmt: skip
        image, mask, control = image.to(dev), mask.to(dev), control.to(dev)
        with accelerator.accumulate(*wrapped.values()), accelerator.autocast():
            with torch.no_grad():
                latents = pipe.codec.encode(image.to(weight_dtype))
                cond = pipe.conditioning(image.to(weight_dtype), mask)
            noise = torch.randn(latents.shape, generator=gen).to(dev, latents.dtype)
            ts = timesteps.to(dev)
            noisy = sched.add_noise(latents, noise, ts)
            embeds = text_encoder(tok.to(dev))[0]
            down, mid = controlnet(noisy, ts, encoder_hidden_states=embeds,
                                   controlnet_cond=control, return_dict=False)  # fmt: skip
            pred = unet(
                torch.cat([noisy, cond["mask_latents"], cond["masked_latents"]], dim=1), ts,
                encoder_hidden_states=embeds, down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample  # fmt: skip
            ptype = sched.config.prediction_type
            if ptype == "v_prediction":
                target = sched.get_velocity(latents, noise, ts)
            elif ptype == "epsilon":
                target = noise
            else:
                target = latents
            loss = nn.functional.mse_loss(pred.float(), target.float())
            accelerator.backward(loss)
            grad_norm = 0.0
            if accelerator.sync_gradients:
                grad_norm = float(accelerator.clip_grad_norm_(params, config.max_grad_norm))
            optimizer.step()
            lr_sched.step()
            optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients:
            for name, ema in emas.items():
                ema.step([p for p in accelerator.unwrap_model(wrapped[name]).parameters()
                          if p.requires_grad])  # fmt: skip
        done = step + 1
        row = {"step": done, "loss": float(loss.detach()), "grad_norm": grad_norm,
               "lr": float(lr_sched.get_last_lr()[0])}  # fmt: skip
        row["step_time"] = time.perf_counter() - t0
        history.append(row)
        if done % 10 == 0 or done == config.steps:
            k = min(50, len(history))
            reporter.metric("loss", sum(r["loss"] for r in history[-k:]) / k, step=done)
            reporter.progress(done, config.steps, phase="training diffuser")
        if done % config.checkpoint_every == 0 or done == config.steps:
            save_checkpoint(done)
        out_of_time = (
            config.max_seconds is not None and time.perf_counter() - t_start >= config.max_seconds
        )
        if out_of_time and done % config.checkpoint_every and done != config.steps:
            save_checkpoint(done)
        if config.sample_every and done % config.sample_every == 0 and sample_products:
            _sample_grid(components, trained, emas, accelerator, sample_products, config,
                         out_dir / "samples" / f"step-{done:06d}.png")  # fmt: skip
        if out_of_time:
            reporter.log(f"time budget reached after {done} steps")
            break

    accelerator.wait_for_everyone()
    model_dir = out_dir / "model"
    metrics = {"steps": len(history), "examples": n, "size": size,
               "train_seconds": time.perf_counter() - t_start}  # fmt: skip
    if history:
        k = max(1, len(history) // 20)
        metrics["loss_first"] = sum(r["loss"] for r in history[:k]) / k
        metrics["loss_last"] = sum(r["loss"] for r in history[-k:]) / k
        times = sorted(r["step_time"] for r in history[start:] or history)
        metrics["step_time_median"] = times[len(times) // 2]
    if accelerator.is_main_process:
        final = _final_components(components, trained, emas, accelerator, lora)
        with atomic_write_dir(model_dir) as tmp:
            save_components(final, tmp)
            (tmp / TRAIN_CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2))
        if sample_products:
            _sample_grid(components, trained, emas, accelerator, sample_products, config,
                         out_dir / "samples" / "final.png")  # fmt: skip
        atomic_save(out_dir / "metrics.json", json.dumps({**metrics, "history": history}))
    return TrainResult(out_dir, model_dir, history, metrics, start)


def _final_components(components, trained, emas, accelerator, lora) -> Components:
    """A copy with the EMA weights (LoRA merged into the UNet), in eval mode, on the CPU."""
    parts = {}
    for name, m in trained.items():
        m = copy.deepcopy(accelerator.unwrap_model(m)).to("cpu")
        if name in emas:
            emas[name].copy_to([p for p in m.parameters() if p.requires_grad])
        if lora and name == "unet":
            m.fuse_lora()
            m.unload_lora()
        parts[name] = m.eval().requires_grad_(False)
    return dataclasses.replace(components, **parts)


def _sample_grid(components, trained, emas, accelerator, products, config, path: Path) -> None:
    final = _final_components(components, trained, emas, accelerator, False)
    pipe = InpaintPipeline(final, device="cpu")
    size = final.config.size if final.config else config.sample.size
    sample = dataclasses.replace(config.sample, size=size)
    rows = []
    for seed in range(4):
        outs = pipe.generate([p for p, _ in products], [t for _, t in products],
                             [""] * len(products), [seed] * len(products), sample)  # fmt: skip
        rows.append(np.concatenate([o.image for o in outs], axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
