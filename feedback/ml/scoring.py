"""Standalone scoring with a saved RFNet (usable outside Django)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .data import Sample, sample_arrays
from .model import RFNet
from .training import resolve_device


class Scorer:
    def __init__(self, model: RFNet, device: str | None = None) -> None:
        self.device = torch.device(resolve_device(device))
        self.model = model.to(self.device).eval()
        self.config = model.config
        self._depth = None

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | None = None) -> Scorer:
        return cls(RFNet.from_pretrained(Path(directory)), device=device)

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    def _depth_maps(self, samples: Sequence[Sample]) -> list[np.ndarray | None]:
        if "depth" not in self.config.modalities:
            return [None] * len(samples)
        from PIL import Image

        from .maps import DepthEstimator

        if self._depth is None:
            self._depth = DepthEstimator(self.config.depth_model_path, device=str(self.device))
        size = self.config.image_size
        maps = self._depth.predict(
            [Image.open(s.creative_path).convert("RGB") for s in samples], size
        )
        return [np.clip(np.rint(m * 255), 0, 255).astype(np.uint8)[None] for m in maps]

    def batch_tensors(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        depths = self._depth_maps(samples)
        arrays = [
            sample_arrays(s, self.config.image_size, d)
            for s, d in zip(samples, depths, strict=True)
        ]
        batch = {
            m: torch.from_numpy(np.stack([a[m] for a in arrays]))
            for m in self.config.image_modalities
        }
        batch.update(self.model.tokenize([s.caption for s in samples]))
        return batch

    @property
    def calibration(self) -> dict | None:
        return self.model.calibration

    @torch.no_grad()
    def score_detailed(
        self, samples: Sequence[Sample], batch_size: int = 32
    ) -> dict[str, np.ndarray]:
        """{"probs": [N, C] calibrated class probabilities, "p_available": [N] calibrated
        P(available) (= probs[:, available_index]), "logits": [N, C] raw}.

        The auxiliary binary head is a training signal only: it is not a second P(available)."""
        probs, logits = [], []
        for start in range(0, len(samples), batch_size):
            batch = self.batch_tensors(samples[start : start + batch_size])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out = self.model(batch, return_dict=True)
            z = out["logits"].float()
            logits.append(z.cpu().numpy())
            probs.append(self.model.calibrated_probs(z).cpu().numpy())
        c = self.config.num_classes
        probs_arr = np.concatenate(probs) if probs else np.zeros((0, c), np.float32)
        return {
            "probs": probs_arr,
            "p_available": probs_arr[:, self.config.available_index].copy(),
            "logits": np.concatenate(logits) if logits else np.zeros((0, c), np.float32),
        }

    def score(self, samples: Sequence[Sample], batch_size: int = 32) -> np.ndarray:
        """Calibrated class probabilities [N, C] in config.class_names order."""
        return self.score_detailed(samples, batch_size)["probs"]
