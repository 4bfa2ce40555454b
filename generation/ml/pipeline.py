"""The composed inpainting + Canny-ControlNet diffuser (plain torch/diffusers, no Django).

Components are real diffusers/transformers classes, so a tiny preset and an SD-1.5 folder run the
same code:

    codec        PixelUnshuffleCodec (lossless space-to-depth, tiny presets) or AutoencoderKL
    unet         UNet2DConditionModel, in_channels = 2·latent + 1 (noisy latents | mask | masked
                 image latents), the SD-inpainting layout (9 channels with SD's VAE)
    controlnet   ControlNetModel on the noisy latents, conditioned on Canny of the product
    text         CLIPTextModel + CLIPTokenizer (tiny presets build a word-piece vocabulary here)
    scheduler    DDIMScheduler (tiny presets: zero-terminal-SNR, trailing spacing, v-prediction)

A pipeline folder has the diffusers layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/,
optional controlnet/) plus `rfstudio_pipeline.json`; an SD-1.5 inpainting folder is the same
minus our json, with the ControlNet given separately. Everything loads with
`local_files_only=True`.

Entry points (the fine-tuning loop in generation.ml.finetune builds on the same math):
- `InpaintPipeline.encode_prompt(prompts)` → text states;
- `InpaintPipeline.conditioning(image, mask)` → masked-image latents + latent mask;
- `InpaintPipeline.model_output(x, t, cond, embeds, control, guidance)` → the UNet's raw output
  with ControlNet residuals and classifier-free guidance;
- `to_eps_x0(prediction_type, out, x, alpha_bar)` → (ε, predicted x₀) for any prediction type;
- `InpaintPipeline.decode(latents)` → images in [-1, 1] (differentiable);
- `paste_back_tensor(images, product, alpha)` → the product pixels restored (differentiable);
- `InpaintPipeline.generate(products, prompts, seeds, config)` → pasted-back uint8 images
  (pre-processing from generation.ml.processing, our DDIM loop); `reference_pipeline()` returns
  diffusers' `StableDiffusionControlNetInpaintPipeline` over the same components for AutoencoderKL
  folders (`generate(..., backend="diffusers")`).
- `InpaintPipeline.load_ip_adapter(weights, image_encoder)` attaches an IP-Adapter (generation.ml
  .style) through diffusers' own loader; `generate(..., style_image=im)` then conditions the UNet
  on the reference's CLIP image embedding (`added_cond_kwargs={"image_embeds": …}`, scale
  `SampleConfig.ip_adapter_scale`, zero / zero-image embeddings on the unconditional branch as
  diffusers does). Without a style image the UNet runs its original attention processors, so
  outputs are byte-identical to a pipeline that never loaded an adapter.

Determinism: the initial noise of each image is drawn from its own CPU `torch.Generator` seeded
with the image's seed, DDIM with eta = 0 adds no other randomness, so the same model, product,
prompt and seed give the same bytes on the same device (and batch size).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from torch import nn

from . import processing
from .config import CONFIG_NAME, DiffusionConfig, SampleConfig

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


# -- codec ----------------------------------------------------------------------------------
class PixelUnshuffleCodec(ModelMixin, ConfigMixin):
    """A lossless stand-in for a VAE: images [-1, 1] (B, 3, H, W) ↔ (B, 3f², H/f, W/f).

    Nothing to train and decode(encode(x)) == x exactly, so a tiny diffuser spends all its
    capacity on the scene; `encode`/`decode` return tensors (generation.ml.finetune.Codec reads
    them as such)."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, factor: int = 2, in_channels: int = 3, scaling_factor: float = 1.0):
        super().__init__()
        # A buffer so ModelMixin finds a dtype/device and save_pretrained writes a weights file.
        self.register_buffer("_anchor", torch.zeros(1), persistent=True)

    @property
    def latent_channels(self) -> int:
        return self.config.in_channels * self.config.factor**2

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_unshuffle(images, self.config.factor)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_shuffle(latents, self.config.factor)


