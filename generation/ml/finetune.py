"""Reward fine-tuning of a ControlNet-inpainting diffuser (RFFT / ReFL), reward-agnostic.

Plain torch + diffusers, no Django. The loop knows nothing of RFNet: it gets the diffuser's
components, a differentiable `reward(images, batch) -> p` callable (probabilities in (0, 1], one
per image) and a `batches(step, generator) -> FinetuneBatch` callable, and trains only the
ControlNet (in full or as a peft LoRA); the UNet and the VAE are frozen.

One optimizer step (ECCV 2024, "Towards Reliable Advertising Image Generation Using Human
Feedback", after ReFL):
1. draw K' uniformly among the last `last_k` of the `num_inference_steps` DDIM steps;
2. sample from pure noise with the current ControlNet, WITHOUT gradient, down to that step;
3. at that step, WITH gradient, predict ε (classifier-free guidance, as at generation), turn it
   into the predicted x₀, decode it, paste the product pixels back, and score it with the reward;
   F_AC = −mean log p;
4. "rfft" adds β·L_CC, L_CC = ‖dir_θ − dir_ref‖₂ with dir = −(ε(x_t, z, c) − ε(x_t, c)) /
   √(1 − ᾱ_t): the guidance direction of the control condition z for the trained ControlNet θ
   and for a frozen copy of the initial one (the LoRA base with adapters disabled). It is exactly
   0 before the first update and measures how far the condition's effect has drifted. The
   regulariser is pluggable (`Regulariser`); "refl" trains on F_AC alone.

Memory: no activations are kept for the gradient-free steps, gradient checkpointing on the
UNet, ControlNet and decoder, mixed precision and `accelerate` on GPU (one process per GPU with
`accelerate launch`; each process draws its own batches).

Checkpoints: `out_dir/last/` (trainable weights, optimizer, step, history) is written every
`checkpoint_every` steps through an atomic folder swap; `finetune(resume=True)` continues from it.
Every step's randomness derives from (seed, step, process), so a resumed run draws what the
killed one would have. The result: `out_dir/controlnet/` (a complete ControlNet, LoRA merged,
`save_pretrained` + safetensors), `out_dir/lora/` (the adapter alone, LoRA runs) and
`out_dir/metrics.json`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from jobs.accel import make_accelerator
from jobs.devices import pick_device

from .finetune_config import CONFIG_NAME, FinetuneConfig

LAST_DIR = "last"
STATE_NAME = "state.json"
TRAINABLE_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.pt"


# -- inputs ---------------------------------------------------------------------------------
@dataclass
class FinetuneBatch:
    """One micro-batch, already pre-processed the way the generation pipeline does it.

    image: (B, 3, H, W) in [-1, 1], the canvas with the product placed (what the inpainting UNet
        sees outside the mask); mask: (B, 1, H, W), 1 where the diffuser paints (255 − alpha,
        dilated); control: (B, C, H, W), the ControlNet condition (Canny of the product);
        prompt_embeds / negative_prompt_embeds: (B, L, D) text-encoder states (the negative ones
        drive the unconditional branch of classifier-free guidance); product: (B, 3, H, W) in
        [-1, 1] and alpha: (B, 1, H, W) in [0, 1], the placed cut-out pasted back over the decoded
        image; extra: whatever the reward needs (placement boxes, captions, cut-outs), untouched.
    """

    image: torch.Tensor
    mask: torch.Tensor
    control: torch.Tensor
    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    product: torch.Tensor
    alpha: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def to(self, device, dtype: torch.dtype | None = None) -> FinetuneBatch:
        def mv(t: torch.Tensor) -> torch.Tensor:
            t = t.to(device)
            return t.to(dtype) if dtype is not None and t.is_floating_point() else t

        return FinetuneBatch(
            image=mv(self.image),
            mask=mv(self.mask),
            control=mv(self.control),
            prompt_embeds=mv(self.prompt_embeds),
            negative_prompt_embeds=mv(self.negative_prompt_embeds),
            product=mv(self.product),
            alpha=mv(self.alpha),
            extra=self.extra,
        )


Reward = Callable[[torch.Tensor, FinetuneBatch], torch.Tensor]  # images in [0, 1] → p (B,)
BatchSource = Callable[[int, torch.Generator], FinetuneBatch]  # (step, generator) → batch


@dataclass
class Components:
    """The diffuser's parts (diffusers classes or anything with the same call signatures).

    unet: an inpainting UNet2DConditionModel (in_channels = 2·latent + 1: noisy latents, mask,
    masked-image latents) or a plain one (then the known region is blended back every step);
    controlnet: a ControlNetModel; scheduler: a DDIMScheduler (any scheduler with
    set_timesteps/step/alphas_cumprod and an epsilon, v_prediction or sample prediction type);
    vae: AutoencoderKL, AutoencoderTiny, or any module whose encode/decode return tensors (a
    pixel-unshuffle stand-in), see `Codec`.
    """

    unet: nn.Module
    controlnet: nn.Module
    scheduler: Any
    vae: nn.Module


class Codec:
    """Pixels ([-1, 1]) ↔ scaled latents for AutoencoderKL / AutoencoderTiny / plain modules."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae
        cfg = getattr(vae, "config", None)
        self.scaling = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(cfg, "shift_factor", 0.0) or 0.0)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        out = self.vae.encode(images)
        if hasattr(out, "latent_dist"):  # AutoencoderKL: the mode (deterministic conditioning)
            z = out.latent_dist.mode()
        elif hasattr(out, "latents"):
            z = out.latents
        elif isinstance(out, tuple):
            z = out[0]
            z = z.mode() if hasattr(z, "mode") else z
        else:
            z = out
        return (z - self.shift) * self.scaling

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = self.vae.decode(latents / self.scaling + self.shift)
        return out.sample if hasattr(out, "sample") else (out[0] if isinstance(out, tuple) else out)


