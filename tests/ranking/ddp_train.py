"""Run by test_ml.py under `accelerate launch --cpu --num_processes 2` (no Django): trains the toy
ranker and encoder with both processes and writes, per rank, what the test compares."""

import hashlib
import json
import sys
from pathlib import Path

import torch

from ranking.ml.config import EncoderConfig, RankerConfig
from ranking.ml.encoder import train_encoder
from ranking.ml.training import train_ranker
from tests.ranking.test_ml import _toy_images, _toy_lists


def digest(module) -> str:
    """Of the weights (BatchNorm running statistics are per process; rank 0's are saved)."""
    h = hashlib.sha256()
    for k, v in sorted(module.named_parameters()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    config = RankerConfig(
        segment_features=["s0", "s1"],
        product_features=["p"],
        creative_features=["f0", "f1"],
        hidden=[16, 8],
        stage1_hidden=[8],
        jac_buckets=64,
    )
    ranker = train_ranker(
        _toy_lists(60), config, epochs=2, batch_size=16, lr=1e-2, checkpoint_dir=out / "ranker"
    )
    images, groups = _toy_images()
    enc_config = EncoderConfig(
        image_size=32, widths=[8, 16], embed_dim=16, proj_dim=8, hidden_dim=16
    )
    encoder = train_encoder(images, groups, enc_config, steps=3, batch_size=4)
    rank = torch.distributed.get_rank()
    (out / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "world": torch.distributed.get_world_size(),
                "main": ranker.is_main_process,
                "steps": ranker.steps,
                "history": ranker.history,
                "ranker": digest(ranker.model),
                "encoder": digest(encoder.encoder),
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
