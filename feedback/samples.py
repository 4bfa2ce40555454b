"""Turn creatives and dataset rows into feedback.ml Samples (the only Django → ML bridge)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from annotation.models import DatasetItem
from generation.models import Creative
from generation.storage import local_path

from .ml.data import Sample


def file_path(field_file) -> str | None:
    """Local path of a stored file, or None when it is missing (nothing to score). Remote storage
    (S3) is read through the storage API into a content-addressed local cache: the ML code
    decodes local files (generation.storage)."""
    if not field_file or not field_file.name:
        return None
    return local_path(field_file.name, storage=field_file.storage)


def placement_of(creative: Creative):
    """The product's box in the creative, (x0, y0, x1, y1) in creative pixels, if recorded."""
    params = creative.params or {}
    box = params.get("placement") or params.get("bbox") or params.get("box")
    if isinstance(box, dict):
        keys = ("x0", "y0", "x1", "y1")
        box = [box.get(k) for k in keys] if all(k in box for k in keys) else None
    if isinstance(box, list | tuple) and len(box) == 4:
        try:
            return tuple(float(v) for v in box)
        except (TypeError, ValueError):
            return None
    return None


def creative_sample(creative: Creative, label: int | None = None) -> Sample | None:
    image = file_path(creative.image)
    product = file_path(creative.product.image)
    if image is None or product is None:
        return None
    return Sample(
        creative_path=image,
        product_path=product,
        label=label,
        caption=creative.product.title or "",
        group=creative.product.sku,
        placement=placement_of(creative),
    )


def creative_samples(creatives: Iterable[Creative]) -> tuple[list[int], list[Sample], list[int]]:
    """(creative ids, samples, ids skipped because a file is missing)."""
    ids, samples, missing = [], [], []
    for creative in creatives:
        sample = creative_sample(creative)
        if sample is None:
            missing.append(creative.pk)
        else:
            ids.append(creative.pk)
            samples.append(sample)
    return ids, samples, missing


def dataset_rows(version, splits: Sequence[str] | None = None) -> list[DatasetItem]:
    rows = DatasetItem.objects.filter(version=version).select_related("creative__product")
    if splits:
        rows = rows.filter(split__in=list(splits))
    return list(rows.order_by("id"))


def row_samples(
    rows: Sequence[DatasetItem], class_names: Sequence[str]
) -> tuple[list[DatasetItem], list[Sample]]:
    """Labelled samples for dataset rows; rows whose label is not a class of the model, or whose
    files are missing, are left out (the caller reports the counts)."""
    index = {slug: i for i, slug in enumerate(class_names)}
    kept, samples = [], []
    for row in rows:
        if row.label not in index:
            continue
        sample = creative_sample(row.creative, label=index[row.label])
        if sample is not None:
            kept.append(row)
            samples.append(sample)
    return kept, samples
