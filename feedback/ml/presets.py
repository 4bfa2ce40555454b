"""Named RFNet configurations: tiny (tests), small (CPU), paper (GPU), single_image (ablation)."""

from __future__ import annotations

import copy
from typing import Any

from .config import BackboneConfig, RFNetConfig

# The RF1M taxonomy in index order (annotation.models.RF1M_CLASSES; no Django import here).
RF1M_SLUGS = [
    "available",
    "unsuitable",
    "space_mismatch",
    "size_mismatch",
    "indistinctiveness",
    "shape_hallucination",
]

DEFAULT_MODALITIES = ["image", "product", "placed", "mask", "edges", "saliency", "caption"]


def _tiny() -> dict[str, Any]:
    return dict(
        modalities=list(DEFAULT_MODALITIES),
        early_fusion=["placed"],
        placed_residual=True,
        placed_ring=True,
        image_size=32,
        width=16,
        heads=2,
        fusion_layers=1,
        mlp_ratio=2.0,
        dropout=0.0,
        image_backbone=BackboneConfig(kind="cnn", widths=[4, 8]),
        condition_backbone=BackboneConfig(kind="cnn", widths=[4, 8]),
        text_encoder="tiny",
        text_config={
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
        },
        text_max_length=24,
    )


def _small() -> dict[str, Any]:
    return dict(
        modalities=list(DEFAULT_MODALITIES),
        early_fusion=["placed"],
        # |image - placed cut-out|: +0.05 val macro-F1 on unseen families (bench/RESULTS.md).
        placed_residual=True,
        # product-like pixels just outside the cut-out: +0.055 macro-F1 on othergen's unseen
        # families, +0.03 on ours (bench/RESULTS.md, "placed_ring").
        placed_ring=True,
        image_size=96,
        width=96,
        heads=4,
        fusion_layers=2,
        mlp_ratio=2.0,
        dropout=0.1,
        image_backbone=BackboneConfig(kind="cnn", widths=[24, 48, 96, 128], blocks_per_stage=1),
        condition_backbone=BackboneConfig(kind="cnn", widths=[16, 32, 64, 96]),
        text_encoder="tiny",
        text_config={
            "hidden_size": 48,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 96,
        },
        text_max_length=48,
    )


def _paper() -> dict[str, Any]:
    # ResNet-50 per modality (transformers ResNetConfig defaults are ResNet-50: bottleneck,
    # depths 3-4-6-3, hidden sizes 256..2048). Use kind="pretrained" + path for real weights.
    resnet50 = BackboneConfig(
        kind="resnet",
        hf_config={
            "layer_type": "bottleneck",
            "depths": [3, 4, 6, 3],
            "hidden_sizes": [256, 512, 1024, 2048],
            "embedding_size": 64,
        },
    )
    return dict(
        modalities=["image", "product", "placed", "mask", "saliency", "caption"],
        early_fusion=["placed"],
        placed_residual=True,
        placed_ring=True,
        image_size=384,
        width=384,
        heads=8,
        fusion_layers=3,
        mlp_ratio=4.0,
        dropout=0.1,
        image_backbone=resnet50,
        condition_backbone=copy.deepcopy(resnet50),
        text_encoder="tiny",  # override with a local RoBERTa folder for the paper's setup
        text_config={
            "hidden_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "intermediate_size": 1024,
        },
        text_max_length=64,
        normalize="imagenet",
    )


def _single_image() -> dict[str, Any]:
    cfg = _small()
    cfg["modalities"] = ["image"]
    cfg["early_fusion"] = []
    return cfg


PRESETS = {"tiny": _tiny, "small": _small, "paper": _paper, "single_image": _single_image}


def preset(name: str, num_classes: int | list[str] = 6, **overrides: Any) -> RFNetConfig:
    """Build a config. num_classes: a count (6 → the RF1M slugs) or the class names in order.

    A `depth_model_path` override also enables the "depth" modality.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    if isinstance(num_classes, int):
        names = (
            RF1M_SLUGS
            if num_classes == len(RF1M_SLUGS)
            else [f"class_{i}" for i in range(num_classes)]
        )
    else:
        names = list(num_classes)
    cfg["class_names"] = list(overrides.pop("class_names", names))
    if "available_index" not in overrides:
        cfg["available_index"] = (
            cfg["class_names"].index("available") if "available" in cfg["class_names"] else 0
        )
    cfg.update(overrides)
    if cfg.get("depth_model_path") and "depth" not in cfg["modalities"] and name != "single_image":
        cfg["modalities"] = [*cfg["modalities"], "depth"]
    return RFNetConfig(**cfg)
