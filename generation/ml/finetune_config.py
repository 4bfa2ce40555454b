"""Configuration of the reward fine-tuning loop (generation/ml/finetune.py); JSON round-trippable,
saved beside the result as finetune_config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

METHODS = ("rfft", "refl")
CONFIG_NAME = "finetune_config.json"


@dataclass
class FinetuneConfig:
    # "rfft": F_AC + beta * regulariser (Consistent Condition by default); "refl": reward only
    # (the ReFL baseline; the regulariser is not even computed).
    method: str = "rfft"
    beta: float = (
        1.0  # weight of the regulariser (the paper's beta); 0 = ReFL with RFFT's code path
    )
    steps: int = 200  # optimizer steps
    batch_size: int = 2  # samples per micro-batch (per process)
    gradient_accumulation_steps: int = 1
    lr: float = 1e-5  # AdamW; the paper's rate for a full SD-1.5 ControlNet
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float | None = 1.0  # clip; None = no clipping (norms are still reported)
    num_inference_steps: int = 40  # N: DDIM steps of the sampler being tuned
    last_k: int = 10  # the gradient step is drawn among the last K of the N steps
    guidance_scale: float = 7.5  # classifier-free guidance inside the loop, as at generation
    controlnet_conditioning_scale: float = 1.0
    # 0: train the whole ControlNet; r > 0: a peft LoRA of rank r on its linear and conv layers
    # (the base ControlNet then doubles as the frozen reference, adapters disabled).
    lora_rank: int = 0
    lora_alpha: float | None = None  # None = rank (scale 1)
    gradient_checkpointing: bool = True  # UNet, ControlNet and decoder: activations recomputed
    mixed_precision: str = "auto"  # "auto" (bf16/fp16 on CUDA, none on CPU) | no | bf16 | fp16
    checkpoint_every: int = 25  # optimizer steps between resumable checkpoints (atomic)
    seed: int = 0  # every step's batch, noise and K-draw derive from (seed, step): resume-exact
    reward_eps: float = 1e-6  # p_available is clamped here before the log
    device: str | None = None  # None: RFSTUDIO_DEVICE, else CUDA when present, else CPU

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.beta < 0:
            raise ValueError("beta must be >= 0")
        if self.steps < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("steps, batch_size and gradient_accumulation_steps must be >= 1")
        if not 1 <= self.last_k <= self.num_inference_steps:
            raise ValueError(
                f"last_k must be in 1..num_inference_steps ({self.num_inference_steps}), "
                f"got {self.last_k}"
            )
        if self.lora_rank < 0:
            raise ValueError("lora_rank must be >= 0")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"unknown mixed_precision {self.mixed_precision!r}")
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be >= 1")

    @property
    def uses_regulariser(self) -> bool:
        return self.method == "rfft" and self.beta > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
