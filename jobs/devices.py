"""Device choice shared by jobs and ML code (no Django: ML packages may copy or import it).

CUDA when present; the RFSTUDIO_DEVICE environment variable overrides ("cpu", "cuda",
"cuda:1", "mps"). Under `accelerate launch`/torchrun each process takes the GPU of its
LOCAL_RANK, so one job can span the GPUs of its host.
"""

from __future__ import annotations

import os


def pick_device(override: str | None = None) -> str:
    choice = (override or os.environ.get("RFSTUDIO_DEVICE", "")).strip()
    if choice:
        return choice
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is always installed with the ml extra
        return "cpu"
    if torch.cuda.is_available():
        local_rank = os.environ.get("LOCAL_RANK")
        return f"cuda:{int(local_rank)}" if local_rank is not None else "cuda"
    return "cpu"


def gpu_count() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def describe(device: str) -> str:
    """A short human label for the Worker table, e.g. "cuda (NVIDIA H100, 1 of 8)"."""
    if device.startswith("cuda"):
        try:
            import torch

            index = int(device.split(":", 1)[1]) if ":" in device else 0
            return f"{device} ({torch.cuda.get_device_name(index)}, {gpu_count()} GPU)"
        except Exception:
            return device
    return device
