"""Ranker training on (segment, product) lists (no Django: the caller builds `ListData`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .config import RankerConfig
from .ranker import Batch, CreativeRanker


@dataclass
class ListData:
    key: tuple  # (segment slug, product sku)
    segment: np.ndarray  # (S,)
    product: np.ndarray  # (P,)
    creatives: np.ndarray  # (L, C) creative features ⊕ embedding, in config order
    creative_ids: list = field(default_factory=list)
    impressions: np.ndarray | None = None  # (L,)
    clicks: np.ndarray | None = None  # (L,)


def fit_norms(lists: list[ListData]) -> dict:
    """Mean/std of each input vector over the training lists (std 1 where constant)."""

    def stats(rows):
        x = np.stack(rows).astype(np.float64) if rows else np.zeros((1, 0))
        std = x.std(0)
        return {"mean": x.mean(0).tolist(), "std": np.where(std > 1e-8, std, 1.0).tolist()}

    return {
        "segment": stats([lst.segment for lst in lists]),
        "product": stats([lst.product for lst in lists]),
        "creative": stats([row for lst in lists for row in lst.creatives]),
    }


def _norm(x: np.ndarray, n: dict) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if not n or not len(n["mean"]):
        return x
    # float32 throughout (float64 norms would promote the whole batch).
    x = x - np.asarray(n["mean"], np.float32)
    x *= np.float32(1.0) / np.asarray(n["std"], np.float32)
    return x


def collate(lists: list[ListData], config: RankerConfig, device: str = "cpu") -> Batch:
    """Pad the lists into one Batch, inputs standardised with the config's norms (one vectorised
    pass over all creatives: this is on the serving path)."""
    norms = config.norms
    b = len(lists)
    lens = np.fromiter((len(lst.creatives) for lst in lists), np.int64, count=b)
    L = int(lens.max())
    rows = _norm(np.concatenate([lst.creatives for lst in lists]), norms.get("creative"))
    if (lens == L).all():
        crea = rows.reshape(b, L, -1)
        mask = np.ones((b, L), np.float32)
    else:
        crea = np.zeros((b, L, rows.shape[1]), np.float32)
        list_idx = np.repeat(np.arange(b), lens)
        pos = np.arange(len(rows)) - np.repeat(np.cumsum(lens) - lens, lens)
        crea[list_idx, pos] = rows
        mask = (np.arange(L)[None] < lens[:, None]).astype(np.float32)
    imp = np.zeros((b, L), np.float32)
    clk = np.zeros((b, L), np.float32)
    for i, lst in enumerate(lists):
        if lst.impressions is not None:
            imp[i, : lens[i]] = lst.impressions
            clk[i, : lens[i]] = lst.clicks
    seg = _norm(np.stack([lst.segment for lst in lists]), norms.get("segment"))
    prod = _norm(np.stack([lst.product for lst in lists]), norms.get("product"))

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(device)

    return Batch(t(seg), t(prod), t(crea), t(mask), t(imp), t(clk))


class EpochPermutation(torch.utils.data.Sampler):
    """The list order of an epoch as a function of (seed, epoch) alone: a resumed run, and every
    process of a distributed one (each takes its shard of the batches), see the order an
    uninterrupted single-process run would."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


@dataclass
class RankerTraining:
    model: CreativeRanker  # unwrapped, eval mode, on the training device
    history: list[dict]  # one row per epoch
    resumed_from_step: int  # 0 unless a checkpoint was found
    steps: int  # optimizer steps of the whole run
    is_main_process: bool = True


