"""RFFT fixtures: generation's tiny pipeline registered as a diffusion model, a tiny RFNet
registered as the active reward, products with cut-outs; real worker processes."""

from __future__ import annotations

import pytest

from tests.feedback.conftest import (  # noqa: F401  (fixtures)
    register,
    rf1m_schema,
    tiny_checkpoint,
)


@pytest.fixture
def tiny_base(settings, tmp_path):
    """generation's `tiny` preset (random weights, ControlNet with an effect) registered."""
    import torch

    from generation.ml.config import preset
    from generation.ml.pipeline import build_components, save_components
    from generation.registry import register_diffusion_model

    comps = build_components(preset("tiny"), seed=0)
    with torch.no_grad():
        for block in [
            *comps.controlnet.controlnet_down_blocks,
            comps.controlnet.controlnet_mid_block,
        ]:
            block.weight.normal_(0, 0.05)
    path = save_components(comps, tmp_path / "models" / "tiny-base")
    return register_diffusion_model(name="tiny-base", path=path)


@pytest.fixture
def products(db):
    from tests.factories import make_product

    return [make_product(sku=f"RF-{i}", size=(24, 16)) for i in range(2)]
