"""Style-reference conditioning: an IP-Adapter (diffusers' format) + its CLIP image encoder.

An IP-Adapter is one safetensors file with `image_proj.*` keys (the projection of the image
embedding into extra cross-attention tokens: `proj.*` + `norm.*` for the original IP-Adapter,
the Plus/Full variants work too) and `ip_adapter.<n>.to_k_ip.weight` / `.to_v_ip.weight` keys
(one key/value pair per cross-attention layer of the UNet, numbered 1, 3, 5, … in the UNet's
attention-processor order: the original repository's layout, which diffusers'
`UNet2DConditionModel._load_ip_adapter_weights` reads). The image encoder is a
`CLIPVisionModelWithProjection` folder (`save_pretrained` layout), loaded offline.

This module reads and checks those files, and builds the *tiny* pair tests and the demo use: a
small CLIP vision tower and an adapter matching a given UNet (its key/value projections start as
copies of the UNet's text key/value projections, as IP-Adapter training initialises them), saved
in the same formats so the real diffusers code path runs on CPU in seconds.

Plain torch/transformers/diffusers, no Django. Attaching the adapter to a UNet and sampling with
it is `generation.ml.pipeline.InpaintPipeline.load_ip_adapter`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

IP_ADAPTER_WEIGHTS = "ip_adapter.safetensors"
IMAGE_ENCODER_FOLDER = "image_encoder"
# Extra cross-attention tokens of the original IP-Adapter (diffusers' ImageProjection hard-codes 4).
NUM_IMAGE_TOKENS = 4


class StyleAdapterLoadError(ValueError):
    """An IP-Adapter file or image-encoder folder that cannot be used; names the part."""


@dataclass
class StyleAdapterConfig:
    """The tiny CLIP vision tower of a test/demo IP-Adapter (SD-1.5's is ViT-H/14, 1024-d)."""

    image_size: int = 32  # encoder input side (px); the feature extractor resizes + crops to it
    patch_size: int = 8
    hidden_size: int = 32
    intermediate_size: int = 64
    num_hidden_layers: int = 1
    num_attention_heads: int = 2
    projection_dim: int = 32  # width of `image_embeds`: the adapter projection's input

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StyleAdapterConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


STYLE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    # SD-1.5's IP-Adapter encoder size (OpenCLIP ViT-H/14, random weights): GPU benchmarks.
    "sd15": {
        "image_size": 224,
        "patch_size": 14,
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "projection_dim": 1024,
    },
}


@dataclass
class StyleAdapter:
    """What `InpaintPipeline.load_ip_adapter` attaches: the encoder, its pre-processing and the
    adapter's state dict split as diffusers' `load_ip_adapter` splits it."""

    image_encoder: nn.Module  # CLIPVisionModelWithProjection
    feature_extractor: Any  # CLIPImageProcessor
    state_dict: dict[str, dict[str, torch.Tensor]]  # {"image_proj": {...}, "ip_adapter": {...}}