# -- the regulariser ------------------------------------------------------------------------
@dataclass
class RegulariserInputs:
    """What a regulariser sees at the gradient step (ε are in ε-space, conditional branch)."""

    eps_trained: torch.Tensor  # ε(x_t, z, c) with the trained ControlNet (carries gradient)
    eps_reference: torch.Tensor  # ε(x_t, z, c) with the frozen reference ControlNet
    eps_uncontrolled: torch.Tensor  # ε(x_t, c): the UNet alone, no ControlNet residuals
    alpha_bar: torch.Tensor  # ᾱ_t, shape (B,)


class Regulariser(Protocol):
    name: str
    needs_reference: bool

    def __call__(self, inputs: RegulariserInputs) -> torch.Tensor: ...


class ConsistentCondition:
    """L_CC = mean_b ‖dir_θ − dir_ref‖₂, dir = −(ε(x_t, z, c) − ε(x_t, c)) / √(1 − ᾱ_t).

    (ε(x_t, c) is the frozen UNet's and cancels in the difference; it is kept so the code reads
    as the formula and so other regularisers on dir can be written beside this one.)
    """

    name = "l_cc"
    needs_reference = True

    def __call__(self, inputs: RegulariserInputs) -> torch.Tensor:
        sigma = (1 - inputs.alpha_bar).clamp_min(1e-8).sqrt().view(-1, 1, 1, 1)
        dir_t = -(inputs.eps_trained - inputs.eps_uncontrolled) / sigma
        dir_r = -(inputs.eps_reference - inputs.eps_uncontrolled) / sigma
        return (dir_t.float() - dir_r.float()).flatten(1).norm(dim=1).mean()


