"""Turn creatives and dataset rows into feedback.ml Samples (the only Django → ML bridge).

Files are read through Django's storage API (generation.storage.local_path), so S3 or any other
backend works: a remote file is copied once into a local cache (RFSTUDIO_CACHE_DIR/storage/; stored
names are content-addressed, so a name never changes content) and the ML code reads the local copy.
A file the storage does not have is counted as missing; the jobs fail past MAX_MISSING_FRACTION
instead of succeeding."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from annotation.models import DatasetItem
from generation.models import Creative
from generation.storage import local_path

from .ml.data import Sample

# Share of rows whose files are missing above which training and scoring jobs fail.
MAX_MISSING_FRACTION = 0.05


class MissingFiles(ValueError):
    pass


def check_missing(*, missing: int, total: int, what: str, limit: float | None = None) -> None:
    """Raise MissingFiles when more than `limit` of `total` rows lacked a file."""
    limit = MAX_MISSING_FRACTION if limit is None else limit
    if total and missing / total > limit:
        raise MissingFiles(
            f"{missing} of {total} {what} have a missing image file (more than {limit:.0%}); "
            "check the media storage."
        )


def file_path(field_file, storage=None) -> str | None:
    """Local path of a stored file, or None when it is missing. Remote storage (S3) is read
    through the storage API into a content-addressed local cache: the ML code decodes local files
    (generation.storage)."""
    if not field_file or not field_file.name:
        return None
    return local_path(field_file.name, storage=storage or field_file.storage)


def placement_of(creative: Creative):
    """The generator's *input* placement, (x0, y0, x1, y1) in creative pixels, if recorded.

    Only `params["placement"]` counts: what a generation pipeline knows before generating. The
    synthetic generator's `params["box"]` (the product's box after the defect was applied) is
    never read: it encodes the label. Without a placement the product is localised from the
    two images at preprocessing time (feedback/ml/localize.py)."""
    params = creative.params or {}
    box = params.get("placement")
    if isinstance(box, dict):
        keys = ("x0", "y0", "x1", "y1")
        box = [box.get(k) for k in keys] if all(k in box for k in keys) else None
    if isinstance(box, list | tuple) and len(box) == 4:
        try:
            values = tuple(float(v) for v in box)
        except (TypeError, ValueError):
            return None
        if values[2] > values[0] and values[3] > values[1]:
            return values
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
        group=creative.product.group_key,
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
    files are missing, are left out (see `row_samples_counted` for the counts)."""
    kept, samples, _ = row_samples_counted(rows, class_names)
    return kept, samples


def row_samples_counted(
    rows: Sequence[DatasetItem], class_names: Sequence[str]
) -> tuple[list[DatasetItem], list[Sample], int]:
    """(kept rows, their samples, number of rows left out because a file is missing)."""
    index = {slug: i for i, slug in enumerate(class_names)}
    kept, samples, missing = [], [], 0
    for row in rows:
        if row.label not in index:
            continue
        sample = creative_sample(row.creative, label=index[row.label])
        if sample is None:
            missing += 1
        else:
            kept.append(row)
            samples.append(sample)
    return kept, samples, missing
