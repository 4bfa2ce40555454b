"""Training-loop plumbing shared by the ML packages (no Django: `*/ml/` imports it, like
jobs.files): the `accelerate.Accelerator` a job trains under, and the atomic resume checkpoint.

- `make_accelerator`: CPU unless the device is CUDA (RFSTUDIO_DEVICE / CUDA present, see
  jobs.devices); mixed precision "auto" = bf16 where the GPU has it, else fp16, never on CPU.
  Under `accelerate launch` (a kind registered `distributed=True`, param num_processes > 1) the
  same call joins the process group and each process gets the GPU of its LOCAL_RANK.
- `save_checkpoint` / `load_checkpoint`: `<folder>` (conventionally `<out_dir>/last/`) holds each
  module's weights (safetensors), the optimizer and scheduler states, the step, the caller's extra
  state and the random states (Python, NumPy, torch, CUDA) of the process that wrote it. It is
  written to a temporary folder and swapped in (jobs.files.atomic_write_dir): a worker killed at
  any instant leaves the previous complete checkpoint, and the next attempt resumes from it.
  Only the main process writes; on one process a resumed run continues bit-for-bit (the random
  states are restored), on several the other ranks' random streams restart from the seed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from .files import atomic_write_dir

STATE_NAME = "training_state.pt"


def make_accelerator(
    device: str | None = None,
    *,
    mixed_precision: str = "auto",
    gradient_accumulation_steps: int = 1,
):
    import torch
    from accelerate import Accelerator

    from .devices import pick_device

    device = pick_device(device)
    cpu = not device.startswith("cuda") or not torch.cuda.is_available()
    if mixed_precision not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"unknown mixed_precision {mixed_precision!r}")
    if not cpu and ":" in device and "LOCAL_RANK" not in os.environ:
        torch.cuda.set_device(device)  # RFSTUDIO_DEVICE=cuda:1: a single process on that GPU
    if cpu:
        mixed_precision = "no"
    elif mixed_precision == "auto":
        mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: str | os.PathLike,
    *,
    modules: dict[str, Any],
    optimizer=None,
    scheduler=None,
    step: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint atomically. `modules` are unwrapped (accelerator.unwrap_model)."""
    import torch
    from safetensors.torch import save_file

    with atomic_write_dir(folder) as tmp:
        for name, module in modules.items():
            weights = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(weights, str(tmp / f"{name}.safetensors"))
        torch.save(
            {
                "step": int(step),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng_state(),
                "extra": extra or {},
            },
            tmp / STATE_NAME,
        )
    return Path(folder)


def load_checkpoint(
    folder: str | os.PathLike,
    *,
    modules: dict[str, Any],
    optimizer=None,
    scheduler=None,
    fingerprint: str | None = None,
    restore_rng: bool = True,
) -> dict[str, Any] | None:
    """Load a checkpoint written by save_checkpoint into the given objects; returns
    {"step", "extra"}, or None when there is none. With `fingerprint`, a checkpoint saved with
    another `extra["fingerprint"]` (other data or settings) is left unread: {"stale": True}.
    Load before accelerator.prepare or into the unwrapped modules (every process loads the same
    weights)."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / STATE_NAME).is_file():
        return None
    state = torch.load(folder / STATE_NAME, map_location="cpu", weights_only=False)
    if fingerprint is not None and state["extra"].get("fingerprint") != fingerprint:
        return {"stale": True, "step": 0, "extra": {}}
    for name, module in modules.items():
        module.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"])
    return {"step": int(state["step"]), "extra": state["extra"]}
