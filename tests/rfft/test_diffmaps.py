"""Differentiable maps match the numpy serving maps; the differentiable reward matches Scorer."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from feedback.ml import diffmaps, maps
from feedback.ml.data import Sample
from feedback.ml.scoring import Scorer
from feedback.rfft_reward import score_images
from tests.rfft._tiny import tiny_products, tiny_reward


def _image(seed=0, size=32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    im = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 255, 3).astype(np.uint8)
    im[8:20, 6:24] = rng.integers(0, 255, 3)
    im += rng.integers(0, 20, im.shape).astype(np.uint8)
    return im


def test_edges_and_saliency_match_numpy_and_have_finite_gradients():
    im = _image()
    gray_np = maps.to_gray(im)
    x = torch.from_numpy(im.astype(np.float32) / 255).permute(2, 0, 1)[None].requires_grad_(True)
    gray = diffmaps.to_gray(x)
    np.testing.assert_allclose(gray[0].detach().numpy(), gray_np, atol=1e-5)
    edges = diffmaps.sobel_edges(gray)
    np.testing.assert_allclose(edges[0].detach().numpy(), maps.sobel_edges(gray_np), atol=1e-3)
    sal = diffmaps.spectral_residual_saliency(gray)
    ref = maps.spectral_residual_saliency(gray_np)
    # The serving path quantises the grey image to uint8 before its 64-px resize (PIL); the
    # torch twin stays in float (differentiable), which moves the noise-level saliency a little.
    assert np.abs(sal[0].detach().numpy() - ref).mean() < 0.03
    assert np.corrcoef(sal[0].detach().numpy().ravel(), ref.ravel())[0, 1] > 0.8
    (edges.sum() + sal.sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # A flat image (the worst case for sqrt/abs at 0) still has finite gradients.
    flat = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)
    g = diffmaps.to_gray(flat)
    (diffmaps.sobel_edges(g).sum() + diffmaps.spectral_residual_saliency(g).sum()).backward()
    assert torch.isfinite(flat.grad).all()


def test_reward_reads_rfnet_as_the_serving_scorer_does(tmp_path):
    """Same creative, same placement: the differentiable reward's P(available) is the Scorer's."""
    reward = tiny_reward()
    products = tiny_products(3)
    images, samples, boxes = [], [], []
    for i, p in enumerate(products):
        im = Image.fromarray(_image(i))
        box = (8, 8, 24, 24)
        im.paste(p.resize((16, 16)), box[:2], p.resize((16, 16)))
        cp, pp = tmp_path / f"c{i}.png", tmp_path / f"p{i}.png"
        im.save(cp)
        p.save(pp)
        images.append(im)
        boxes.append(box)
        samples.append(Sample(str(cp), str(pp), caption="a product", placement=box))
    ours = score_images(reward, images, products, boxes, ["a product"] * 3)
    theirs = Scorer(reward.model, device="cpu").score_detailed(samples)["p_available"]
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
