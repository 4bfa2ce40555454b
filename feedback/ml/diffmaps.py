"""Differentiable torch twins of RFNet's image maps (feedback/ml/maps.py + preprocess.py).

Reward fine-tuning back-propagates RFNet's verdict into the generator, so every RFNet input that
depends on the generated image has to be a torch function of it: the resized image, its Sobel
edges and its spectral-residual saliency. They follow the numpy versions step by step (same
grey weights, blur, kernels, edge padding, 64-px saliency work size, scaling), so RFNet sees at
fine-tuning time what it sees at serving time (tests compare both). The maps that only depend on
the product (cut-out, placement mask, product edges) are computed once by the numpy code itself:
the placement is known, nothing has to be detected.

All functions take float tensors in [0, 1], (B, C, H, W) or (B, H, W), and are safe to
differentiate everywhere (no sqrt/abs/angle at 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, H, W) luminance."""
    w = rgb.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (rgb[:, :3] * w).sum(1)


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing when shrinking (as PIL's BILINEAR does)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    squeeze = x.ndim == 3
    x4 = x[:, None] if squeeze else x
    out = F.interpolate(x4, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0] if squeeze else out


def _conv1d(x: torch.Tensor, k: torch.Tensor, axis: int) -> torch.Tensor:
    """(B, H, W) same-size correlation with edge padding along axis 0 (rows) or 1 (columns),
    exactly maps._conv1d."""
    r = len(k) // 2
    x4 = x[:, None]
    if axis == 1:
        x4 = F.pad(x4, (r, r, 0, 0), mode="replicate")
        w = k.view(1, 1, 1, -1)
    else:
        x4 = F.pad(x4, (0, 0, r, r), mode="replicate")
        w = k.view(1, 1, -1, 1)
    return F.conv2d(x4, w.to(x.dtype))[:, 0]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    return _conv1d(_conv1d(x, k, 0), k, 1)


def sobel_edges(gray: torch.Tensor, blur_sigma: float = 0.7, eps: float = 1e-8) -> torch.Tensor:
    """maps.sobel_edges: light blur, Sobel magnitude / 2, clipped to [0, 1]."""
    g = gaussian_blur(gray, blur_sigma)
    smooth = torch.tensor([1.0, 2.0, 1.0], device=g.device)
    diff = torch.tensor([-1.0, 0.0, 1.0], device=g.device)
    gx = _conv1d(_conv1d(g, diff, 1), smooth, 0)
    gy = _conv1d(_conv1d(g, diff, 0), smooth, 1)
    mag = torch.sqrt(gx**2 + gy**2 + eps)
    return (mag / 2.0).clamp(0.0, 1.0)


def spectral_residual_saliency(gray: torch.Tensor, work_size: int = 64) -> torch.Tensor:
    """maps.spectral_residual_saliency (Hou & Zhang 2007), per image scaled to [0, 1]."""
    h, w = gray.shape[-2:]
    small = resize(gray.clamp(0, 1), work_size).float()
    f = torch.fft.fft2(small)
    amp = torch.sqrt(f.real**2 + f.imag**2 + 1e-12)
    floor = 1e-2 * amp.mean(dim=(-2, -1), keepdim=True) + 1e-8
    log_amp = torch.log(amp + floor)
    box = torch.full((3,), 1.0 / 3.0, device=gray.device)
    residual = log_amp - _conv1d(_conv1d(log_amp, box, 0), box, 1)
    # exp(residual + i·phase) = exp(residual) · f / |f|: no angle() (undefined gradient at 0).
    spectrum = torch.exp(residual) * (f / amp)
    sal = torch.fft.ifft2(spectrum)
    sal = sal.real**2 + sal.imag**2
    sal = gaussian_blur(sal, sigma=work_size / 32.0)
    lo = sal.amin(dim=(-2, -1), keepdim=True)
    hi = sal.amax(dim=(-2, -1), keepdim=True)
    sal = (sal - lo) / (hi - lo).clamp_min(1e-12)
    return resize(sal, (h, w)).clamp(0.0, 1.0)


def image_maps(images: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Generated images (B, 3, H, W) in [0, 1] → RFNet's image-dependent inputs at `size`:
    {"image": (B, 3, S, S), "edges0": (B, 1, S, S), "saliency": (B, 1, S, S)} (float, [0, 1])."""
    image = resize(images.float(), size).clamp(0, 1)
    gray = to_gray(image)
    return {
        "image": image,
        "edges0": sobel_edges(gray)[:, None],
        "saliency": spectral_residual_saliency(gray)[:, None],
    }
