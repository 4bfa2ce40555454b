"""RFNet: generated image attends to its conditions (Feature Filter Module), then fusion + heads.

image ──enc──► e_o (tokens on the image grid) ─────────────┐
product/mask/edges/saliency/depth ──enc each──► tokens ──┐  │
caption ──text encoder──► tokens ────────────────────────┴► e_c
FFM:   e_f = Conv(Conv(CrossAttn(e_o, e_c)) ⊗ Conv(e_o)) + e_o
fusion: N self-attention layers over [CLS; e_f; one pooled token per condition]
heads:  [CLS ‖ mean(e_f)] → class logits  (+ a binary P(available) logit)
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .calibration import CALIBRATION_NAME, apply_calibration
from .config import MODALITY_CHANNELS, BackboneConfig, RFNetConfig
from .text import CaptionEncoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "rfnet_config.json"


class ConvBackbone(nn.Module):
    """Compact CNN: stride-2 conv stages (+ optional residual blocks). Output stride 2**stages."""

    def __init__(self, in_ch: int, widths: list[int], blocks_per_stage: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_ch
        for w in widths:
            layers += [
                nn.Conv2d(prev, w, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            for _ in range(max(0, blocks_per_stage - 1)):
                layers.append(_ResBlock(w))
            prev = w
        self.body = nn.Sequential(*layers)
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.f(x))


class HFBackbone(nn.Module):
    """A transformers vision model (ResNetModel, ConvNextModel, ...): its last feature map."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        self.out_channels = int(cfg.hidden_sizes[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).last_hidden_state


def build_backbone(bc: BackboneConfig, in_ch: int) -> tuple[nn.Module, int, BackboneConfig]:
    """Returns (backbone, the channel count it expects, the resolved config to store).

    `bc` is not modified: the same config may build several encoders (one per condition).
    """
    if bc.kind == "cnn":
        return ConvBackbone(in_ch, list(bc.widths), bc.blocks_per_stage), in_ch, bc
    from transformers import AutoConfig, AutoModel, ConvNextConfig, ResNetConfig

    if bc.kind == "pretrained":
        if not bc.path or not Path(bc.path).is_dir():
            raise ValueError(f"pretrained backbone folder not found: {bc.path}")
        model = AutoModel.from_pretrained(bc.path, local_files_only=True)
        # Resolved: a saved RFNet rebuilds this architecture without the source folder
        # (num_channels stays in the config: inputs go through 1x1 adapters).
        resolved = BackboneConfig(
            kind=model.config.model_type,
            widths=list(bc.widths),
            blocks_per_stage=bc.blocks_per_stage,
            hf_config=model.config.to_dict(),
            path=bc.path,
        )
        return HFBackbone(model), int(model.config.num_channels), resolved
    cfg_dict = dict(bc.hf_config or {})
    cfg_dict.pop("model_type", None)
    cfg_dict.setdefault("num_channels", in_ch)
    if bc.kind == "resnet":
        cfg = ResNetConfig(**cfg_dict)
    elif bc.kind == "convnext":
        hs = cfg_dict.setdefault("hidden_sizes", list(bc.widths))
        cfg_dict.setdefault("depths", [bc.blocks_per_stage] * len(hs))
        cfg_dict.setdefault("num_stages", len(hs))
        cfg = ConvNextConfig(**cfg_dict)
    else:
        cfg = AutoConfig.for_model(bc.kind, **cfg_dict)
    stored = cfg.to_dict()
    if "num_channels" not in (bc.hf_config or {}):
        stored.pop("num_channels", None)  # per modality, from its channel count
    resolved = BackboneConfig(
        kind=bc.kind,
        widths=list(bc.widths),
        blocks_per_stage=bc.blocks_per_stage,
        hf_config=stored,
        path=bc.path,
    )
    return HFBackbone(AutoModel.from_config(cfg)), int(cfg.num_channels), resolved


