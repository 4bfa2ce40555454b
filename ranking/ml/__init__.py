"""Ranking ML: feature extractors, the contrastive creative encoder, the two-stage list-wise
ranker and its metrics. Plain torch/numpy, no Django; configs are JSON-round-trippable
dataclasses saved beside safetensors weights."""