# -- reading ---------------------------------------------------------------------------------
def read_ip_adapter_weights(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """{"image_proj": …, "ip_adapter": …} from a safetensors file, split on the key prefixes as
    diffusers' `IPAdapterMixin.load_ip_adapter` does. Pickled .bin files are refused: loading
    them runs code."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise StyleAdapterLoadError(f"ip_adapter: {path} is not a file")
    if path.suffix != ".safetensors":
        raise StyleAdapterLoadError(f"ip_adapter: {path.name} is not a .safetensors file")
    state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is not iterable)
                part, _, rest = key.partition(".")
                if part in state and rest:
                    state[part][rest] = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise StyleAdapterLoadError(f"ip_adapter: unreadable safetensors file ({exc})") from exc
    for part in ("image_proj", "ip_adapter"):
        if not state[part]:
            raise StyleAdapterLoadError(f"ip_adapter: no `{part}.*` weights in {path.name}")
    return state


def check_against_unet(state: dict[str, dict[str, torch.Tensor]], unet: nn.Module) -> None:
    """One key/value pair per cross-attention layer of `unet`, else StyleAdapterLoadError.

    diffusers reads the pairs it needs by number and ignores the rest, so an adapter made for
    a different UNet would otherwise load partly (or fail with a bare KeyError)."""
    cross = [n for n in unet.attn_processors if n.endswith("attn2.processor")]
    pairs = ("to_k_ip", "to_v_ip")
    expected = {f"{1 + 2 * i}.{k}.weight" for i in range(len(cross)) for k in pairs}
    got = {k for k in state["ip_adapter"] if ".to_k_ip." in k or ".to_v_ip." in k}
    if got != expected:
        raise StyleAdapterLoadError(
            f"ip_adapter: {len(got) // 2} key/value pairs for a UNet with {len(cross)} "
            "cross-attention layers (made for another UNet?)"
        )


def load_style_adapter(
    weights: str | os.PathLike,
    image_encoder: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> StyleAdapter:
    """Read the adapter file and load the encoder folder offline (local_files_only=True)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    state = read_ip_adapter_weights(weights)
    folder = Path(image_encoder)
    if not folder.is_dir():
        raise StyleAdapterLoadError(f"image_encoder: {folder} is not a directory")
    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises many types for a bad folder
        raise StyleAdapterLoadError(f"image_encoder: {type(exc).__name__}: {exc}") from exc
    if (folder / "preprocessor_config.json").is_file():
        try:
            processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise StyleAdapterLoadError(f"image_encoder: preprocessor_config.json: {exc}") from exc
    else:  # what diffusers' load_ip_adapter builds when the folder ships none (SD's h94 encoders)
        size = encoder.config.image_size
        processor = CLIPImageProcessor(size=size, crop_size=size)
    encoder.eval().requires_grad_(False)
    if device is not None:
        encoder.to(device)
    if dtype is not None and dtype != torch.float32:
        encoder.to(dtype=dtype)
    return StyleAdapter(encoder, processor, state)


# -- the tiny pair -------------------------------------------------------------------------------
def build_image_encoder(config: StyleAdapterConfig, *, seed: int = 0):
    """A fresh CLIPVisionModelWithProjection of `config` (random weights, seeded)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            projection_dim=config.projection_dim,
        )
    ).eval()


def build_ip_adapter_state_dict(
    unet: nn.Module, *, image_embed_dim: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """An original-format IP-Adapter for `unet`, flat (`image_proj.*`, `ip_adapter.*`).

    The projection is random (seeded); each cross-attention layer's to_k_ip / to_v_ip start as
    copies of its text to_k / to_v, IP-Adapter's own initialisation."""
    cross_dim = int(unet.config.cross_attention_dim)
    gen = torch.Generator("cpu").manual_seed(seed)
    proj = nn.Linear(image_embed_dim, NUM_IMAGE_TOKENS * cross_dim)
    with torch.no_grad():
        proj.weight.copy_(torch.randn(proj.weight.shape, generator=gen) / image_embed_dim**0.5)
        proj.bias.zero_()
    state = {
        "image_proj.proj.weight": proj.weight.detach().clone(),
        "image_proj.proj.bias": proj.bias.detach().clone(),
        "image_proj.norm.weight": torch.ones(cross_dim),
        "image_proj.norm.bias": torch.zeros(cross_dim),
    }
    key_id = 1
    for name in unet.attn_processors:  # the order diffusers numbers the pairs in
        if not name.endswith("attn2.processor"):
            continue
        attn = unet.get_submodule(name.removesuffix(".processor"))
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = attn.to_k.weight.detach().clone()
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = attn.to_v.weight.detach().clone()
        key_id += 2
    return {k: v.contiguous().float() for k, v in state.items()}


def save_style_adapter(
    out_dir: str | os.PathLike, encoder: nn.Module, state: dict[str, torch.Tensor]
) -> tuple[Path, Path]:
    """Write `<out_dir>/image_encoder/` (save_pretrained + preprocessor config) and
    `<out_dir>/ip_adapter.safetensors`; returns (weights file, encoder folder)."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor

    out = Path(out_dir)
    enc_dir = out / IMAGE_ENCODER_FOLDER
    enc_dir.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(enc_dir, safe_serialization=True)
    size = encoder.config.image_size
    CLIPImageProcessor(size=size, crop_size=size).save_pretrained(enc_dir)
    weights = out / IP_ADAPTER_WEIGHTS
    save_file(state, str(weights), metadata={"format": "pt"})
    return weights, enc_dir


def build_tiny_style_adapter(
    unet: nn.Module,
    out_dir: str | os.PathLike,
    *,
    config: StyleAdapterConfig | None = None,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Build and save the tiny encoder + adapter matching `unet`; (weights file, encoder dir)."""
    config = config or StyleAdapterConfig()
    encoder = build_image_encoder(config, seed=seed)
    state = build_ip_adapter_state_dict(unet, image_embed_dim=config.projection_dim, seed=seed)
    return save_style_adapter(out_dir, encoder, state)


def main(argv: list[str] | None = None) -> None:
    """`python -m generation.ml.style PIPELINE_DIR OUT_DIR [--preset tiny]`: build the untrained
    adapter + encoder for a pipeline folder's UNet (tests, demos, benchmarks; it changes images,
    it does not transfer a style), then register them with --ip-adapter / --image-encoder."""
    import argparse

    from diffusers import UNet2DConditionModel

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("pipeline", help="diffusers pipeline folder (its unet/ is read)")
    ap.add_argument("out", help="where image_encoder/ and ip_adapter.safetensors go")
    ap.add_argument("--preset", choices=sorted(STYLE_PRESETS), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    unet = UNet2DConditionModel.from_pretrained(
        args.pipeline, subfolder="unet", local_files_only=True
    )
    config = StyleAdapterConfig(**STYLE_PRESETS[args.preset])
    weights, encoder = build_tiny_style_adapter(unet, args.out, config=config, seed=args.seed)
    print(f"--ip-adapter {weights} --image-encoder {encoder}")


if __name__ == "__main__":
    main()
