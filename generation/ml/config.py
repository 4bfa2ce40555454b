"""Configuration dataclasses of the generation pipeline; JSON round-trippable (saved beside the
weights as `rfstudio_pipeline.json`, loadable without Django).

`DiffusionConfig` describes the composed model (codec + inpainting UNet + Canny ControlNet + text
encoder + scheduler) a preset builds from scratch; `SampleConfig` one generation call's sampling
and pre-processing. Real SD-1.5 folders carry their own diffusers configs: only `SampleConfig`
applies to them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CONFIG_NAME = "rfstudio_pipeline.json"
CODECS = ("pixel_unshuffle", "autoencoder_kl")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass
class DiffusionConfig:
    size: int = 32  # canvas side (px) the model is trained and sampled at
    # "pixel_unshuffle": lossless space-to-depth stand-in for a VAE (nothing to train, exact
    # decode); "autoencoder_kl": a diffusers AutoencoderKL (SD-1.5's codec at full size).
    codec: str = "pixel_unshuffle"
    unshuffle_factor: int = 2  # pixel_unshuffle: latent = 3·f² channels at size / f
    vae_block_out_channels: list[int] = field(default_factory=lambda: [32, 64])  # autoencoder_kl
    vae_latent_channels: int = 4  # autoencoder_kl
    vae_scaling_factor: float = 0.18215  # autoencoder_kl (SD-1.5's value)
    # Inpainting UNet (in_channels = 2·latent + 1: noisy latents, mask, masked-image latents).
    unet_block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    unet_down_block_types: list[str] = field(
        default_factory=lambda: ["DownBlock2D", "CrossAttnDownBlock2D"]
    )
    unet_up_block_types: list[str] = field(
        default_factory=lambda: ["CrossAttnUpBlock2D", "UpBlock2D"]
    )
    layers_per_block: int = 1
    attention_head_dim: int = 4  # diffusers' historical name: the number of attention heads
    norm_num_groups: int = 8
    # ControlNet (same encoder shape as the UNet); its condition embedding downsamples the
    # canvas-size Canny map by 2^(len - 1), which must equal the codec's downsampling.
    controlnet_conditioning_channels: list[int] = field(default_factory=lambda: [16, 32])
    # Text encoder: a CLIPTextModel of this size with a word-piece CLIPTokenizer built here.
    text_hidden_size: int = 32
    text_layers: int = 2
    text_heads: int = 2
    text_max_length: int = 77
    # Scheduler (DDIM): zero-terminal-SNR betas + trailing timesteps so the last training step is
    # pure noise (what sampling starts from). x0-prediction ("sample"): an undertrained tiny model
    # then paints smooth, blurry scenes instead of the colour noise v-prediction left after the
    # same 20 CPU minutes (bench/RESULTS.md, "Generation: tiny base training").
    prediction_type: str = "sample"
    rescale_betas_zero_snr: bool = True
    timestep_spacing: str = "trailing"
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_train_timesteps: int = 1000

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}")
        if len(self.unet_block_out_channels) != len(self.unet_down_block_types):
            raise ValueError("unet_block_out_channels and unet_down_block_types differ in length")
        down = 2 ** (len(self.controlnet_conditioning_channels) - 1)
        if down != self.downsample:
            raise ValueError(
                f"controlnet_conditioning_channels downsample by {down}, the codec by "
                f"{self.downsample}: give {int.bit_length(self.downsample)} entries"
            )
        if self.size % (self.downsample * 2 ** (len(self.unet_block_out_channels) - 1)):
            raise ValueError("size must be divisible by the codec and UNet downsampling")

    @property
    def downsample(self) -> int:
        if self.codec == "pixel_unshuffle":
            return self.unshuffle_factor
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        if self.codec == "pixel_unshuffle":
            return 3 * self.unshuffle_factor**2
        return self.vae_latent_channels

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class SampleConfig:
    size: int = 512  # output canvas side (px); tiny models are sampled at their own size
    steps: int = 40  # DDIM steps (the reference: 40)
    guidance_scale: float = 7.5  # classifier-free guidance (the reference: 7.5)
    controlnet_conditioning_scale: float = 1.0
    eta: float = 0.0  # DDIM eta; 0 = deterministic given the initial noise
    # Placement: the cut-out's tight box is scaled so its longer side is `product_scale` of the
    # canvas, then centred horizontally; `anchor` "center" centres it vertically too, "bottom"
    # stands it on a line `bottom_margin` of the canvas above the lower edge.
    product_scale: float = 0.74
    anchor: str = "center"
    bottom_margin: float = 0.08
    mask_dilation: float = 0.01  # dilation radius of the inpaint mask, fraction of the canvas
    canny_low: int = 100  # cv2.Canny thresholds (ControlNet v1.1 Canny's defaults)
    canny_high: int = 200
    batch_size: int = 4  # images per forward pass
    # Weight of a style reference's IP-Adapter tokens against the text's (diffusers'
    # set_ip_adapter_scale); IP-Adapter's authors suggest ~0.5 when a text prompt is also given.
    # Unused without a style reference.
    ip_adapter_scale: float = 0.5

    def __post_init__(self) -> None:
        if not 0.05 <= self.product_scale <= 1.0:
            raise ValueError("product_scale must be in [0.05, 1]")
        if self.anchor not in ("center", "bottom"):
            raise ValueError("anchor must be 'center' or 'bottom'")
        if self.steps < 1 or self.size < 8 or self.batch_size < 1:
            raise ValueError("steps, size and batch_size must be positive (size >= 8)")
        if not 0.0 <= self.ip_adapter_scale <= 2.0:
            raise ValueError("ip_adapter_scale must be in [0, 2]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


PRESETS: dict[str, dict[str, Any]] = {
    # ~1M-parameter UNet (+0.5M ControlNet) at 32 px (16×16×12 latents): CPU-trainable.
    "tiny": {},
    # 64 px, pixel-unshuffle by 4 (16×16×48 latents): same compute, sharper canvas.
    "small": {
        "size": 64,
        "unshuffle_factor": 4,
        "controlnet_conditioning_channels": [16, 32, 64],
        "unet_block_out_channels": [48, 96],
    },
    # SD-1.5-size configs (random weights): for GPU benchmarks of the real-size pipeline.
    "sd15": {
        "size": 512,
        "codec": "autoencoder_kl",
        "vae_block_out_channels": [128, 256, 512, 512],
        "vae_latent_channels": 4,
        "unet_block_out_channels": [320, 640, 1280, 1280],
        "unet_down_block_types": [
            "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D",
        ],
        "unet_up_block_types": [
            "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
        ],
        "layers_per_block": 2,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "controlnet_conditioning_channels": [16, 32, 96, 256],
        "text_hidden_size": 768,
        "text_layers": 12,
        "text_heads": 12,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "timestep_spacing": "leading",
    },
}  # fmt: skip


def preset(name: str, **overrides: Any) -> DiffusionConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return DiffusionConfig(**{**PRESETS[name], **overrides})
