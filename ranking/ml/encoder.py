"""MoCo v3-style contrastive creative encoder (Chen, Xie & He 2021), Faiss retrieval, recall@k.

A query encoder (backbone → projector → predictor) and a momentum key encoder (backbone →
projector, an EMA of the query's, no gradients) see two views of a batch; the symmetric InfoNCE
loss ctr(q1, k2) + ctr(q2, k1) has the batch's other samples as negatives. A positive pair is two
augmentations of one creative or, at `product_pair_rate`, two creatives of the same product, so
embeddings group a product's creatives (JD's cross-SKU retrieval check). The stored embedding is
the L2-normalised backbone output.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig


class ConvBackbone(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        layers, c_in = [], 3
        for width in config.widths:
            layers += [
                nn.Conv2d(c_in, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, d_out, bias=False),
        nn.BatchNorm1d(d_out, affine=False),
    )


class CreativeEncoder(nn.Module):
    """The query encoder; `momentum_encoder()` builds the key side for training."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ConvBackbone(config)
        self.projector = _mlp(config.embed_dim, config.hidden_dim, config.proj_dim)
        self.predictor = _mlp(config.proj_dim, config.hidden_dim, config.proj_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x), dim=-1)

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu") -> CreativeEncoder:
        from safetensors.torch import load_file

        model = cls(EncoderConfig.load(folder))
        model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
        return model.to(device).eval()


class MoCo(nn.Module):
    def __init__(self, encoder: CreativeEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.key_backbone = copy.deepcopy(encoder.backbone)
        self.key_projector = copy.deepcopy(encoder.projector)
        for p in [*self.key_backbone.parameters(), *self.key_projector.parameters()]:
            p.requires_grad = False

    @torch.no_grad()
    def update_keys(self, m: float) -> None:
        pairs = [
            (self.encoder.backbone, self.key_backbone),
            (self.encoder.projector, self.key_projector),
        ]
        for online, key in pairs:
            for p, k in zip(online.parameters(), key.parameters(), strict=True):
                k.mul_(m).add_(p.detach(), alpha=1 - m)

    def contrastive(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """InfoNCE; across processes (accelerate/DDP) every process's keys are negatives, as in
        MoCo v3 (keys carry no gradient, so a plain all-gather suffices)."""
        t = self.encoder.config.temperature
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        offset = 0
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            keys = [torch.empty_like(k) for _ in range(dist.get_world_size())]
            dist.all_gather(keys, k.contiguous())
            offset = dist.get_rank() * len(k)
            k = torch.cat(keys)
        logits = q @ k.T / t
        labels = torch.arange(len(q), device=q.device) + offset
        return F.cross_entropy(logits, labels) * (2 * t)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, m: float) -> torch.Tensor:
        enc = self.encoder
        q1 = enc.predictor(enc.projector(enc.backbone(x1)))
        q2 = enc.predictor(enc.projector(enc.backbone(x2)))
        with torch.no_grad():
            self.update_keys(m)
            k1 = self.key_projector(self.key_backbone(x1))
            k2 = self.key_projector(self.key_backbone(x2))
        return self.contrastive(q1, k2) + self.contrastive(q2, k1)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 0.4–1), horizontal flip, brightness/contrast jitter; x in
    [0, 1], (B, 3, S, S)."""
    b, _, s, _ = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        area = float(torch.empty(1).uniform_(0.4, 1.0, generator=generator))
        side = max(4, int(round(s * math.sqrt(area))))
        y0 = int(torch.randint(0, s - side + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, s - side + 1, (1,), generator=generator))
        crop = x[i : i + 1, :, y0 : y0 + side, x0 : x0 + side]
        crop = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False)
        if float(torch.rand(1, generator=generator)) < 0.5:
            crop = crop.flip(-1)
        out[i] = crop[0]
    bright = torch.empty(b, 1, 1, 1).uniform_(-0.15, 0.15, generator=generator)
    contrast = torch.empty(b, 1, 1, 1).uniform_(0.75, 1.25, generator=generator)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast.to(x.device) + mean + bright.to(x.device)).clamp(0, 1)


def normalize_images(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 → (N, 3, S, S) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def _positives(groups: Sequence[str], idx: np.ndarray, rate: float, rng) -> np.ndarray:
    by_group = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    out = idx.copy()
    for n, i in enumerate(idx):
        others = [j for j in by_group[groups[i]] if j != i]
        if others and rng.random() < rate:
            out[n] = others[rng.integers(len(others))]
    return out


def _fingerprint(images: np.ndarray, groups: Sequence[str], config, hyper: list) -> str:
    """What a checkpoint must match to be resumed (creatives added between two attempts change
    the training set; such a checkpoint is not reused)."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps([config.to_dict(), hyper, list(groups)]).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


@dataclass
class EncoderTraining:
    encoder: CreativeEncoder  # the query encoder, eval mode, on the training device
    resumed_from_step: int  # 0 unless a checkpoint was found
    is_main_process: bool = True


