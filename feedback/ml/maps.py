"""Auxiliary maps computed locally (numpy only, no downloads): masks, edges, saliency, depth.

All maps are float32 in [0, 1], shape (H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/float → (H, W) float32 luminance in [0, 1]."""
    x = rgb.astype(np.float32)
    if x.max(initial=0.0) > 1.0:
        x = x / 255.0
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _conv1d(x: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    """Same-size separable convolution along one axis with edge padding."""
    r = len(k) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = np.pad(x, pad, mode="edge")
    out = np.zeros_like(x, dtype=np.float32)
    n = x.shape[axis]
    for i, w in enumerate(k):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(i, i + n)
        out += w * xp[tuple(sl)]
    return out


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return x.astype(np.float32)
    r = max(1, int(round(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    return _conv1d(_conv1d(x.astype(np.float32), k, 0), k, 1)


def sobel_edges(gray: np.ndarray, blur_sigma: float = 0.7) -> np.ndarray:
    """Sobel gradient magnitude (light Gaussian pre-blur, Canny-like), scaled to [0, 1].

    Scaled by a fixed constant (not the image maximum) so a flat image gives 0 everywhere and
    edge strength stays comparable between images: a full black→white step gives 1.
    """
    g = gaussian_blur(gray.astype(np.float32), blur_sigma)
    smooth = np.array([1.0, 2.0, 1.0], dtype=np.float32)
    diff = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    gx = _conv1d(_conv1d(g, diff, 1), smooth, 0)
    gy = _conv1d(_conv1d(g, diff, 0), smooth, 1)
    mag = np.sqrt(gx**2 + gy**2)
    return np.clip(mag / 2.0, 0.0, 1.0).astype(np.float32)


def spectral_residual_saliency(gray: np.ndarray, work_size: int = 64) -> np.ndarray:
    """Hou & Zhang (2007) spectral-residual saliency, resized back and scaled to [0, 1]."""
    h, w = gray.shape
    small = (
        np.asarray(
            Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).resize(
                (work_size, work_size), Image.BILINEAR
            ),
            dtype=np.float32,
        )
        / 255.0
    )
    f = np.fft.fft2(small)
    amp = np.abs(f)
    # Relative floor: exactly-zero bins (flat synthetic images) would dominate as log(0).
    log_amp = np.log(amp + 1e-2 * amp.mean() + 1e-8)
    phase = np.angle(f)
    avg = _conv1d(_conv1d(log_amp, np.ones(3, np.float32) / 3, 0), np.ones(3, np.float32) / 3, 1)
    residual = log_amp - avg
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = gaussian_blur(sal.astype(np.float32), sigma=work_size / 32.0)
    lo, hi = float(sal.min()), float(sal.max())
    sal = (sal - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(sal)
    out = Image.fromarray(sal.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def alpha_mask(rgba: np.ndarray) -> np.ndarray:
    """Cut-out alpha channel as a [0, 1] mask (opaque images give all ones)."""
    if rgba.ndim == 3 and rgba.shape[2] == 4:
        return rgba[..., 3].astype(np.float32) / 255.0
    return np.ones(rgba.shape[:2], dtype=np.float32)


def _cropped_cutout(product: Image.Image) -> Image.Image:
    """The RGBA cut-out cropped to its opaque (alpha >= 128) bounding box."""
    rgba = product.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda v: 255 if v >= 128 else 0).getbbox()
    return rgba.crop(bbox) if bbox else rgba


def _check_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    if len(box) != 4:
        raise ValueError(f"placement box must be (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return x0, y0, x1, y1


def placed_product(
    product: Image.Image, box: Sequence[float], canvas_size: tuple[int, int]
) -> Image.Image:
    """The cut-out (RGBA) pasted into `box` on a transparent canvas of the creative's size:
    what the product should look like where it was placed."""
    x0, y0, x1, y1 = _check_box(box)
    canvas = Image.new("RGBA", canvas_size, (0, 0, 0, 0))
    if x1 > x0 and y1 > y0:
        canvas.paste(_cropped_cutout(product).resize((x1 - x0, y1 - y0), Image.BILINEAR), (x0, y0))
    return canvas


def placement_mask(
    product: Image.Image, box: Sequence[float], canvas_size: tuple[int, int]
) -> np.ndarray:
    """Where the product was placed in the creative: its silhouette pasted into `box`.

    box = (x0, y0, x1, y1) in creative pixels: the bounding box of the product's opaque pixels
    as placed (it may extend past the frame when the product is cut off). The cut-out is cropped
    to its own opaque bounding box first, so padded and tight cut-outs give the same mask.
    canvas_size = (width, height) of the creative. Returns (height, width) in [0, 1].
    """
    _check_box(box)
    alpha = placed_product(product, box, canvas_size).getchannel("A")
    return np.asarray(alpha, dtype=np.float32) / 255.0


class DepthEstimator:
    """Monocular depth from a LOCAL transformers depth model folder (e.g. DPT); never downloads."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.torch = torch
        self.device = device
        self.model = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True)
        self.model.eval().to(device)
        try:
            self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError):
            self.processor = None
        self.size = int(getattr(self.model.config, "image_size", 384) or 384)

    def _prepare(self, images: list[Image.Image]):
        if self.processor is not None:
            return self.processor(images=images, return_tensors="pt")["pixel_values"]
        arr = [
            np.asarray(im.convert("RGB").resize((self.size, self.size)), np.float32) / 255.0
            for im in images
        ]
        x = self.torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2)
        return (x - 0.5) / 0.5

    def predict(self, images: list[Image.Image], out_size: int) -> list[np.ndarray]:
        torch = self.torch
        with torch.no_grad():
            pv = self._prepare(images).to(self.device)
            depth = self.model(pixel_values=pv).predicted_depth  # (B, h, w)
            depth = torch.nn.functional.interpolate(
                depth[:, None].float(),
                size=(out_size, out_size),
                mode="bilinear",
                align_corners=False,
            )[:, 0]
        out = []
        for d in depth.cpu().numpy():
            lo, hi = float(d.min()), float(d.max())
            out.append(((d - lo) / (hi - lo)) if hi - lo > 1e-12 else np.zeros_like(d))
        return [o.astype(np.float32) for o in out]
