"""Configuration dataclasses of the encoder and the ranker; JSON round-trippable and saved as
`config.json` beside `model.safetensors` by save_pretrained."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


class JsonConfig:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, folder: str | Path) -> None:
        Path(folder, "config.json").write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, folder: str | Path):
        return cls.from_dict(json.loads(Path(folder, "config.json").read_text()))


@dataclass
class EncoderConfig(JsonConfig):
    """MoCo v3-style contrastive creative encoder (small CNN backbone)."""

    image_size: int = 64  # creatives are resized to a square of this side
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # conv stage widths
    embed_dim: int = 128  # backbone output = the stored embedding (L2-normalised)
    proj_dim: int = 64  # projector/predictor output the InfoNCE loss compares
    hidden_dim: int = 256  # MLP hidden width of projector and predictor
    temperature: float = 0.2  # InfoNCE τ (MoCo v3 uses 0.2 for ViTs)
    momentum: float = 0.99  # EMA of the key encoder (MoCo v3: 0.99 → 1 on a cosine schedule)
    # Share of pairs whose positive is another creative of the same product (else a second view).
    product_pair_rate: float = 0.5


@dataclass
class RankerConfig(JsonConfig):
    """Two-stage creative ranker (AAAI 2024 Peri-CR + JAC; VAM-HBM list-wise loss).

    Stage one predicts the <segment, product> CTR; stage two scores each creative of the list
    from segment, creative and embedding features plus the JAC-quantised stage-one pCTR."""

    segment_features: list[str] = field(default_factory=list)  # input names, in order
    product_features: list[str] = field(default_factory=list)
    creative_features: list[str] = field(default_factory=list)
    embedding_dim: int = 0  # 0: no encoder embeddings
    encoder: str = ""  # name of the encoder whose embeddings were used
    # Feature standardisation (mean, std) per input vector, computed on the training split.
    norms: dict = field(default_factory=dict)
    stage1_hidden: list[int] = field(default_factory=lambda: [64, 32])
    hidden: list[int] = field(default_factory=lambda: [128, 64, 32])  # creative-stage MLP
    jac_buckets: int = 8192  # K in ⌊K·log_{r+1}(1 + r·pCTR)⌋
    jac_r: float = 100.0  # r: resolution at low CTRs
    jac_dim: int = 8  # embedding width of the quantised pCTR
    dropout: float = 0.1
    # Beta prior for smoothed CTR targets (VAM-HBM: α 2.04, β 54.06).
    alpha: float = 2.04
    beta: float = 54.06
    mse_weight: float = 0.5
