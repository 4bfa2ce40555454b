"""Writes of the ranking app (keyword-only; each owns its transaction).

Concurrency:
- Impression logs: see ranking.importing (ON CONFLICT per (day, segment, creative)).
- Features and embeddings are derived data keyed by (creative, extractor, version) and
  (encoder, creative): two jobs computing the same rows race harmlessly — the unique constraint
  keeps one row and the loser's INSERT updates it with the same values (`update_conflicts`).
- Model registration: the folder is copied beside its final place and renamed into place inside
  the transaction that creates the row; a retried job finds the model it registered (unique job);
  a name taken concurrently raises ValidationError (names are the user's, never renumbered).
- Preview lists: `store_preview` locks the segment row (SELECT … FOR UPDATE; the single writer
  lock on SQLite) and replaces that (segment, model)'s entries in one transaction, so two preview
  jobs for one segment serialise and readers see one complete list or the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from jobs.files import install_staged, staged_copy

from .models import CreativeEmbedding, CreativeFeatures, PreviewEntry, RankingModel, Segment

MODELS_SUBDIR = "ranking"


def store_features(*, extractor: str, version: str, rows: Iterable[tuple[int, dict, str]]) -> int:
    """rows: (creative_id, values, error). Returns how many rows were written."""
    objs = [
        CreativeFeatures(
            creative_id=cid, extractor=extractor, version=version, values=values, error=error
        )
        for cid, values, error in rows
    ]
    with transaction.atomic():
        CreativeFeatures.objects.bulk_create(
            objs,
            update_conflicts=True,
            unique_fields=["creative", "extractor", "version"],
            update_fields=["values", "error"],
        )
    return len(objs)


def store_embeddings(*, encoder: RankingModel, creative_ids: Sequence[int], vectors) -> int:
    vectors = np.asarray(vectors, np.float32)
    objs = [
        CreativeEmbedding(encoder=encoder, creative_id=cid, vector=vectors[i].tobytes())
        for i, cid in enumerate(creative_ids)
    ]
    with transaction.atomic():
        CreativeEmbedding.objects.bulk_create(
            objs,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["encoder", "creative"],
            update_fields=["vector"],
        )
    return len(objs)


def register_model(
    *,
    kind: str,
    name: str,
    source_dir: Path,
    config: dict,
    metrics: dict,
    job=None,
    created_by=None,
) -> RankingModel:
    if job is not None:
        existing = RankingModel.objects.filter(job=job).first()
        if existing is not None:
            return existing
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise ValidationError(f"Checkpoint folder {source_dir} does not exist.")
    root = Path(settings.RFSTUDIO_MODELS_DIR) / MODELS_SUBDIR
    with staged_copy(source_dir, root) as staging:
        try:
            with transaction.atomic():
                model = RankingModel.objects.create(
                    kind=kind,
                    name=name,
                    config=config,
                    metrics=metrics,
                    job=job,
                    created_by=created_by,
                )
                install_staged(staging, name)
                model.checkpoint = f"{MODELS_SUBDIR}/{name}"
                model.save(update_fields=["checkpoint"])
            return model
        except IntegrityError:
            if job is not None:
                existing = RankingModel.objects.filter(job=job).first()
                if existing is not None:
                    return existing
            raise ValidationError(f"A ranking model named {name!r} already exists.") from None


def update_metrics(*, model: RankingModel, metrics: dict) -> None:
    with transaction.atomic():
        locked = RankingModel.objects.select_for_update().get(pk=model.pk)
        locked.metrics = {**locked.metrics, **metrics}
        locked.save(update_fields=["metrics"])
    model.metrics = locked.metrics


def store_preview(*, segment: Segment, model: RankingModel, entries: list[dict], job=None) -> int:
    """Replace the ranked lists of (segment, model). entries: product_id, creative_id, rank,
    score, p_ctr, contributions."""
    with transaction.atomic():
        Segment.objects.select_for_update().filter(pk=segment.pk).first()
        PreviewEntry.objects.filter(segment=segment, model=model).delete()
        PreviewEntry.objects.bulk_create(
            [PreviewEntry(segment=segment, model=model, job=job, **e) for e in entries],
            batch_size=2000,
        )
    return len(entries)