class LatentCodec:
    """Pixels ([-1, 1]) ↔ scaled latents for AutoencoderKL / AutoencoderTiny / PixelUnshuffle."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae
        cfg = getattr(vae, "config", None)
        self.scaling = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(cfg, "shift_factor", 0.0) or 0.0)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        out = self.vae.encode(images)
        if hasattr(out, "latent_dist"):  # AutoencoderKL: the mode (deterministic conditioning)
            z = out.latent_dist.mode()
        elif hasattr(out, "latents"):
            z = out.latents
        else:
            z = out
        return (z - self.shift) * self.scaling

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = self.vae.decode(latents / self.scaling + self.shift)
        return out.sample if hasattr(out, "sample") else out


# -- tokenizer ------------------------------------------------------------------------------
_BASE_WORDS = """
a an the of on in at with and front view product placed desktop table tablecloth scene indoor
outdoor bright soft minimalist walls wall background surface wooden marble stone concrete fabric
light dark shadow flowers leaves plant photo photography commercial studio white black grey gray
red orange yellow green blue purple pink brown beige cream teal navy gold silver tones colorful
pastel warm cool sunlight bokeh focus 4k hd quality photorealistic professional lowres watermark
text blurry worst low bad cropped
"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte → printable-character map (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def build_tokenizer(words: Sequence[str] = (), max_length: int = 77):
    """A CLIPTokenizer whose byte-level BPE merges spell out `words` (+ a base list) whole.

    Like training a BPE on the prompts, without the download: frequent prompt words become one
    token each, anything else falls back to bytes, never to <unk>."""
    from transformers import CLIPTokenizer

    alphabet = list(bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    seen = set(vocab_list)
    encode = bytes_to_unicode()
    for word in dict.fromkeys([*_BASE_WORDS.split(), *(w.lower() for w in words)]):
        if not re.fullmatch(r"[^\W\d_]+|[<>\w-]+", word):
            continue
        symbols = [encode[b] for b in word.encode("utf-8")]
        if len(symbols) < 2:
            continue
        symbols[-1] += "</w>"
        left = symbols[0]
        for right in symbols[1:]:
            merged = left + right
            if merged not in seen:
                merges.append((left, right))
                vocab_list.append(merged)
                seen.add(merged)
            left = merged
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


# -- components -----------------------------------------------------------------------------
@dataclass
class Components:
    """The diffuser's parts; the fine-tuning loop duck-types unet/controlnet/scheduler/vae."""

    unet: nn.Module
    controlnet: nn.Module | None
    scheduler: Any
    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    config: DiffusionConfig | None = None  # None for folders not built by a preset (SD-1.5)


def build_components(
    config: DiffusionConfig, *, seed: int = 0, words: Sequence[str] = ()
) -> Components:
    """Fresh components of `config` (random weights; ControlNet initialised from the UNet)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    lat = config.latent_channels
    unet = UNet2DConditionModel(
        sample_size=config.size // config.downsample,
        in_channels=2 * lat + 1,
        out_channels=lat,
        block_out_channels=tuple(config.unet_block_out_channels),
        down_block_types=tuple(config.unet_down_block_types),
        up_block_types=tuple(config.unet_up_block_types),
        layers_per_block=config.layers_per_block,
        cross_attention_dim=config.text_hidden_size,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
    )
    controlnet = ControlNetModel.from_unet(
        unet,
        conditioning_embedding_out_channels=tuple(config.controlnet_conditioning_channels),
        load_weights_from_unet=True,
    )
    # from_unet copies the UNet's 2·lat+1-channel conv_in; the ControlNet sees latents only.
    conv = controlnet.conv_in
    controlnet.conv_in = nn.Conv2d(lat, conv.out_channels, conv.kernel_size, padding=conv.padding)
    with torch.no_grad():
        controlnet.conv_in.weight.copy_(conv.weight[:, :lat])
        controlnet.conv_in.bias.copy_(conv.bias)
    controlnet.register_to_config(in_channels=lat)
    if config.codec == "pixel_unshuffle":
        vae = PixelUnshuffleCodec(factor=config.unshuffle_factor)
    else:
        n = len(config.vae_block_out_channels)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(config.vae_block_out_channels),
            latent_channels=config.vae_latent_channels,
            norm_num_groups=min(32, config.vae_block_out_channels[0]),
            sample_size=config.size,
            scaling_factor=config.vae_scaling_factor,
        )
    tokenizer = build_tokenizer(words, config.text_max_length)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.text_hidden_size,
            intermediate_size=4 * config.text_hidden_size,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.text_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return Components(
        unet=unet,
        controlnet=controlnet,
        scheduler=make_scheduler(config),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        config=config,
    )


def make_scheduler(config: DiffusionConfig):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        rescale_betas_zero_snr=config.rescale_betas_zero_snr,
        timestep_spacing=config.timestep_spacing,
        clip_sample=False,
        set_alpha_to_one=config.rescale_betas_zero_snr,
    )


def save_components(components: Components, path: str | os.PathLike) -> Path:
    """Write the diffusers folder layout (safetensors) + rfstudio_pipeline.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    components.unet.save_pretrained(path / "unet", safe_serialization=True)
    components.vae.save_pretrained(path / "vae", safe_serialization=True)
    components.text_encoder.save_pretrained(path / "text_encoder", safe_serialization=True)
    components.tokenizer.save_pretrained(path / "tokenizer")
    components.scheduler.save_pretrained(path / "scheduler")
    if components.controlnet is not None:
        components.controlnet.save_pretrained(path / "controlnet", safe_serialization=True)
    meta = {"format": 1, "config": components.config.to_dict() if components.config else None}
    (path / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
    return path


class PipelineLoadError(ValueError):
    """A folder that is not a loadable pipeline; the message names the part that failed."""


def _load_part(what: str, loader, *args, **kwargs):
    try:
        return loader(*args, local_files_only=True, **kwargs)
    except Exception as exc:  # diffusers/transformers raise many types for a bad folder
        raise PipelineLoadError(f"{what}: {type(exc).__name__}: {exc}".strip()) from exc


def load_components(
    path: str | os.PathLike,
    *,
    controlnet: str | os.PathLike | None = None,
    lora: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Components:
    """Load a pipeline folder (ours or an SD-1.5 inpainting folder) offline.

    controlnet: a ControlNet folder (default: `path/controlnet` when present); lora: a LoRA
    file/folder for the UNet (peft format, diffusers' load_lora_adapter)."""
    import diffusers
    from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path)
    if not path.is_dir():
        raise PipelineLoadError(f"{path}: not a directory")
    missing = [s for s in SUBFOLDERS if not (path / s).is_dir()]
    if missing:
        raise PipelineLoadError(f"{path}: missing subfolder(s) {', '.join(missing)}")
    unet = _load_part("unet", UNet2DConditionModel.from_pretrained, path, subfolder="unet")
    vae_cfg = path / "vae" / "config.json"
    try:
        vae_class = json.loads(vae_cfg.read_text()).get("_class_name", "AutoencoderKL")
    except (OSError, ValueError) as exc:
        raise PipelineLoadError(f"vae: unreadable config.json ({exc})") from exc
    vae_cls = (
        PixelUnshuffleCodec
        if vae_class == "PixelUnshuffleCodec"
        else getattr(diffusers, vae_class, None)
    )
    if vae_cls is None:
        raise PipelineLoadError(f"vae: unknown class {vae_class!r}")
    vae = _load_part("vae", vae_cls.from_pretrained, path, subfolder="vae")
    text_encoder = _load_part(
        "text_encoder", CLIPTextModel.from_pretrained, path, subfolder="text_encoder"
    )
    tokenizer = _load_part("tokenizer", CLIPTokenizer.from_pretrained, path, subfolder="tokenizer")
    sched_cfg = _load_part("scheduler", DDIMScheduler.load_config, path, subfolder="scheduler")
    # The reference sampler is DDIM whatever the folder ships (SD-1.5 ships PNDM).
    scheduler = DDIMScheduler.from_config(sched_cfg)
    cn_path = Path(controlnet) if controlnet else path / "controlnet"
    cn = None
    if controlnet or cn_path.is_dir():
        cn = _load_part("controlnet", ControlNetModel.from_pretrained, cn_path)
    if lora:
        try:
            unet.load_lora_adapter(str(lora), prefix=None, adapter_name="default")
        except Exception as exc:
            raise PipelineLoadError(f"lora: {type(exc).__name__}: {exc}") from exc
    config = None
    meta_path = path / CONFIG_NAME
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        config = DiffusionConfig.from_dict(meta["config"]) if meta.get("config") else None
    unet_lat = (unet.config.in_channels - 1) // 2
    if unet.config.in_channels not in (unet_lat * 2 + 1,) or unet.config.out_channels != unet_lat:
        raise PipelineLoadError(
            f"unet: in_channels {unet.config.in_channels} is not an inpainting UNet "
            f"(2·{unet.config.out_channels} + 1 expected)"
        )
    if cn is not None and cn.config.in_channels != unet_lat:
        raise PipelineLoadError(
            f"controlnet: in_channels {cn.config.in_channels} != latent channels {unet_lat}"
        )
    comps = Components(unet, cn, scheduler, vae, text_encoder, tokenizer, config)
    for m in (unet, cn, vae, text_encoder):
        if m is not None:
            m.eval().requires_grad_(False)
            if device is not None:
                m.to(device)
            if dtype is not None and dtype != torch.float32:
                m.to(dtype=dtype)
    return comps


# -- math -----------------------------------------------------------------------------------
def to_eps_x0(
    prediction_type: str, out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε, predicted x₀) from the model output at ᾱ_t for any prediction type."""
    a = alpha_bar.reshape(-1, 1, 1, 1).to(out.dtype)
    sa, s1 = a.sqrt(), (1 - a).clamp_min(0).sqrt()
    if prediction_type == "epsilon":
        return out, (x - s1 * out) / sa.clamp_min(1e-4)
    if prediction_type == "v_prediction":
        return sa * out + s1 * x, sa * x - s1 * out
    if prediction_type == "sample":
        return (x - sa * out) / s1.clamp_min(1e-4), out
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def paste_back_tensor(
    images: torch.Tensor, product: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """images·(1 − α) + product·α (same value range for both; differentiable in images)."""
    return images * (1 - alpha) + product * alpha


def to_tensor(arr: np.ndarray, *, signed: bool) -> torch.Tensor:
    """HWC / HW uint8 → (C, H, W) float in [-1, 1] (signed) or [0, 1]."""
    t = torch.from_numpy(np.array(arr, copy=True)).float() / 255.0
    t = t.unsqueeze(-1) if t.ndim == 2 else t
    t = t.permute(2, 0, 1)
    return t * 2 - 1 if signed else t


def prepared_tensors(items: Sequence[processing.Prepared]) -> dict[str, torch.Tensor]:
    """Stack Prepared inputs: image/product [-1, 1], mask {0, 1} (1 = paint), control/alpha
    [0, 1] (the conventions of diffusers' ControlNet inpainting pipeline)."""
    return {
        "image": torch.stack([to_tensor(p.image, signed=True) for p in items]),
        "mask": torch.stack([(to_tensor(p.mask, signed=False) >= 0.5).float() for p in items]),
        "control": torch.stack([to_tensor(p.control, signed=False) for p in items]),
        "product": torch.stack([to_tensor(p.placed[..., :3], signed=True) for p in items]),
        "alpha": torch.stack([to_tensor(p.placed[..., 3], signed=False) for p in items]),
    }


# -- pipeline -------------------------------------------------------------------------------
@dataclass
class Generated:
    image: np.ndarray  # (S, S, 3) uint8, product pasted back
    raw: np.ndarray  # (S, S, 3) uint8, the decoded image before paste-back
    prepared: processing.Prepared
    prompt: str
    negative_prompt: str
    seed: int


class InpaintPipeline:
    def __init__(
        self,
        components: Components,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.c = components
        self.device = torch.device(device or "cpu")
        self.dtype = dtype
        self.codec = LatentCodec(components.vae)
        self.latent_channels = int(components.unet.config.out_channels)
        self.style = None  # a style.StyleAdapter once load_ip_adapter ran
        self._plain_processors: dict | None = None
        self._ip_processors: dict | None = None
        self._ip_projection: nn.Module | None = None
        for m in (components.unet, components.controlnet, components.vae, components.text_encoder):
            if m is not None:
                m.to(self.device)
                if dtype != torch.float32:
                    m.to(dtype=dtype)

    @classmethod
    def from_pretrained(
        cls, path, *, controlnet=None, lora=None, ip_adapter=None, image_encoder=None,
        device=None, dtype=None,
    ):  # fmt: skip
        """ip_adapter + image_encoder: attach a style adapter (both or neither)."""
        dtype = dtype or torch.float32
        comps = load_components(path, controlnet=controlnet, lora=lora)
        pipe = cls(comps, device=device, dtype=dtype)
        if ip_adapter or image_encoder:
            pipe.load_ip_adapter(ip_adapter, image_encoder)
        return pipe

    def save_pretrained(self, path) -> Path:
        return save_components(self.c, path)

    @property
    def prediction_type(self) -> str:
        return self.c.scheduler.config.prediction_type

    @property
    def native_size(self) -> int | None:
        """The canvas a preset model was trained at (None: any multiple of 8, e.g. SD-1.5)."""
        return self.c.config.size if self.c.config else None

    # -- style reference (IP-Adapter) ---------------------------------------------------------
    @property
    def has_ip_adapter(self) -> bool:
        return self.style is not None

    @property
    def ip_adapter_projection(self) -> nn.Module | None:
        """The adapter's MultiIPAdapterImageProjection (on the UNet only while in use)."""
        return self._ip_projection if self.style is not None else None

    def load_ip_adapter(self, weights, image_encoder) -> None:
        """Attach an IP-Adapter file + CLIP image-encoder folder (offline) to the UNet.

        The UNet's processors and projection are built by diffusers'
        `UNet2DConditionModel._load_ip_adapter_weights` (what `pipeline.load_ip_adapter` calls);
        we keep both processor sets and switch between them per call (`_use_ip_adapter`), since
        an IP-Adapter UNet refuses to run without image embeddings. PipelineLoadError names the
        part that failed."""
        from . import style as style_mod

        if not weights or not image_encoder:
            raise PipelineLoadError("ip_adapter: give both the adapter file and the image encoder")
        if self.style is not None:
            raise PipelineLoadError("ip_adapter: this pipeline already has one")
        try:
            adapter = style_mod.load_style_adapter(
                weights, image_encoder, device=self.device, dtype=self.dtype
            )
            style_mod.check_against_unet(adapter.state_dict, self.c.unet)
        except style_mod.StyleAdapterLoadError as exc:
            raise PipelineLoadError(str(exc)) from exc
        unet = self.c.unet
        plain = dict(unet.attn_processors)
        try:
            # low_cpu_mem_usage=False: strict load_state_dict, so a wrong shape is an error
            # instead of meta tensors left behind.
            unet._load_ip_adapter_weights([adapter.state_dict], low_cpu_mem_usage=False)
        except Exception as exc:  # KeyError / RuntimeError (shapes) from a mismatched file
            unet.set_attn_processor(dict(plain))
            unet.encoder_hid_proj = None
            unet.config.encoder_hid_dim_type = None
            raise PipelineLoadError(f"ip_adapter: {type(exc).__name__}: {exc}") from exc
        self._plain_processors = plain
        self._ip_processors = dict(unet.attn_processors)
        self._ip_projection = unet.encoder_hid_proj
        self.style = adapter
        self._ip_projection.to(self.device, self.dtype)
        for proc in self._ip_processors.values():
            if isinstance(proc, nn.Module):
                proc.to(self.device, self.dtype)
        try:  # the image embedding must be what the projection takes
            pos, _ = self.encode_style(Image.new("RGB", (64, 64)), 1, cfg=False)
            self._use_ip_adapter(True)
            self._ip_projection([pos])
        except Exception as exc:
            self._use_ip_adapter(False)
            self.style = None
            raise PipelineLoadError(
                f"ip_adapter: the image encoder's output does not fit the adapter "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        self._use_ip_adapter(False)

    def _use_ip_adapter(self, on: bool) -> None:
        """Switch the UNet between its original processors and the IP-Adapter ones (what
        diffusers' load/unload_ip_adapter set and restore), without reloading anything."""
        if self.style is None:
            return
        unet = self.c.unet
        # set_attn_processor pops from the dict it is given: hand it a copy.
        unet.set_attn_processor(dict(self._ip_processors if on else self._plain_processors))
        unet.encoder_hid_proj = self._ip_projection if on else None
        unet.config.encoder_hid_dim_type = "ip_image_proj" if on else None

    def set_ip_adapter_scale(self, scale: float) -> None:
        """One scale for every IP-Adapter layer (diffusers' set_ip_adapter_scale(float))."""
        from diffusers.models.attention_processor import (
            IPAdapterAttnProcessor,
            IPAdapterAttnProcessor2_0,
        )

        for proc in (self._ip_processors or {}).values():
            if isinstance(proc, IPAdapterAttnProcessor | IPAdapterAttnProcessor2_0):
                proc.scale = [float(scale)] * len(proc.scale)

    @torch.no_grad()
    def encode_style(
        self, image: Image.Image, n: int, *, cfg: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(image embeds, unconditional embeds or None), each (n, 1, …) for a batch of n.

        As diffusers' `encode_image`: the projected CLIP embedding for an `ImageProjection`
        adapter (unconditional: zeros), the penultimate hidden states for Plus/Full adapters
        (unconditional: the encoder's states of an all-zero image)."""
        from diffusers.models.embeddings import ImageProjection

        if self.style is None:
            raise ValueError("no IP-Adapter loaded: call load_ip_adapter first")
        enc = self.style.image_encoder
        pixels = self.style.feature_extractor(image.convert("RGB"), return_tensors="pt")
        pixels = pixels.pixel_values.to(self.device, next(enc.parameters()).dtype)
        layer = self._ip_projection.image_projection_layers[0]
        if isinstance(layer, ImageProjection):
            pos = enc(pixels).image_embeds
            neg = torch.zeros_like(pos)
        else:
            pos = enc(pixels, output_hidden_states=True).hidden_states[-2]
            neg = enc(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        # (1, …) → (n, 1, …): one reference image for every row of the batch.
        pos = pos[None].repeat_interleave(n, dim=0).to(self.dtype)
        neg = neg[None].repeat_interleave(n, dim=0).to(self.dtype)
        return pos, (neg if cfg else None)

    # -- building blocks ---------------------------------------------------------------------
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        tok = self.c.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.c.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        ids = tok.input_ids.to(self.device)
        return self.c.text_encoder(ids)[0].to(self.dtype)

    def conditioning(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked-image latents and the latent-resolution mask (SD-inpainting's extra inputs)."""
        masked = image * (mask < 0.5).to(image.dtype)
        masked_latents = self.codec.encode(masked)
        mask_lat = nn.functional.interpolate(mask, size=masked_latents.shape[-2:], mode="nearest")
        return {"masked_latents": masked_latents, "mask_latents": mask_lat}

    def model_output(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: dict[str, torch.Tensor],
        embeds: torch.Tensor,
        control: torch.Tensor | None,
        *,
        guidance_scale: float = 1.0,
        negative_embeds: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
        controlnet: nn.Module | None = None,
        image_embeds: torch.Tensor | None = None,
        negative_image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's raw output at x_t (ControlNet residuals added; CFG when guidance > 1).

        controlnet: override (e.g. a model being fine-tuned); control=None runs the UNet alone.
        image_embeds: a style reference's embeddings (encode_style; the IP-Adapter must be
        switched on), with `negative_image_embeds` for the unconditional branch under CFG. As in
        diffusers, only the UNet sees them, not the ControlNet."""
        cfg = guidance_scale > 1.0 and negative_embeds is not None
        xin, ml, mm = x, cond["masked_latents"], cond["mask_latents"]
        if cfg:
            xin, ml, mm = torch.cat([x, x]), torch.cat([ml, ml]), torch.cat([mm, mm])
            embeds = torch.cat([negative_embeds, embeds])
            control = torch.cat([control, control]) if control is not None else None
            if image_embeds is not None:
                image_embeds = torch.cat([negative_image_embeds, image_embeds])
        xin = self.c.scheduler.scale_model_input(xin, t)
        kwargs = {}
        net = controlnet if controlnet is not None else self.c.controlnet
        if net is not None and control is not None:
            down, mid = net(
                xin,
                t,
                encoder_hidden_states=embeds,
                controlnet_cond=control,
                conditioning_scale=conditioning_scale,
                return_dict=False,
            )
            kwargs = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        if image_embeds is not None:
            kwargs["added_cond_kwargs"] = {"image_embeds": [image_embeds]}
        out = self.c.unet(
            torch.cat([xin, mm.to(xin.dtype), ml.to(xin.dtype)], dim=1),
            t,
            encoder_hidden_states=embeds,
            **kwargs,
        ).sample
        if cfg:
            uncond, condn = out.chunk(2)
            out = uncond + guidance_scale * (condn - uncond)
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(latents).clamp(-1, 1)

    def initial_noise(self, seeds: Sequence[int], size: int) -> torch.Tensor:
        """One CPU generator per image: noise depends on the seed only, not on the batch."""
        down = size // self.latent_size_divisor()
        shape = (self.latent_channels, down, down)
        noise = [
            torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds
        ]
        return torch.stack(noise).to(self.device, self.dtype)

    def latent_size_divisor(self) -> int:
        vae = self.c.vae
        if isinstance(vae, PixelUnshuffleCodec):
            return vae.config.factor
        return 2 ** (len(vae.config.block_out_channels) - 1)

    # -- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        tensors: dict[str, torch.Tensor],
        prompts: Sequence[str],
        negative_prompts: Sequence[str],
        seeds: Sequence[int],
        config: SampleConfig,
        *,
        style_image: Image.Image | None = None,
    ) -> torch.Tensor:
        """DDIM from pure noise; returns decoded images in [-1, 1] (before paste-back)."""
        t_ = {k: v.to(self.device, self.dtype) for k, v in tensors.items()}
        size = t_["image"].shape[-1]
        cond = self.conditioning(t_["image"], t_["mask"])
        embeds = self.encode_prompt(prompts)
        cfg = config.guidance_scale > 1
        negative = self.encode_prompt(negative_prompts) if cfg else None
        image_embeds = negative_image_embeds = None
        if style_image is not None:
            image_embeds, negative_image_embeds = self.encode_style(
                style_image, len(prompts), cfg=cfg
            )
            self.set_ip_adapter_scale(config.ip_adapter_scale)
        sched = self.c.scheduler
        sched.set_timesteps(config.steps, device=self.device)
        x = self.initial_noise(seeds, size) * sched.init_noise_sigma
        self._use_ip_adapter(style_image is not None)
        try:
            for t in sched.timesteps:
                out = self.model_output(
                    x,
                    t,
                    cond,
                    embeds,
                    t_["control"],
                    guidance_scale=config.guidance_scale,
                    negative_embeds=negative,
                    conditioning_scale=config.controlnet_conditioning_scale,
                    image_embeds=image_embeds,
                    negative_image_embeds=negative_image_embeds,
                )
                x = sched.step(out, t, x, eta=config.eta).prev_sample
        finally:
            self._use_ip_adapter(False)
        return self.decode(x)

    def prepare(self, product: Image.Image, config: SampleConfig, box=None):
        return processing.prepare(
            product,
            config.size,
            scale=config.product_scale,
            anchor=config.anchor,
            bottom_margin=config.bottom_margin,
            box=box,
            mask_dilation=config.mask_dilation,
            canny_low=config.canny_low,
            canny_high=config.canny_high,
        )

    def generate(
        self,
        products: Sequence[Image.Image],
        prompts: Sequence[str],
        negative_prompts: Sequence[str],
        seeds: Sequence[int],
        config: SampleConfig,
        *,
        boxes: Sequence[processing.Box | None] | None = None,
        backend: str = "rfstudio",
        style_image: Image.Image | None = None,
    ) -> list[Generated]:
        """One image per (product, prompt, negative prompt, seed) row, in batches.

        style_image: one style reference for every row (needs load_ip_adapter)."""
        n = len(products)
        if not (len(prompts) == len(negative_prompts) == len(seeds) == n):
            raise ValueError("products, prompts, negative_prompts and seeds differ in length")
        if style_image is not None and self.style is None:
            raise ValueError("a style reference needs an IP-Adapter (load_ip_adapter)")
        if self.native_size and config.size != self.native_size:
            raise ValueError(f"this model generates {self.native_size} px canvases")
        boxes = list(boxes) if boxes is not None else [None] * n
        prepared = [self.prepare(p, config, b) for p, b in zip(products, boxes, strict=True)]
        results: list[Generated] = []
        for i in range(0, n, config.batch_size):
            rows = slice(i, i + config.batch_size)
            batch = prepared[rows]
            if backend == "diffusers":
                raw = self._reference_sample(batch, prompts[rows], negative_prompts[rows],
                                             seeds[rows], config, style_image)  # fmt: skip
            else:
                images = self.sample(
                    prepared_tensors(batch), prompts[rows], negative_prompts[rows], seeds[rows],
                    config, style_image=style_image,
                )  # fmt: skip
                raw = to_uint8(images)
            for j, prep in enumerate(batch):
                results.append(
                    Generated(
                        image=processing.paste_back(raw[j], prep.placed),
                        raw=raw[j],
                        prepared=prep,
                        prompt=prompts[i + j],
                        negative_prompt=negative_prompts[i + j],
                        seed=int(seeds[i + j]),
                    )
                )
        return results

    # -- the reference diffusers pipeline ----------------------------------------------------
    def reference_pipeline(self):
        """diffusers' StableDiffusionControlNetInpaintPipeline over these components
        (AutoencoderKL codecs only: the diffusers pipeline assumes a VAE), with the IP-Adapter's
        image encoder and feature extractor when one is loaded."""
        from diffusers import StableDiffusionControlNetInpaintPipeline

        if isinstance(self.c.vae, PixelUnshuffleCodec):
            raise ValueError("the diffusers reference pipeline needs an AutoencoderKL codec")
        return StableDiffusionControlNetInpaintPipeline(
            vae=self.c.vae,
            text_encoder=self.c.text_encoder,
            tokenizer=self.c.tokenizer,
            unet=self.c.unet,
            controlnet=self.c.controlnet,
            scheduler=self.c.scheduler,
            safety_checker=None,
            feature_extractor=self.style.feature_extractor if self.style else None,
            image_encoder=self.style.image_encoder if self.style else None,
            requires_safety_checker=False,
        )

    def _reference_sample(
        self, batch, prompts, negative_prompts, seeds, config, style_image=None
    ) -> np.ndarray:
        pipe = self.reference_pipeline()
        pipe.set_progress_bar_config(disable=True)
        style = {}
        self._use_ip_adapter(style_image is not None)
        try:
            if style_image is not None:
                # diffusers encodes one image per adapter with batch 1; asking for len(batch)
                # "images per prompt" gives one embedding row per prompt (negatives first).
                style["ip_adapter_image_embeds"] = pipe.prepare_ip_adapter_image_embeds(
                    style_image.convert("RGB"), None, self.device, len(batch),
                    config.guidance_scale > 1,
                )  # fmt: skip
                pipe.set_ip_adapter_scale(config.ip_adapter_scale)
            return self._reference_call(pipe, batch, prompts, negative_prompts, seeds, config,
                                        style)  # fmt: skip
        finally:
            self._use_ip_adapter(False)

    def _reference_call(self, pipe, batch, prompts, negative_prompts, seeds, config, style):
        out = pipe(
            prompt=list(prompts),
            negative_prompt=list(negative_prompts),
            image=[Image.fromarray(p.image) for p in batch],
            mask_image=[Image.fromarray(p.mask) for p in batch],
            control_image=[Image.fromarray(p.control) for p in batch],
            height=config.size,
            width=config.size,
            num_inference_steps=config.steps,
            guidance_scale=config.guidance_scale,
            controlnet_conditioning_scale=config.controlnet_conditioning_scale,
            eta=config.eta,
            strength=1.0,
            generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds],
            output_type="np",
            **style,
        )
        return (np.clip(out.images, 0, 1) * 255 + 0.5).astype(np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H, W, 3) uint8."""
    arr = ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)
    return arr.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def num_parameters(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0