def _fingerprint(train: list[ListData], config: RankerConfig, hyper: dict) -> str:
    """What a checkpoint must match to be resumed: the inputs, the lists and the run's settings
    (logs imported between two attempts change the lists; such a checkpoint is not reused)."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps([config.to_dict(), hyper], sort_keys=True).encode())
    for lst in train:
        h.update(repr(lst.key).encode())
        h.update(np.ascontiguousarray(lst.creatives, np.float32).tobytes())
        if lst.clicks is not None:
            h.update(np.asarray(lst.clicks, np.float64).tobytes())
    return h.hexdigest()


def train_ranker(
    train: list[ListData],
    config: RankerConfig,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | None = None,
    mixed_precision: str = "no",
    reporter=None,
    val: list[ListData] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 50,
) -> RankerTraining:
    """Train under `accelerate` (one device, or every process of `accelerate launch`).

    With `checkpoint_dir`, `<checkpoint_dir>/last/` (weights, optimizer, scheduler, step, random
    states, the epoch's running loss) is swapped in atomically every `checkpoint_every` steps
    and at the end of each epoch; a later call with the same lists and settings resumes there
    and, on one process, ends with the weights an uninterrupted run ends with."""
    from jobs.accel import load_checkpoint, make_accelerator, save_checkpoint  # Django-free

    if not train:
        raise ValueError("No training lists (no impression logs in the training window).")
    accelerator = make_accelerator(device, mixed_precision=mixed_precision)
    torch.manual_seed(seed)
    config.norms = fit_norms(train)
    model = CreativeRanker(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=batch_size,
        sampler=EpochPermutation(len(train), seed),
        collate_fn=partial(collate, config=config),
        # Its own generator: starting an iterator draws a seed, which must not shift the global
        # stream dropout uses (a resumed run starts one iterator more than a straight one).
        generator=torch.Generator().manual_seed(seed),
    )
    raw_optimizer = optimizer
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(model)
    steps_per_epoch = len(loader)  # per process
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(raw_optimizer, max_lr=lr, total_steps=total)
    hyper = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "wd": weight_decay,
             "seed": seed, "processes": accelerator.num_processes}  # fmt: skip
    fingerprint = _fingerprint(train, config, hyper)
    last = Path(checkpoint_dir) / "last" if checkpoint_dir else None
    step, history, running = 0, [], [0.0, 0]
    if last is not None:
        saved = load_checkpoint(
            last,
            modules={"ranker": unwrapped},
            optimizer=raw_optimizer,
            scheduler=sched,
            fingerprint=fingerprint,
        )
        if saved and saved.get("stale"):
            if reporter is not None:
                reporter.log("The checkpoint holds other lists or settings: training afresh.")
        elif saved:
            step, history, running = (saved["step"], saved["extra"]["history"],
                                      saved["extra"]["running"])  # fmt: skip
            if reporter is not None:
                reporter.log(f"Resuming the ranker at step {step} of {total}.")
    resumed_from = step

    def checkpoint() -> None:
        if last is not None and accelerator.is_main_process:
            save_checkpoint(
                last,
                modules={"ranker": unwrapped},
                optimizer=raw_optimizer,
                scheduler=sched,
                step=step,
                extra={"fingerprint": fingerprint, "history": history, "running": running},
            )

    for epoch in range(step // steps_per_epoch, epochs):
        model.train()
        loader.set_epoch(epoch)
        skip = step - epoch * steps_per_epoch
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            with accelerator.autocast():
                # Through forward: DistributedDataParallel all-reduces what its forward saw.
                loss, _ = model(batch, return_loss=True)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            sched.step()
            # Mean over every process's batches (each process holds its shard).
            running[0] += float(accelerator.reduce(loss.detach().float(), "mean"))
            running[1] += 1
            step += 1
            if reporter is not None:
                reporter.progress(step, total, phase=f"epoch {epoch + 1}/{epochs}")
            if step % checkpoint_every == 0 and step % steps_per_epoch:
                checkpoint()
        row = {"epoch": epoch + 1, "train_loss": running[0] / max(1, running[1])}
        running = [0.0, 0]
        if val:
            with torch.no_grad():
                unwrapped.eval()
                row["val_loss"] = float(unwrapped.loss(collate(val, config, accelerator.device))[0])
        history.append(row)
        if step < total:
            checkpoint()
        if reporter is not None:
            for key, value in row.items():
                if key != "epoch":
                    reporter.metric(key, value, step=epoch + 1)
    accelerator.wait_for_everyone()
    return RankerTraining(
        unwrapped.eval(), history, resumed_from, total, accelerator.is_main_process
    )


def score_lists(
    model: CreativeRanker, lists: list[ListData], *, batch_size: int = 256, device: str = "cpu"
) -> tuple[list[np.ndarray], list[float]]:
    """Per list, the creative scores (in list order) and the stage-one pCTR."""
    scores, p_ctrs = [], []
    for i in range(0, len(lists), batch_size):
        chunk = lists[i : i + batch_size]
        s, p = model.score(collate(chunk, model.config, device))
        for j, lst in enumerate(chunk):
            scores.append(s[j, : len(lst.creatives)])
            p_ctrs.append(float(p[j]))
    return scores, p_ctrs
