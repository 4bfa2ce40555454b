"""The `demo` job: fit a tiny MLP to random data (plain torch, no Django), checkpointing
atomically at every epoch into work_dir and resuming from the last checkpoint. Used by tests,
`make demo`, the benchmark, and as the worked example of a job kind (docs/jobs.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .files import atomic_save
from .reporting import NullReporter


@dataclass
class DemoConfig:
    steps: int = 200
    steps_per_epoch: int = 50
    batch_size: int = 32
    lr: float = 0.05
    seed: int = 0
    step_sleep: float = 0.0  # seconds per step, so a demo is slow enough to watch (and cancel)
    fail_at_step: int | None = None  # raise once at this step (first attempt only): retry demo


def _batch(cfg: DemoConfig, step: int, w_true):
    import torch

    # Data depends only on (seed, step): a resumed run sees the same batches.
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    x = torch.randn(cfg.batch_size, 8, generator=g)
    return x, x @ w_true + 0.1 * torch.randn(cfg.batch_size, 1, generator=g)


def train_demo(
    cfg: DemoConfig,
    *,
    work_dir: Path,
    reporter=None,
    device: str = "cpu",
    attempt: int = 1,
    rank: int = 0,
    world_size: int = 1,
) -> dict:
    import torch
    from torch import nn

    reporter = reporter or NullReporter()
    work_dir = Path(work_dir)
    torch.manual_seed(cfg.seed)
    w_true = torch.randn(8, 1, generator=torch.Generator().manual_seed(cfg.seed))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    ckpt = work_dir / "checkpoint.pt"
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        reporter.log(f"resuming from checkpoint at step {start}")
    accelerator = None
    if world_size > 1:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not device.startswith("cuda"))
        model, opt = accelerator.prepare(model, opt)
        device = str(accelerator.device)
    else:
        model.to(device)
    w_true = w_true.to(device)
    x_eval, y_eval = _batch(cfg, -1, w_true.cpu())
    x_eval, y_eval = x_eval.to(device), y_eval.to(device)
    loss_fn = nn.MSELoss()
    reporter.progress(start, total=cfg.steps, phase="train")
    loss_value = float("nan")
    for step in range(start + 1, cfg.steps + 1):
        x, y = _batch(cfg, step * world_size + rank, w_true.cpu())
        x, y = x.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if accelerator is not None:
            accelerator.backward(loss)
        else:
            loss.backward()
        opt.step()
        loss_value = loss.item()
        reporter.progress(step)
        reporter.metric("loss", loss_value, step)
        if cfg.fail_at_step is not None and step == cfg.fail_at_step and attempt == 1:
            raise RuntimeError(f"demo failure at step {step} (fail_at_step)")
        if step % cfg.steps_per_epoch == 0 or step == cfg.steps:
            with torch.no_grad():
                eval_loss = loss_fn(model(x_eval), y_eval).item()
            reporter.metric("eval_loss", eval_loss, step)
            reporter.log(
                f"epoch {step // cfg.steps_per_epoch}: step {step} eval_loss {eval_loss:.4f}"
            )
            if rank == 0:
                raw = accelerator.unwrap_model(model) if accelerator else model
                state = {"model": raw.state_dict(), "opt": opt.state_dict(), "step": step}
                atomic_save(ckpt, lambda p, s=state: torch.save(s, p))
        if cfg.step_sleep:
            time.sleep(cfg.step_sleep)
    final = work_dir / "model.pt"
    if rank == 0:
        raw = accelerator.unwrap_model(model) if accelerator else model
        atomic_save(final, lambda p: torch.save(raw.state_dict(), p))
    return {
        "final_step": cfg.steps,
        "final_loss": loss_value,
        "resumed_from_step": start,
        "model_path": str(final),
    }