def train_encoder(
    images: np.ndarray,
    groups: Sequence[str],
    config: EncoderConfig,
    *,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | None = None,
    mixed_precision: str = "auto",
    reporter=None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 50,
) -> EncoderTraining:
    """Train from (N, S, S, 3) uint8 images of creatives and their product ids, under
    `accelerate` (one device, or every process of `accelerate launch`; `batch_size` is per
    process, each drawing its own pairs, and every process's keys are negatives).

    With `checkpoint_dir`, `<checkpoint_dir>/last/` (query and key encoders, optimiser, step,
    random states) is swapped in atomically every `checkpoint_every` steps; a later call
    resumes there and, on one process, ends with the weights of an uninterrupted run."""
    from jobs.accel import load_checkpoint, make_accelerator, save_checkpoint  # Django-free

    accelerator = make_accelerator(device, mixed_precision=mixed_precision)
    rank = accelerator.process_index
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed if rank == 0 else [seed, rank])
    gen = torch.Generator().manual_seed(seed + 1_000_003 * rank)
    encoder = CreativeEncoder(config)
    moco = MoCo(encoder).train()
    if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        moco = nn.SyncBatchNorm.convert_sync_batchnorm(moco)  # MoCo v3's SyncBN
    x_all = normalize_images(images)
    raw_optimizer = torch.optim.AdamW(moco.encoder.parameters(), lr=lr, weight_decay=1e-4)
    batch_size = max(2, min(batch_size, len(images)))
    last = Path(checkpoint_dir) / "last" if checkpoint_dir else None
    start = 0
    fingerprint = _fingerprint(images, groups, config, [steps, batch_size, lr, seed,
                               accelerator.num_processes])  # fmt: skip
    saved = last and load_checkpoint(
        last, modules={"moco": moco}, optimizer=raw_optimizer, fingerprint=fingerprint
    )
    if saved and saved.get("stale"):
        if reporter is not None:
            reporter.log("The checkpoint holds other creatives or settings: training afresh.")
    elif saved:
        rng.bit_generator.state = saved["extra"]["rng"]
        gen.set_state(saved["extra"]["gen"])
        start = saved["step"]
        if reporter is not None:
            reporter.log(f"Resuming the encoder at step {start}.")
    model, optimizer = accelerator.prepare(moco, raw_optimizer)
    moco = accelerator.unwrap_model(model)
    dev = accelerator.device
    for step in range(start, steps):
        idx = rng.choice(len(images), size=batch_size, replace=len(images) < batch_size)
        pos = _positives(groups, idx, config.product_pair_rate, rng)
        x1 = augment(x_all[idx], gen).to(dev)
        x2 = augment(x_all[pos], gen).to(dev)
        # Momentum rises from config.momentum to 1 on a cosine schedule (MoCo v3).
        m = 1 - (1 - config.momentum) * (math.cos(math.pi * step / max(1, steps)) + 1) / 2
        with accelerator.autocast():
            loss = model(x1, x2, m)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        if reporter is not None:
            reporter.progress(step + 1, steps, phase="contrastive training")
            if step % 10 == 0 or step == steps - 1:
                mean = accelerator.reduce(loss.detach().float(), "mean")
                reporter.metric("loss", float(mean), step=step)
        due = last is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps
        if due and accelerator.is_main_process:
            save_checkpoint(
                last,
                modules={"moco": moco},
                optimizer=raw_optimizer,
                step=step + 1,
                extra={
                    "rng": rng.bit_generator.state,
                    "gen": gen.get_state(),
                    "fingerprint": fingerprint,
                },
            )
    accelerator.wait_for_everyone()
    return EncoderTraining(moco.encoder.eval(), start, accelerator.is_main_process)


@torch.no_grad()
def embed_images(
    encoder: CreativeEncoder, images: np.ndarray, *, batch_size: int = 256, device="cpu"
) -> np.ndarray:
    encoder = encoder.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = normalize_images(images[i : i + batch_size]).to(device)
        out.append(encoder.embed(x).cpu().numpy())
    dim = encoder.config.embed_dim
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)


def build_index(vectors: np.ndarray):
    """Exact inner-product index (cosine on normalised vectors); GPU when faiss-gpu is there."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:  # pragma: no cover
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(vectors, np.float32))
    return index


def save_index(folder: str | Path, vectors: np.ndarray, ids) -> None:
    """`index.faiss` (exact inner product) + `index_ids.npy` (row → creative id) in `folder`."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, np.float32))
    faiss.write_index(index, str(Path(folder) / "index.faiss"))
    np.save(Path(folder) / "index_ids.npy", np.asarray(list(ids), np.int64))


def load_index(folder: str | Path):
    """(ids, index) saved by save_index, or None."""
    import faiss

    folder = Path(folder)
    if not (folder / "index.faiss").is_file():
        return None
    return np.load(folder / "index_ids.npy").tolist(), faiss.read_index(str(folder / "index.faiss"))


def recall_at_k(vectors: np.ndarray, groups: Sequence[str], ks=(1, 5, 10)) -> dict[str, float]:
    """Share of queries (creatives whose product has another creative here) with a creative of
    the same product among their k nearest neighbours (itself excluded)."""
    groups = list(groups)
    counts = defaultdict(int)
    for g in groups:
        counts[g] += 1
    queries = [i for i, g in enumerate(groups) if counts[g] > 1]
    if not queries or len(vectors) < 2:
        return {f"recall@{k}": 0.0 for k in ks}
    index = build_index(vectors)
    kmax = min(max(ks) + 1, len(vectors))
    _, nn_idx = index.search(np.ascontiguousarray(vectors[queries], np.float32), kmax)
    out = {}
    for k in ks:
        hits = 0
        for q, row in zip(queries, nn_idx, strict=True):
            neighbours = [j for j in row if j != q and j >= 0][:k]
            hits += any(groups[j] == groups[q] for j in neighbours)
        out[f"recall@{k}"] = hits / len(queries)
    out["queries"] = len(queries)
    return out