def _adapter(in_ch: int, out_ch: int) -> nn.Conv2d:
    """1x1 conv mapping a modality's channels to a backbone's; starts as copy/average."""
    conv = nn.Conv2d(in_ch, out_ch, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for o in range(out_ch):
            if in_ch >= out_ch:
                conv.weight[o, o, 0, 0] = 1.0
            else:
                conv.weight[o, :, 0, 0] = 1.0 / in_ch
    return conv


def sincos_2d(h: int, w: int, dim: int, device, dtype) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding (h*w, dim): any grid size works."""
    d = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(d, device=device, dtype=torch.float32) / max(1, d)))
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    out = [
        torch.sin(ys.reshape(-1, 1) * omega),
        torch.cos(ys.reshape(-1, 1) * omega),
        torch.sin(xs.reshape(-1, 1) * omega),
        torch.cos(xs.reshape(-1, 1) * omega),
    ]
    pe = torch.cat(out, dim=1)
    if pe.shape[1] < dim:
        pe = F.pad(pe, (0, dim - pe.shape[1]))
    return pe.to(dtype)


class FeatureFilter(nn.Module):
    """e_f = Conv(Conv(CrossAttn(e_o, e_c)) ⊗ Conv(e_o)) + e_o, convs on the image token grid."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.conv_a1 = nn.Conv2d(d, d, 3, padding=1)
        self.conv_a2 = nn.Conv2d(d, d, 1)
        self.conv_o = nn.Conv2d(d, d, 3, padding=1)
        self.conv_out = nn.Conv2d(d, d, 1)
        self.act = nn.GELU()

    def forward(
        self,
        e_o: torch.Tensor,
        grid: tuple[int, int],
        e_c: torch.Tensor,
        c_pad: torch.Tensor | None,
    ) -> torch.Tensor:
        b, n, d = e_o.shape
        h, w = grid
        a, _ = self.attn(
            self.norm_q(e_o),
            self.norm_kv(e_c),
            self.norm_kv(e_c),
            key_padding_mask=c_pad,
            need_weights=False,
        )

        def to_map(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).reshape(b, d, h, w)

        a = self.conv_a2(self.act(self.conv_a1(to_map(a))))
        o = self.conv_o(to_map(e_o))
        f = self.conv_out(a * o)
        return f.flatten(2).transpose(1, 2) + e_o


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Cached uint8 maps to [0, 1] floats; float inputs (the differentiable reward path) as is."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


class RFNet(nn.Module):
    def __init__(self, config: RFNetConfig, *, _tokenizer_dir: str | Path | None = None) -> None:
        super().__init__()
        config = copy.deepcopy(config)  # resolved in place below; the caller keeps theirs
        config.__post_init__()  # re-validate (fields may have been edited after creation)
        self.config = config
        # Post-hoc calibration fitted on val after training (calibration.py); None = softmax.
        self.calibration: dict[str, Any] | None = None
        d = config.width
        self.encoders = nn.ModuleDict()
        self.adapters = nn.ModuleDict()
        self.projs = nn.ModuleDict()
        shared: nn.Module | None = None
        resolved = {}
        for m in config.image_modalities:
            if m in config.early_fusion:
                continue  # enters through the image encoder's input channels
            in_ch = MODALITY_CHANNELS[m]
            if m == "image":
                in_ch += sum(MODALITY_CHANNELS[e] for e in config.early_fusion)
                in_ch += 3 if self._uses_residual(config) else 0
                in_ch += 2 if self._uses_ring(config) else 0
                enc, want, resolved["image"] = build_backbone(config.image_backbone, in_ch)
            elif config.share_condition_backbone:
                if shared is None:
                    shared, shared_in, resolved["cond"] = build_backbone(
                        config.condition_backbone, 3
                    )
                    self.shared_encoder = shared
                enc, want = None, shared_in
            else:
                enc, want, resolved["cond"] = build_backbone(config.condition_backbone, in_ch)
            if want != in_ch or enc is None:
                self.adapters[m] = _adapter(in_ch, want)
            if enc is not None:
                self.encoders[m] = enc
            out_ch = (enc or shared).out_channels
            self.projs[m] = nn.Conv2d(out_ch, d, 1)
        config.image_backbone = resolved["image"]
        config.condition_backbone = resolved.get("cond", config.condition_backbone)
        if config.freeze_pretrained_backbones:
            for m, enc in self.encoders.items():
                bc = config.image_backbone if m == "image" else config.condition_backbone
                if bc.path:
                    enc.requires_grad_(False)
            if shared is not None and config.condition_backbone.path:
                shared.requires_grad_(False)
        self.caption: CaptionEncoder | None = None
        if "caption" in config.modalities:
            self.caption = CaptionEncoder(
                config.text_encoder, config.text_config, config.text_max_length, _tokenizer_dir
            )
            config.text_config = self.caption.resolved_config()
            self.caption_proj = nn.Linear(self.caption.hidden_size, d)
            if config.freeze_text_encoder:
                self.caption.encoder.requires_grad_(False)
        conds = config.condition_modalities
        self.modality_embed = nn.ParameterDict(
            {
                m: nn.Parameter(torch.randn(d) * 0.02)
                for m in config.modalities
                if m not in config.early_fusion
            }
        )
        self.ffm = (
            FeatureFilter(d, config.heads, config.dropout)
            if (conds and config.feature_filter)
            else None
        )
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d,
            config.heads,
            int(d * config.mlp_ratio),
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.fusion = nn.TransformerEncoder(layer, config.fusion_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(2 * d, config.num_classes)
        self.available_head = nn.Linear(2 * d, 1) if config.available_head else None
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("im_mean", mean, persistent=False)
        self.register_buffer("im_std", std, persistent=False)

    # -- inputs -----------------------------------------------------------------------------
    @staticmethod
    def _uses_residual(config: RFNetConfig) -> bool:
        return config.placed_residual and "placed" in config.early_fusion

    @staticmethod
    def _uses_ring(config: RFNetConfig) -> bool:
        return config.placed_ring and "placed" in config.early_fusion

    def _placed_ring(self, image: torch.Tensor, placed: torch.Tensor) -> torch.Tensor:
        """Ring outside the cut-out and how product-like the creative is there (2 ch).

        The product's mean colour within ring_radius of each pixel is compared with the
        creative's colour there: near 1 where the creative continues the product beyond its
        cut-out (a hallucinated extension), near 0 where it is background. Zeros when the
        product was not found.
        """
        image, placed = _unit(image), _unit(placed)
        alpha = placed[:, 3:4]
        k = 2 * max(1, round(self.config.ring_radius * image.shape[-1])) + 1
        # Mean of the product's (premultiplied) colour over the k×k window, per pixel.
        near = F.avg_pool2d(alpha, k, stride=1, padding=k // 2, count_include_pad=False)
        colour = F.avg_pool2d(placed[:, :3], k, stride=1, padding=k // 2, count_include_pad=False)
        colour = colour / near.clamp_min(1e-3)
        ring = (1.0 - alpha) * (near > 0.02).to(alpha.dtype)
        dist = (image[:, :3] - colour).abs().mean(1, keepdim=True)
        similar = ring * (1.0 - dist / 0.25).clamp(0.0, 1.0)
        return (torch.cat([ring, similar], 1) - 0.5) / 0.25

    def _placed_residual(self, image: torch.Tensor, placed: torch.Tensor) -> torch.Tensor:
        """|image - cut-out| where the cut-out was placed (3 ch); 0 when it was not found."""
        image, placed = _unit(image), _unit(placed)
        alpha = placed[:, 3:4]
        # placed RGB is premultiplied by alpha (preprocess.process_images)
        return ((image[:, :3] * alpha - placed[:, :3]).abs() - 0.1) / 0.2

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        if self.caption is None:
            return {}
        return self.caption.tokenize(captions)

    def _normalize(self, m: str, x: torch.Tensor) -> torch.Tensor:
        x = _unit(x)
        if self.config.normalize == "imagenet" and m in ("image", "product"):
            rgb = (x[:, :3] - self.im_mean) / self.im_std
            return torch.cat([rgb, (x[:, 3:] - 0.5) / 0.25], 1) if x.shape[1] > 3 else rgb
        return (x - 0.5) / 0.25

    def _encode(
        self, m: str, x: torch.Tensor, extra: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self._normalize(m, x)
        if extra:
            x = torch.cat([x, *extra], 1)
        if m in self.adapters:
            x = self.adapters[m](x)
        # (ModuleDict has no .get)
        enc = self.encoders[m] if m in self.encoders else self.shared_encoder  # noqa: SIM401
        fmap = self.projs[m](enc(x))
        b, d, h, w = fmap.shape
        tokens = fmap.flatten(2).transpose(1, 2)
        tokens = tokens + sincos_2d(h, w, d, tokens.device, tokens.dtype) + self.modality_embed[m]
        return tokens, (h, w)

    # -- forward ----------------------------------------------------------------------------
    def forward_features(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        missing = [m for m in cfg.image_modalities if m not in batch]
        if "caption" in cfg.modalities and "caption_ids" not in batch:
            missing.append("caption_ids")
        if missing:
            raise KeyError(f"RFNet batch lacks {missing}")
        extra = [self._normalize(e, batch[e]) for e in cfg.early_fusion]
        if self._uses_residual(cfg):
            extra.append(self._placed_residual(batch["image"], batch["placed"]))
        if self._uses_ring(cfg):
            extra.append(self._placed_ring(batch["image"], batch["placed"]))
        e_o, grid = self._encode("image", batch["image"], extra)
        b = e_o.shape[0]
        cond_tokens, cond_pads, summaries = [], [], []
        for m in cfg.condition_modalities:
            if m == "caption":
                ids, mask = batch["caption_ids"], batch["caption_mask"]
                t = self.caption_proj(self.caption(ids, mask)) + self.modality_embed[m]
                pad = mask == 0
                w = mask.unsqueeze(-1).to(t.dtype)
                summaries.append((t * w).sum(1) / w.sum(1).clamp_min(1.0))
            else:
                t, _ = self._encode(m, batch[m])
                pad = torch.zeros(b, t.shape[1], dtype=torch.bool, device=t.device)
                summaries.append(t.mean(1))
            cond_tokens.append(t)
            cond_pads.append(pad)
        e_f = e_o
        if cond_tokens and self.ffm is not None:
            e_c = torch.cat(cond_tokens, 1)
            e_f = self.ffm(e_o, grid, e_c, torch.cat(cond_pads, 1))
        seq = [self.cls.expand(b, -1, -1), e_f]
        if summaries:
            seq.append(torch.stack(summaries, 1))
        x = self.norm(self.fusion(torch.cat(seq, 1)))
        n_img = e_f.shape[1]
        pooled = torch.cat([x[:, 0], x[:, 1 : 1 + n_img].mean(1)], -1)
        # "embedding": the pooled representation the heads read (frozen features for a
        # learner outside the model, e.g. bench/active_learning.py).
        out = {"logits": self.head(pooled), "embedding": pooled}
        if self.available_head is not None:
            out["available_logit"] = self.available_head(pooled).squeeze(-1)
        return out

    def forward(self, batch: dict[str, torch.Tensor], return_dict: bool = False):
        out = self.forward_features(batch)
        return out if return_dict else out["logits"]

    # -- persistence ------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config JSON + safetensors (+ tokenizer) into a temp dir, then rename into place."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
            if self.calibration is not None:
                (tmp / CALIBRATION_NAME).write_text(json.dumps(self.calibration, indent=2))
            if self.caption is not None:
                self.caption.tokenizer.save_pretrained(str(tmp / "tokenizer"))
            _replace_dir(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str = "cpu") -> RFNet:
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / CONFIG_NAME).exists():
            raise FileNotFoundError(f"no RFNet checkpoint in {directory} ({CONFIG_NAME} missing)")
        config = RFNetConfig.from_dict(json.loads((directory / CONFIG_NAME).read_text()))
        model = cls(config, _tokenizer_dir=directory / "tokenizer")
        state = load_file(str(directory / WEIGHTS_NAME), device=map_location)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        if (directory / CALIBRATION_NAME).exists():
            model.calibration = json.loads((directory / CALIBRATION_NAME).read_text())
        model.eval()
        return model

    def calibrated_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The one definition of RFNet's class probabilities (differentiable)."""
        return apply_calibration(logits, self.calibration)

    def p_available(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated P(available) [N]: what the queue, the gate and the reward read."""
        return self.calibrated_probs(logits)[:, self.config.available_index]


def _replace_dir(tmp: Path, final: Path) -> None:
    """Atomically put tmp at final (an existing final is swapped out, then removed)."""
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pretrained_prefixes(model: nn.Module) -> list[str]:
    """Parameter-name prefixes of parts loaded from pretrained folders (get lr_pretrained)."""
    cfg = model.config
    out = []
    if cfg.image_backbone.path:
        out.append("encoders.image.")
    if cfg.condition_backbone.path:
        out += [f"encoders.{m}." for m in cfg.condition_modalities if m != "caption"]
        out.append("shared_encoder.")
    if getattr(model, "caption", None) is not None and cfg.text_encoder != "tiny":
        out.append("caption.encoder.")
    return out


def param_groups(
    model: nn.Module,
    weight_decay: float,
    lr: float | None = None,
    lr_pretrained: float | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: no decay on norms/biases; parts loaded from pretrained folders get
    `lr_pretrained` (the paper fine-tunes pretrained encoders at 1e-4 or lower)."""
    prefixes = tuple(pretrained_prefixes(model)) if lr_pretrained else ()
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias")
        pre = bool(prefixes) and name.startswith(prefixes)
        groups.setdefault((no_decay, pre), []).append(p)
    out = []
    for (no_decay, pre), params in sorted(groups.items()):
        g: dict[str, Any] = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if pre:
            g["lr"] = lr_pretrained
        elif lr is not None:
            g["lr"] = lr
        out.append(g)
    return out
