"""A Faiss index per encoder version: the one saved beside its weights at training time, rebuilt
from stored embeddings once more creatives were embedded; cached per process (keyed by encoder
and embedding count)."""

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
    from .ml.encoder import load_index

    saved = load_index(encoder.checkpoint_path) if encoder.checkpoint else None
    if saved is not None and len(saved[0]) == count:  # nothing embedded since training
        with _LOCK:
            _CACHE[_key(encoder)] = (count, *saved)
        return saved
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
