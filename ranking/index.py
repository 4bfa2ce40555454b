"""A Faiss index per encoder version, built from stored embeddings and cached per process
(keyed by encoder id and embedding count, so new embeddings rebuild it)."""

from __future__ import annotations

import threading

import numpy as np

from .models import CreativeEmbedding

_CACHE: dict[tuple, tuple[int, list[int], object]] = {}
_LOCK = threading.Lock()


def encoder_index(encoder) -> tuple[list[int], object]:
    from .ml.encoder import build_index

    count = CreativeEmbedding.objects.filter(encoder=encoder).count()
    with _LOCK:
        hit = _CACHE.get(_key(encoder))
        if hit is not None and hit[0] == count:
            return hit[1], hit[2]
    rows = list(
        CreativeEmbedding.objects.filter(encoder=encoder)
        .order_by("creative_id")
        .values_list("creative_id", "vector")
    )
    ids = [cid for cid, _ in rows]
    dim = encoder.config.get("model", {}).get("embed_dim", 0)
    vectors = (
        np.stack([np.frombuffer(bytes(v), np.float32) for _, v in rows])
        if rows
        else np.zeros((0, dim or 1), np.float32)
    )
    index = build_index(vectors)
    with _LOCK:
        _CACHE[_key(encoder)] = (count, ids, index)
    return ids, index


def _key(encoder) -> tuple:
    return (encoder.pk, encoder.name, encoder.created_at.isoformat())
