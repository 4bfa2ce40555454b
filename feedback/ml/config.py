"""Configuration dataclasses for RFNet; JSON round-trippable (save_pretrained stores them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import ALL_MODALITIES, IMAGE_MODALITIES

# Channels each image modality carries into its encoder (see data.py for what each holds).
MODALITY_CHANNELS = {
    "image": 3,  # generated creative, RGB
    "product": 4,  # product cut-out, RGB + alpha, letterboxed into a square
    "placed": 4,  # the cut-out pasted at its placement box in the creative frame (0 if unknown)
    "mask": 2,  # [cut-out alpha (product frame), placement mask in the creative frame or 0]
    "edges": 2,  # [edges of the creative, edges of the cut-out]
    "saliency": 1,  # spectral-residual saliency of the creative
    "depth": 1,  # monocular depth of the creative (only with a local depth model)
}


@dataclass
class BackboneConfig:
    """One image encoder.

    kind: "cnn" (compact conv net built here), "resnet" / "convnext" (transformers models built
    from ResNetConfig / ConvNextConfig with `hf_config`), or "pretrained" (a local transformers
    vision folder at `path`, loaded with local_files_only=True; after loading, its config is
    stored in `hf_config` and kind becomes the model_type so reloading needs no source folder).
    """

    kind: str = "cnn"
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    blocks_per_stage: int = 1
    hf_config: dict[str, Any] | None = None
    path: str | None = None


@dataclass
class RFNetConfig:
    modalities: list[str] = field(
        default_factory=lambda: ["image", "product", "mask", "edges", "saliency", "caption"]
    )
    image_size: int = 64
    class_names: list[str] = field(default_factory=lambda: ["available", "unavailable"])
    available_index: int = 0
    width: int = 64  # token width d of the Feature Filter Module and fusion layers
    heads: int = 4
    fusion_layers: int = 1
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    # Creative-frame conditions concatenated to the generated image's input channels (early
    # fusion: pixel-aligned comparison) instead of getting an encoder of their own.
    early_fusion: list[str] = field(default_factory=list)
    # With "placed" early-fused: also feed |image - placed cut-out| inside the cut-out's alpha,
    # computed in the model from the two inputs (same at training, serving and in the reward
    # path). It shows where the product in the creative differs from the product: parts missing,
    # torn, covered or repainted, whatever mechanism caused it.
    placed_residual: bool = False
    # With "placed" early-fused: also feed, in a ring just outside the cut-out, how much the
    # creative there looks like the nearby product (2 ch: the ring, and colour similarity to
    # the product pixels within ring_radius). Hallucinated parts (extended, mirrored, grown
    # product) lie outside the cut-out, where placed_residual says nothing.
    placed_ring: bool = False
    ring_radius: float = 0.06  # fraction of image_size
    feature_filter: bool = True  # False: conditions are only fused, never cross-attended
    available_head: bool = True  # extra binary P(available) head trained alongside the classes
    available_loss_weight: float = 0.5
    # One BackboneConfig for the generated image, one shared by or copied to each condition map.
    image_backbone: BackboneConfig = field(default_factory=BackboneConfig)
    condition_backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # True: every condition map (product, mask, ...) runs through ONE encoder (with a per-modality
    # 1x1 input adapter); False: one encoder each. The generated image always has its own.
    share_condition_backbone: bool = False
    # Caption encoder: "tiny" (a small BERT + char tokenizer built in code) or a local folder
    # holding a transformers text encoder + tokenizer (AutoModel/AutoTokenizer).
    text_encoder: str = "tiny"
    text_config: dict[str, Any] | None = None  # resolved transformers config (filled at build)
    text_max_length: int = 32
    freeze_text_encoder: bool = False
    freeze_pretrained_backbones: bool = False  # vision encoders loaded from a folder
    depth_model_path: str | None = None  # local DPT folder: enables the "depth" modality maps
    normalize: str = "half"  # "half": (x-0.5)/0.25; "imagenet": ImageNet mean/std

    def __post_init__(self) -> None:
        if isinstance(self.image_backbone, dict):
            self.image_backbone = BackboneConfig(**self.image_backbone)
        if isinstance(self.condition_backbone, dict):
            self.condition_backbone = BackboneConfig(**self.condition_backbone)
        unknown = [m for m in self.modalities if m not in ALL_MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; choose from {list(ALL_MODALITIES)}")
        if "image" not in self.modalities:
            raise ValueError("the generated image modality 'image' is required")
        if not 0 <= self.available_index < len(self.class_names):
            raise ValueError("available_index out of range of class_names")
        self.early_fusion = [m for m in self.early_fusion if m in self.modalities]
        if any(m in ("image", "caption") for m in self.early_fusion):
            raise ValueError("early_fusion takes creative-frame maps, not image/caption")
        if self.width % self.heads:
            raise ValueError("width must be divisible by heads")
        # A ring wider than a quarter of the frame pools most of the image: no longer "just
        # outside the cut-out" (the kernel is 2 * radius * image_size + 1 pixels).
        if not 0 < self.ring_radius <= 0.25:
            raise ValueError(f"ring_radius must be in (0, 0.25], got {self.ring_radius}")

    @property
    def image_modalities(self) -> list[str]:
        return [m for m in self.modalities if m in IMAGE_MODALITIES]

    @property
    def condition_modalities(self) -> list[str]:
        return [m for m in self.modalities if m != "image" and m not in self.early_fusion]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RFNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
