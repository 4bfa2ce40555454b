"""RFNet training loop on accelerate: the same code runs on CPU, one GPU or `accelerate launch`.

out_dir layout:
    cache/                      memmap caches (unless TrainConfig.cache_dir)
    checkpoints/epoch-<k>/      model after epoch k (save_pretrained) + metrics.json
    last/                       model/ + training_state.pt (optimizer, scheduler, epoch, rng, ...)
    best/                       best-by-validation model (save_pretrained) + metrics.json
    metrics.json                final: best epoch, val and test reports, history
Every directory is written to a temp name and renamed, so an interruption leaves the previous
complete state; `train(resume=True)` continues from last/.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from jobs.accel import make_accelerator
from jobs.devices import pick_device

from .calibration import CALIBRATION_NAME, apply_calibration, fit_temperature
from .config import RFNetConfig
from .data import CachedDataset, Sample, build_cache, make_collate
from .metrics import classification_report
from .model import CONFIG_NAME, WEIGHTS_NAME, RFNet, _replace_dir, param_groups
from .reporting import NullReporter


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 1e-4
    schedule: str = "step"  # "step" (÷10 at step_epoch, the paper's), "cosine", "constant"
    step_epoch: int = 5
    warmup_steps: int = 0
    weight_decay: float = 0.01
    class_weighting: str = "none"  # "none" | "inverse" | "sqrt_inverse" (loss weights)
    balanced_sampling: bool = False  # sample classes equally (with replacement)
    label_smoothing: float = 0.0
    hflip: bool = True  # augmentations act identically on every image modality
    translate: float = 0.05  # max shift, fraction of the image size
    # P(the RGB channels of creative + cut-outs are permuted alike): colour-blind to the
    # product's own colours (+0.02 mean macro-F1 on othergen's unseen families, within seed
    # noise; bench/RESULTS.md).
    colour_permute: float = 0.5
    # Modality dropout: train without the optional inputs as often as serving may lack them.
    drop_placement: float = 0.2  # P(placement maps zeroed: product not found / not given)
    drop_caption: float = 0.2  # P(caption emptied)
    lr_pretrained: float | None = None  # lr of parts loaded from pretrained folders
    calibrate: bool = True  # fit temperature scaling on val after training (needs val)
    seed: int = 0
    mixed_precision: str = (
        "auto"  # "auto" (bf16 on CUDA if supported, else fp16) | no | bf16 | fp16
    )
    early_stopping_patience: int | None = None  # epochs without val macro-F1 gain
    num_workers: int = 0
    cache_dir: str | None = None
    cache_workers: int | None = None
    grad_clip: float | None = 1.0
    keep_checkpoints: int | None = None  # keep only the newest k epoch-<k> folders
    device: str | None = None  # None: RFSTUDIO_DEVICE env, else CUDA when present, else CPU

    def __post_init__(self) -> None:
        if self.schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.class_weighting not in ("none", "inverse", "sqrt_inverse"):
            raise ValueError(f"unknown class_weighting {self.class_weighting!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


@dataclass
class TrainResult:
    best_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


# Default training length, counted in optimizer steps: 10 epochs of a small dataset are too few.
# On othergen's 1,900 training creatives, 10 epochs (590 steps) stopped while val macro-F1 still
# climbed; 34 epochs raised test macro-F1 on unseen families (bench/RESULTS.md, "training length").
MIN_TRAIN_STEPS = 2000


def auto_epochs(
    n_train: int, batch_size: int, *, min_steps: int = MIN_TRAIN_STEPS, lo: int = 10, hi: int = 100
) -> int:
    """Epochs for at least `min_steps` optimizer steps, within [lo, hi] (the job's default when
    no epoch count is given; early stopping may end sooner). 1M creatives: lo (the paper's 10)."""
    steps = max(1, n_train // batch_size)  # the train loader drops the last partial batch
    return int(min(hi, max(lo, -(-min_steps // steps))))


def auto_patience(epochs: int) -> int:
    """Early-stopping patience for `epochs`: a third of them, at least 5 (val macro-F1 is noisy
    while a cosine schedule's rate is still high; 5 stopped 34-epoch runs at epoch ~17)."""
    return max(5, round(epochs / 3))


def resolve_device(device: str | None = None) -> str:
    """The one device rule (jobs.devices): RFSTUDIO_DEVICE, else CUDA when present, else CPU."""
    return pick_device(device)


def _accelerator(tc: TrainConfig):
    return make_accelerator(tc.device, mixed_precision=tc.mixed_precision)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_lambda(tc: TrainConfig, steps_per_epoch: int):
    total = tc.epochs * steps_per_epoch

    def f(step: int) -> float:
        if tc.warmup_steps and step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        if tc.schedule == "step":
            return 0.1 if step // steps_per_epoch >= tc.step_epoch else 1.0
        if tc.schedule == "cosine":
            t = (step - tc.warmup_steps) / max(1, total - tc.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 1.0

    return f


def _to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def _loss(
    out: dict[str, torch.Tensor],
    y: torch.Tensor,
    cfg: RFNetConfig,
    weight: torch.Tensor | None,
    smoothing: float,
) -> torch.Tensor:
    logits = out["logits"].float()
    loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=smoothing)
    if "available_logit" in out:
        target = (y == cfg.available_index).float()
        loss = loss + cfg.available_loss_weight * F.binary_cross_entropy_with_logits(
            out["available_logit"].float(), target
        )
    return loss


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


@torch.no_grad()
def predict_logits(model, loader, accelerator) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, C], labels [N]) over a loader, gathered across processes."""
    model.eval()
    logits_all, labels_all = [], []
    for batch in loader:
        batch = _to_device(batch, accelerator.device)
        with accelerator.autocast():
            out = model(batch, return_dict=True)
        logits, labels = accelerator.gather_for_metrics((out["logits"].float(), batch["label"]))
        logits_all.append(logits.cpu())
        labels_all.append(labels.cpu())
    if not logits_all:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits_all), torch.cat(labels_all)


def evaluate(
    model, loader, accelerator, cfg: RFNetConfig, calibration: dict | None = None
) -> tuple[dict[str, Any], float]:
    """(classification report on calibrated probabilities, mean raw loss) over a loader."""
    logits, labels = predict_logits(model, loader, accelerator)
    if not len(labels):
        logits = torch.zeros(0, cfg.num_classes)
    loss = float(F.cross_entropy(logits, labels)) if len(labels) else 0.0
    probs = apply_calibration(logits, calibration).numpy()
    return classification_report(labels.numpy(), probs, cfg.class_names), loss


def _summary(report: dict[str, Any], loss: float, prefix: str) -> dict[str, float]:
    out = {
        f"{prefix}_loss": loss,
        f"{prefix}_accuracy": report["accuracy"],
        f"{prefix}_macro_f1": report["macro_f1"],
        f"{prefix}_ece": report["ece"],
    }
    if "available" in report:
        out[f"{prefix}_available_f1"] = report["available"]["f1"]
    return out


def train(
    *,
    model_config: RFNetConfig,
    train_config: TrainConfig,
    train: Sequence[Sample],
    val: Sequence[Sample] | None,
    test: Sequence[Sample] | None,
    out_dir: str | os.PathLike,
    reporter: Any = None,
    resume: bool = True,
) -> TrainResult:
    reporter = reporter or NullReporter()
    tc = train_config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not train:
        raise ValueError("no training samples")
    bad = [
        s.creative_path
        for s in train
        if s.label is None or not 0 <= int(s.label) < model_config.num_classes
    ]
    if bad:
        raise ValueError(f"{len(bad)} training samples without a valid label, e.g. {bad[0]}")
    accelerator = _accelerator(tc)
    _seed_all(tc.seed)
    model = RFNet(model_config)
    cfg = model.config  # resolved (text/backbone configs filled in)

    # -- data (decoded once into memmap caches) ---------------------------------------------
    cache_dir = Path(tc.cache_dir) if tc.cache_dir else out_dir / "cache"
    depth = cfg.depth_model_path if "depth" in cfg.modalities else None

    def dataset(samples, augment):
        if not samples:
            return None
        with accelerator.main_process_first():
            cache = build_cache(
                samples,
                cache_dir,
                cfg.image_size,
                modalities=cfg.modalities,  # only what this model reads is cached
                depth_model_path=depth,
                workers=tc.cache_workers,
                log=reporter.log,
            )
        return CachedDataset(
            cache,
            samples,
            cfg.modalities,
            augment=augment,
            hflip=tc.hflip,
            translate=tc.translate,
            colour_permute=tc.colour_permute,
            drop_placement=tc.drop_placement,
            drop_caption=tc.drop_caption,
        )

    t0 = time.time()
    train_ds = dataset(train, True)
    val_ds = dataset(val, False)
    test_ds = dataset(test, False)
    reporter.log(f"caches ready in {time.time() - t0:.1f}s")
    collate = make_collate(model.tokenize if model.caption is not None else None)

    def loader(ds, *, shuffle_epoch: int | None, batch_size: int):
        if ds is None:
            return None
        kw: dict[str, Any] = dict(
            batch_size=batch_size,
            collate_fn=collate,
            num_workers=tc.num_workers,
            pin_memory=accelerator.device.type == "cuda",
        )
        if shuffle_epoch is not None:
            g = torch.Generator().manual_seed(tc.seed * 1000 + shuffle_epoch)
            if tc.balanced_sampling:
                counts = np.bincount(ds.labels, minlength=cfg.num_classes).astype(np.float64)
                w = 1.0 / np.maximum(counts[ds.labels], 1)
                sampler = torch.utils.data.WeightedRandomSampler(
                    torch.as_tensor(w), num_samples=len(ds), replacement=True, generator=g
                )
            else:
                sampler = torch.utils.data.RandomSampler(ds, generator=g)
            kw.update(sampler=sampler, drop_last=len(ds) > batch_size, generator=g)
        dl = torch.utils.data.DataLoader(ds, **kw)
        return accelerator.prepare_data_loader(dl) if accelerator.num_processes > 1 else dl

    # -- optimisation -----------------------------------------------------------------------
    steps_per_epoch = len(loader(train_ds, shuffle_epoch=0, batch_size=tc.batch_size))
    optimizer = torch.optim.AdamW(
        param_groups(model, tc.weight_decay, tc.lr, tc.lr_pretrained), lr=tc.lr
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(tc, steps_per_epoch))
    weight = None
    if tc.class_weighting != "none":
        counts = np.bincount(train_ds.labels, minlength=cfg.num_classes).astype(np.float64)
        w = len(train_ds) / (cfg.num_classes * np.maximum(counts, 1))
        w = np.sqrt(w) if tc.class_weighting == "sqrt_inverse" else w
        weight = torch.tensor(w, dtype=torch.float32, device=accelerator.device)

    state = {
        "epoch": 0,
        "history": [],
        "best_score": None,
        "best_epoch": None,
        "bad_epochs": 0,
        "stopped": False,
    }
    last_dir = out_dir / "last"
    if resume and (last_dir / "training_state.pt").exists():
        state = _load_last(last_dir, model, optimizer, scheduler, cfg)
        reporter.log(f"resuming after epoch {state['epoch']}")
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)

    total_steps = tc.epochs * steps_per_epoch
    for epoch in range(state["epoch"] + 1, tc.epochs + 1):
        if state["stopped"]:
            break
        _seed_all(tc.seed * 1000 + epoch)
        model.train()
        dl = loader(train_ds, shuffle_epoch=epoch, batch_size=tc.batch_size)
        t_epoch, seen, loss_sum = time.time(), 0, 0.0
        for i, batch in enumerate(dl):
            batch = _to_device(batch, accelerator.device)
            with accelerator.autocast():
                out = model(batch, return_dict=True)
            loss = _loss(out, batch["label"], cfg, weight, tc.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if tc.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            n = int(batch["label"].shape[0])
            seen += n
            loss_sum += float(loss.detach()) * n
            step = (epoch - 1) * steps_per_epoch + i + 1
            reporter.progress(step, total_steps, "train")
        train_time = time.time() - t_epoch
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, seen),
            "lr": scheduler.get_last_lr()[0],
            "train_seconds": train_time,
            "train_images_per_s": seen / max(train_time, 1e-9),
        }
        report = None
        if val_ds is not None:
            report, vloss = evaluate(
                model,
                loader(val_ds, shuffle_epoch=None, batch_size=tc.eval_batch_size),
                accelerator,
                cfg,
            )
            row.update(_summary(report, vloss, "val"))
            score = (report["macro_f1"], -vloss)
        else:
            score = (0.0, -row["train_loss"])
        improved = state["best_score"] is None or tuple(score) > tuple(state["best_score"])
        if improved:
            state.update(best_score=list(score), best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        if (
            tc.early_stopping_patience is not None
            and state["bad_epochs"] >= tc.early_stopping_patience
        ):
            state["stopped"] = True
        state["epoch"] = epoch
        state["history"].append(row)
        if accelerator.is_main_process:
            _save_epoch(
                out_dir,
                unwrapped,
                optimizer,
                scheduler,
                state,
                row,
                report,
                improved,
                tc.keep_checkpoints,
            )
        accelerator.wait_for_everyone()
        for k, v in row.items():
            if k != "epoch" and isinstance(v, float):
                reporter.metric(k, v, epoch)
        reporter.log(
            f"epoch {epoch}/{tc.epochs}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
        )
        if state["stopped"]:
            reporter.log(f"early stopping after epoch {epoch}")

    # -- final evaluation with the best model ------------------------------------------------
    best_dir = out_dir / "best"
    if not (best_dir / CONFIG_NAME).exists():
        raise RuntimeError(f"no best model in {best_dir}")
    best = RFNet.from_pretrained(best_dir)
    unwrapped.load_state_dict(best.state_dict())
    metrics: dict[str, Any] = {
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "history": state["history"],
    }
    calibration = None
    if val_ds is not None:
        reporter.progress(0, None, "val")
        # Temperature scaling on val (never test), stored beside the best weights: every
        # probability read from this model from now on is the calibrated one.
        logits, labels = predict_logits(
            model, loader(val_ds, shuffle_epoch=None, batch_size=tc.eval_batch_size), accelerator
        )
        if tc.calibrate and len(labels):
            calibration = fit_temperature(logits, labels)
            unwrapped.calibration = calibration
            if accelerator.is_main_process:
                _write_json(best_dir / CALIBRATION_NAME, calibration)
            reporter.log(
                f"calibration: T={calibration['temperature']:.3f}, val ECE "
                f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}"
            )
            metrics["calibration"] = calibration
        probs = apply_calibration(logits, calibration).numpy()
        metrics["val"] = classification_report(labels.numpy(), probs, cfg.class_names)
    if test_ds is not None:
        reporter.progress(0, None, "test")
        t = time.time()
        logits, labels = predict_logits(
            model, loader(test_ds, shuffle_epoch=None, batch_size=tc.eval_batch_size), accelerator
        )
        metrics["test"] = classification_report(
            labels.numpy(), apply_calibration(logits, calibration).numpy(), cfg.class_names
        )
        if calibration is not None:
            metrics["test"]["ece_uncalibrated"] = classification_report(
                labels.numpy(), apply_calibration(logits, None).numpy(), cfg.class_names
            )["ece"]
        metrics["test_images_per_s"] = len(test_ds) / max(time.time() - t, 1e-9)
        for k, v in _summary(metrics["test"], 0.0, "test").items():
            if k != "test_loss":
                reporter.metric(k, v, state["epoch"])
    metrics["train_config"] = asdict(tc)
    if accelerator.is_main_process:
        _write_json(out_dir / "metrics.json", metrics)
    return TrainResult(best_dir=best_dir, metrics=metrics, history=state["history"])


def _save_epoch(
    out_dir: Path,
    model: RFNet,
    optimizer,
    scheduler,
    state: dict[str, Any],
    row: dict[str, Any],
    report: dict[str, Any] | None,
    improved: bool,
    keep: int | None,
) -> None:
    epoch = state["epoch"]
    ckpts = out_dir / "checkpoints"
    ckpt = ckpts / f"epoch-{epoch}"
    model.save_pretrained(ckpt)
    _write_json(ckpt / "metrics.json", {"epoch": epoch, **row, "val": report})
    if improved:
        tmp = out_dir / f".best.tmp-{uuid.uuid4().hex[:8]}"
        shutil.copytree(ckpt, tmp)
        _replace_dir(tmp, out_dir / "best")
    # last/: model + everything needed to continue; swapped in as one directory.
    tmp = out_dir / f".last.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shutil.copytree(ckpt, tmp / "model")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": state,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
            },
            tmp / "training_state.pt",
        )
        _replace_dir(tmp, out_dir / "last")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep:
        done = sorted(
            (p for p in ckpts.glob("epoch-*") if p.name[6:].isdigit()),
            key=lambda p: int(p.name[6:]),
        )
        for p in done[:-keep]:
            shutil.rmtree(p, ignore_errors=True)


def _load_last(last_dir: Path, model: RFNet, optimizer, scheduler, cfg: RFNetConfig) -> dict:
    from safetensors.torch import load_file

    saved = json.loads((last_dir / "model" / CONFIG_NAME).read_text())
    if saved != json.loads(json.dumps(cfg.to_dict())):
        raise ValueError(
            f"{last_dir} holds a checkpoint of a different model config; "
            "use another out_dir or resume=False"
        )
    model.load_state_dict(load_file(str(last_dir / "model" / WEIGHTS_NAME)))
    ts = torch.load(last_dir / "training_state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(ts["optimizer"])
    scheduler.load_state_dict(ts["scheduler"])
    rng = ts["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return ts["state"]