# -- denoiser -------------------------------------------------------------------------------
class Denoiser:
    """ε(x_t, t) for the composed UNet + ControlNet, with inpainting inputs and CFG."""

    def __init__(self, components: Components, config: FinetuneConfig) -> None:
        self.c = components
        self.config = config
        self.codec = Codec(components.vae)
        unet_cfg = components.unet.config
        self.latent_channels = int(getattr(components.controlnet.config, "in_channels", 4))
        self.inpaint_channels = int(unet_cfg.in_channels) == 2 * self.latent_channels + 1
        sched = components.scheduler
        self.prediction_type = getattr(sched.config, "prediction_type", "epsilon")
        self.alphas_cumprod = sched.alphas_cumprod

    def prepare(self, batch: FinetuneBatch) -> dict[str, torch.Tensor]:
        """Per-batch conditioning computed once (no gradient: the VAE is frozen)."""
        with torch.no_grad():
            masked = batch.image * (1 - (batch.mask > 0.5).to(batch.image.dtype))
            masked_latents = self.codec.encode(masked)
            init_latents = self.codec.encode(batch.image)
        h, w = masked_latents.shape[-2:]
        mask_lat = nn.functional.interpolate(batch.mask, size=(h, w), mode="nearest")
        return {
            "masked_latents": masked_latents,
            "init_latents": init_latents,
            "mask_latents": mask_lat,
            "embeds": torch.cat([batch.negative_prompt_embeds, batch.prompt_embeds]),
            "cond_embeds": batch.prompt_embeds,
            "control": torch.cat([batch.control, batch.control]),
            "cond_control": batch.control,
        }

    def _unet_input(self, x: torch.Tensor, prep: dict, doubled: bool) -> torch.Tensor:
        if not self.inpaint_channels:
            return x
        m, ml = prep["mask_latents"], prep["masked_latents"]
        if doubled:
            m, ml = torch.cat([m, m]), torch.cat([ml, ml])
        return torch.cat([x, m.to(x.dtype), ml.to(x.dtype)], dim=1)

    def raw(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        embeds: torch.Tensor,
        control: torch.Tensor | None,
        prep: dict,
        doubled: bool,
        controlnet: nn.Module | None,
    ) -> torch.Tensor:
        """The UNet's raw output; controlnet=None runs the UNet alone (ε(x_t, c))."""
        kwargs = {}
        if controlnet is not None:
            down, mid = controlnet(
                x,
                t,
                encoder_hidden_states=embeds,
                controlnet_cond=control,
                conditioning_scale=self.config.controlnet_conditioning_scale,
                return_dict=False,
            )
            kwargs = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        return self.c.unet(
            self._unet_input(x, prep, doubled), t, encoder_hidden_states=embeds, **kwargs
        ).sample

    def to_eps_x0(
        self, out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a = alpha_bar.view(-1, 1, 1, 1).to(out.dtype)
        sa, s1 = a.sqrt(), (1 - a).clamp_min(0).sqrt()
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (x - s1 * eps) / sa.clamp_min(1e-4)
        elif self.prediction_type == "v_prediction":
            x0 = sa * x - s1 * out
            eps = sa * out + s1 * x
        elif self.prediction_type == "sample":
            x0 = out
            eps = (x - sa * x0) / s1.clamp_min(1e-4)
        else:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        return eps, x0

    def guided(
        self, x: torch.Tensor, t: torch.Tensor, prep: dict, controlnet: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw guided output, conditional raw output) with classifier-free guidance."""
        x2 = torch.cat([x, x])
        t2 = t.expand(x2.shape[0]) if t.ndim else t
        out = self.raw(x2, t2, prep["embeds"], prep["control"], prep, True, controlnet)
        uncond, cond = out.chunk(2)
        return uncond + self.config.guidance_scale * (cond - uncond), cond

    def blend_known(self, x: torch.Tensor, prep: dict, t_next: torch.Tensor | None, noise):
        """Plain (non-inpainting) UNets: put the noised known region back after each step."""
        if self.inpaint_channels:
            return x
        init = prep["init_latents"]
        if t_next is not None:
            init = self.c.scheduler.add_noise(init, noise, t_next.view(1))
        m = prep["mask_latents"].to(x.dtype)
        return m * x + (1 - m) * init.to(x.dtype)


def paste_back(decoded: torch.Tensor, batch: FinetuneBatch) -> torch.Tensor:
    """[-1, 1] decoded canvas → [0, 1] image with the product pixels pasted back (differentiable
    in the background, exact on the product)."""
    a = batch.alpha.to(decoded.dtype)
    decoded = decoded.clamp(-1, 1)  # as the serving pipeline's decode does, before blending
    return (a * batch.product.to(decoded.dtype) + (1 - a) * decoded + 1) / 2


# -- the loop -------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    out_dir: Path
    controlnet_dir: Path
    lora_dir: Path | None
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    resumed_from_step: int


class _Null:
    def progress(self, step, total=None, phase=None) -> None:
        pass

    def metric(self, name, value, step=None) -> None:
        pass

    def log(self, message) -> None:
        pass


def resolve_device(device: str | None = None) -> str:
    """The one device rule (jobs.devices): RFSTUDIO_DEVICE, else CUDA when present, else CPU."""
    return pick_device(device)


def lora_target_modules(model: nn.Module) -> list[str]:
    """Every Linear / Conv2d of the ControlNet except its input convolutions (full names)."""
    skip = ("conv_in", "controlnet_cond_embedding.conv_in")
    return [
        name
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear | nn.Conv2d) and name and not name.startswith(skip)
    ]


def add_lora(controlnet: nn.Module, rank: int, alpha: float | None) -> None:
    from peft import LoraConfig

    cfg = LoraConfig(
        r=rank,
        lora_alpha=alpha or rank,
        init_lora_weights="gaussian",  # B = 0: the adapted model starts equal to the base
        target_modules=lora_target_modules(controlnet),
    )
    controlnet.add_adapter(cfg)


def trainable_state(controlnet: nn.Module, lora: bool) -> dict[str, torch.Tensor]:
    if lora:
        from peft.utils import get_peft_model_state_dict

        state = get_peft_model_state_dict(controlnet)
    else:
        state = controlnet.state_dict()
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_trainable_state(controlnet: nn.Module, state: dict, lora: bool) -> None:
    if lora:
        from peft.utils import set_peft_model_state_dict

        res = set_peft_model_state_dict(controlnet, state)
        if getattr(res, "unexpected_keys", None):
            raise ValueError(f"LoRA checkpoint mismatch: {res.unexpected_keys[:5]}")
    else:
        controlnet.load_state_dict(state)


def merged_controlnet(controlnet: nn.Module, lora: bool) -> nn.Module:
    """A plain ControlNet with the LoRA folded in (the trained model itself when full)."""
    if not lora:
        return controlnet
    merged = copy.deepcopy(controlnet)
    merged.fuse_lora()
    merged.unload_lora()
    return merged


def _accelerator(config: FinetuneConfig):
    return make_accelerator(
        config.device,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )


def _step_generator(config: FinetuneConfig, step: int, process: int, device) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed((config.seed * 1_000_003 + step) * 1009 + process)
    return g


def _place(module: nn.Module, device, dtype: torch.dtype) -> None:
    module.to(device)
    if dtype != torch.float32:  # frozen parts only; the trained ControlNet stays fp32
        module.to(dtype=dtype)


def _read_last(out_dir: Path) -> dict | None:
    path = out_dir / LAST_DIR / STATE_NAME
    if not path.exists():
        return None
    return json.loads(path.read_text())


def finetune(
    *,
    components: Components,
    reward: Reward,
    batches: BatchSource,
    config: FinetuneConfig,
    out_dir: str | os.PathLike,
    reporter: Any = None,
    regulariser: Regulariser | None = None,
    resume: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> FinetuneResult:
    """Train components.controlnet against `reward`; see the module docstring."""
    from safetensors.torch import load_file, save_file

    from jobs.files import atomic_save, atomic_write_dir

    reporter = reporter or _Null()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = _accelerator(config)
    mp = accelerator.mixed_precision
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mp, torch.float32)
    if regulariser is None and config.uses_regulariser:
        regulariser = ConsistentCondition()
    use_reg = config.uses_regulariser and regulariser is not None

    unet, vae, controlnet = components.unet, components.vae, components.controlnet
    if isinstance(reward, nn.Module):  # a frozen scorer (RFNet) runs where the images are
        reward.to(accelerator.device)
    for frozen in (unet, vae):
        frozen.requires_grad_(False)
        frozen.eval()
        _place(frozen, accelerator.device, weight_dtype)
    lora = config.lora_rank > 0
    reference = None
    if use_reg and regulariser.needs_reference and not lora:
        reference = copy.deepcopy(controlnet).requires_grad_(False).eval()
        _place(reference, accelerator.device, weight_dtype)
    controlnet.requires_grad_(False)
    if lora:
        add_lora(controlnet, config.lora_rank, config.lora_alpha)  # only adapters train
    else:
        controlnet.requires_grad_(True)
    controlnet.train()
    if config.gradient_checkpointing:
        for m in (unet, controlnet, vae):
            if getattr(m, "_supports_gradient_checkpointing", False):
                m.enable_gradient_checkpointing()  # active whenever grad is enabled
    params = [p for p in controlnet.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the ControlNet has no trainable parameters")
    optimizer = torch.optim.AdamW(
        params,
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.weight_decay,
    )

    start_step, history = 0, []
    last = _read_last(out_dir) if resume else None
    if last is not None:
        load_trainable_state(controlnet, load_file(str(out_dir / LAST_DIR / TRAINABLE_NAME)), lora)
        optimizer.load_state_dict(
            torch.load(out_dir / LAST_DIR / OPTIMIZER_NAME, map_location="cpu", weights_only=True)
        )
        start_step, history = int(last["step"]), list(last["history"])
        reporter.log(f"resuming from checkpoint at step {start_step}")
    controlnet.to(accelerator.device)
    controlnet, optimizer = accelerator.prepare(controlnet, optimizer)
    raw_controlnet = accelerator.unwrap_model(controlnet)

    den = Denoiser(components, config)
    den.c = Components(unet, controlnet, components.scheduler, vae)
    scheduler = components.scheduler
    scheduler.set_timesteps(config.num_inference_steps, device=accelerator.device)
    timesteps = scheduler.timesteps
    alphas = scheduler.alphas_cumprod.to(accelerator.device)
    n = len(timesteps)

    def save_checkpoint(step: int) -> None:
        if not accelerator.is_main_process:
            return
        with atomic_write_dir(out_dir / LAST_DIR) as tmp:
            save_file(trainable_state(raw_controlnet, lora), str(tmp / TRAINABLE_NAME))
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_NAME)
            (tmp / STATE_NAME).write_text(
                json.dumps({"step": step, "history": history, "config": config.to_dict()})
            )

    reporter.progress(start_step, config.steps, phase=f"{config.method} fine-tuning")
    for step in range(start_step, config.steps):
        t0 = time.perf_counter()
        gen = _step_generator(config, step, accelerator.process_index, accelerator.device)
        totals = {"reward": 0.0, "f_ac": 0.0, "l_cc": 0.0, "loss": 0.0}
        grad_norm = 0.0
        for micro in range(config.gradient_accumulation_steps):
            with accelerator.accumulate(controlnet):
                batch = batches(step * config.gradient_accumulation_steps + micro, gen)
                batch = batch.to(accelerator.device, weight_dtype)
                k = n - config.last_k + int(torch.randint(config.last_k, (1,), generator=gen))
                with accelerator.autocast():
                    prep = den.prepare(batch)
                    shape = (len(batch), den.latent_channels, *prep["init_latents"].shape[-2:])
                    noise = torch.randn(shape, generator=gen).to(accelerator.device, weight_dtype)
                    x = noise * scheduler.init_noise_sigma
                    with torch.no_grad():  # truncated backprop: no graph before step k
                        for i in range(k):
                            t = timesteps[i]
                            out, _ = den.guided(
                                scheduler.scale_model_input(x, t), t, prep, controlnet
                            )
                            x = scheduler.step(out, t, x, return_dict=True).prev_sample
                            t_next = timesteps[i + 1] if i + 1 < n else None
                            x = den.blend_known(x, prep, t_next, noise)
                    t = timesteps[k]
                    a_t = alphas[t].expand(len(batch))
                    xin = scheduler.scale_model_input(x, t)
                    out, cond_out = den.guided(xin, t, prep, controlnet)
                    _, x0 = den.to_eps_x0(out, x, a_t)
                    if not den.inpaint_channels:
                        m = prep["mask_latents"].to(x0.dtype)
                        x0 = m * x0 + (1 - m) * prep["init_latents"].to(x0.dtype)
                    images = paste_back(den.codec.decode(x0), batch)
                    p = reward(images.float(), batch).float()
                    f_ac = -p.clamp_min(config.reward_eps).log().mean()
                    loss = f_ac
                    l_cc = torch.zeros((), device=accelerator.device)
                    if use_reg:
                        l_cc = _regulariser_term(
                            den,
                            regulariser,
                            reference,
                            raw_controlnet,
                            lora,
                            x,
                            t,
                            a_t,
                            prep,
                            cond_out,
                        )
                        loss = loss + config.beta * l_cc
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = _clip(accelerator, params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            g = config.gradient_accumulation_steps
            totals["reward"] += float(p.detach().mean()) / g
            totals["f_ac"] += float(f_ac.detach()) / g
            totals["l_cc"] += float(l_cc.detach()) / g
            totals["loss"] += float(loss.detach()) / g
        done = step + 1
        row = {"step": done, **totals, "grad_norm": grad_norm, "t": int(t)}
        row["step_time"] = time.perf_counter() - t0
        history.append(row)
        for name in ("reward", "f_ac", "l_cc", "loss", "grad_norm"):
            if name == "l_cc" and not use_reg:
                continue
            reporter.metric(name, row[name], step=done)
        if on_step is not None:
            on_step(done, row)
        if done % config.checkpoint_every == 0 or done == config.steps:
            save_checkpoint(done)
        reporter.progress(done, config.steps, phase=f"{config.method} fine-tuning")

    accelerator.wait_for_everyone()
    cn_dir, lora_dir = out_dir / "controlnet", None
    metrics = _summary(history, config, start_step)
    if accelerator.is_main_process:
        raw_controlnet.eval()
        merged = merged_controlnet(raw_controlnet, lora)
        with atomic_write_dir(cn_dir) as tmp:
            merged.save_pretrained(str(tmp), safe_serialization=True)
        if lora:
            lora_dir = out_dir / "lora"
            with atomic_write_dir(lora_dir) as tmp:
                save_file(trainable_state(raw_controlnet, True), str(tmp / "adapter.safetensors"))
                adapter = {
                    "rank": config.lora_rank,
                    "alpha": config.lora_alpha or config.lora_rank,
                    "target_modules": lora_target_modules(merged),
                }
                (tmp / "adapter_config.json").write_text(json.dumps(adapter))
        atomic_save(out_dir / CONFIG_NAME, json.dumps(config.to_dict(), indent=2))
        atomic_save(out_dir / "metrics.json", json.dumps({**metrics, "history": history}))
    return FinetuneResult(
        out_dir=out_dir,
        controlnet_dir=cn_dir,
        lora_dir=lora_dir,
        metrics=metrics,
        history=history,
        resumed_from_step=start_step,
    )


def _regulariser_term(den, regulariser, reference, trained, lora, x, t, a_t, prep, eps_cond_raw):
    """The regulariser on the conditional branch at the gradient step.

    The reference and the UNet-alone passes run on the same doubled (CFG) batch as the trained
    pass, so before the first update ε_trained and ε_reference are bit-identical and L_CC is 0.
    """
    eps_t, _ = den.to_eps_x0(eps_cond_raw, x, a_t)
    x2 = torch.cat([x, x])
    t2 = t.expand(x2.shape[0]) if t.ndim else t
    with torch.no_grad():
        if lora:  # the LoRA base, adapters disabled, is the frozen reference
            trained.disable_adapters()
            try:
                ref_raw = den.raw(x2, t2, prep["embeds"], prep["control"], prep, True, trained)
            finally:
                trained.enable_adapters()
        else:
            ref_raw = den.raw(x2, t2, prep["embeds"], prep["control"], prep, True, reference)
        unc_raw = den.raw(x2, t2, prep["embeds"], None, prep, True, None)
        eps_r, _ = den.to_eps_x0(ref_raw.chunk(2)[1], x, a_t)
        eps_u, _ = den.to_eps_x0(unc_raw.chunk(2)[1], x, a_t)
    inputs = RegulariserInputs(
        eps_trained=eps_t, eps_reference=eps_r, eps_uncontrolled=eps_u, alpha_bar=a_t
    )
    return regulariser(inputs)


def _clip(accelerator, params, max_norm: float | None) -> float:
    if max_norm is not None:
        return float(accelerator.clip_grad_norm_(params, max_norm))
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


def _summary(history: list[dict], config: FinetuneConfig, start_step: int) -> dict[str, Any]:
    if not history:
        return {"steps": 0}
    k = max(1, len(history) // 10)
    first, last = history[:k], history[-k:]

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    times = sorted(r["step_time"] for r in history[start_step:] or history)
    return {
        "steps": len(history),
        "method": config.method,
        "beta": config.beta,
        "reward_first": mean(first, "reward"),
        "reward_last": mean(last, "reward"),
        "f_ac_first": mean(first, "f_ac"),
        "f_ac_last": mean(last, "f_ac"),
        "l_cc_last": mean(last, "l_cc"),
        "step_time_median": times[len(times) // 2],
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        ),
        "ok": all(math.isfinite(r["loss"]) for r in history),
    }
