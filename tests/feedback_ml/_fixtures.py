import numpy as np
import pytest
from PIL import Image

from feedback.ml.data import Sample


def _write_pair(root, i, rng, size=40):
    """A random 'creative' (background + a product rectangle) and its RGBA cut-out."""
    bg = rng.integers(0, 255, 3)
    creative = np.zeros((size, size, 3), np.uint8) + bg.astype(np.uint8)
    x0, y0 = rng.integers(2, size // 2, 2)
    w = int(rng.integers(6, size // 2))
    colour = rng.integers(0, 255, 3).astype(np.uint8)
    creative[y0 : y0 + w, x0 : x0 + w] = colour
    product = np.zeros((w, w, 4), np.uint8)
    product[..., :3] = colour
    product[..., 3] = 255
    cp, pp = root / f"c{i}.png", root / f"p{i}.png"
    Image.fromarray(creative).save(cp)
    Image.fromarray(product, "RGBA").save(pp)
    return cp, pp, (int(x0), int(y0), int(x0 + w), int(y0 + w))


@pytest.fixture(scope="session")
def random_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("rfnet_imgs")
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        cp, pp, box = _write_pair(root, i, rng)
        out.append(
            Sample(
                str(cp),
                str(pp),
                label=i % 6,
                caption=f"product number {i % 7}",
                group=f"SKU-{i % 7}",
                placement=box,
            )
        )
    return out
