"""Export a dataset version as JSON lines or Parquet, streamed in chunks.

One row per DatasetItem: image (storage name), image_path (absolute, when storage is on local
disk), image_url (`/images/creatives/{id}/`, served behind the login from any storage; storage
URLs would be /media/..., which nothing serves, or expiring signed bucket URLs), the same three
for the product cut-out, sku, title, category, prompt, label,
split, votes, agreement, ids and sha256. Rows are read with values_list(...).iterator() in chunks
and written in batches (pyarrow row groups), so memory stays flat at millions of rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.storage import default_storage

from annotation.models import DatasetItem, DatasetVersion
from annotation.selectors import image_url

FORMATS = ("jsonl", "parquet")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
CHUNK = 20000

_QUERY_FIELDS = (
    "item_id",
    "creative_id",
    "creative__sha256",
    "creative__image",
    "creative__product__image",
    "creative__product_id",
    "creative__product__sku",
    "creative__product__title",
    "creative__product__category",
    "creative__prompt",
    "label",
    "split",
    "votes",
    "agreement",
)
SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("creative_id", pa.int64()),
        ("sha256", pa.string()),
        ("image", pa.string()),
        ("image_path", pa.string()),
        ("image_url", pa.string()),
        ("product_image", pa.string()),
        ("product_image_path", pa.string()),
        ("product_image_url", pa.string()),
        ("sku", pa.string()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("prompt", pa.string()),
        ("label", pa.string()),
        ("split", pa.string()),
        ("votes", pa.int32()),
        ("agreement", pa.float64()),
    ]
)
COLUMNS = SCHEMA.names


def _path_of():
    """Local path of a storage name; '' when storage is not on local disk."""
    try:
        root = default_storage.path("")
    except NotImplementedError:
        root = None

    def path_of(name: str) -> str:
        return os.path.join(root, name) if root and name else ""

    return path_of


def iter_batches(version: DatasetVersion, chunk: int = CHUNK) -> Iterator[list[tuple]]:
    """Batches of export rows (tuples in COLUMNS order), in DatasetItem id order."""
    path_of = _path_of()
    query = DatasetItem.objects.filter(version=version).order_by("id").values_list(*_QUERY_FIELDS)
    batch: list[tuple] = []
    for (
        item_id,
        creative_id,
        sha,
        image,
        product_image,
        product_id,
        sku,
        title,
        category,
        prompt,
        label,
        split,
        votes,
        agreement,
    ) in query.iterator(chunk_size=chunk):
        batch.append(
            (
                item_id,
                creative_id,
                sha,
                image,
                path_of(image),
                image_url("creatives", creative_id) if image else "",
                product_image,
                path_of(product_image),
                image_url("products", product_id) if product_image else "",
                sku,
                title,
                category,
                prompt,
                label,
                split,
                votes,
                agreement,
            )
        )
        if len(batch) >= chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_jsonl(version: DatasetVersion) -> Iterator[bytes]:
    for batch in iter_batches(version):
        yield "".join(
            json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False) + "\n"
            for row in batch
        ).encode()


def _table(batch: list[tuple]) -> pa.Table:
    columns = list(zip(*batch, strict=True))
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, SCHEMA, strict=True)],
        schema=SCHEMA,
    )


class _Drain:
    """A write-only file object whose bytes are taken out after each row group (streaming)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.closed = False
        self.pos = 0

    def write(self, data) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self):
        pass

    def close(self):
        self.closed = True

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def iter_parquet(version: DatasetVersion) -> Iterator[bytes]:
    sink = _Drain()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), SCHEMA, compression="zstd")
    try:
        wrote = False
        for batch in iter_batches(version):
            writer.write_table(_table(batch))
            wrote = True
            yield sink.take()
        if not wrote:
            writer.write_table(SCHEMA.empty_table())
    finally:
        writer.close()
    yield sink.take()


def iter_export(version: DatasetVersion, fmt: str) -> Iterator[bytes]:
    if fmt == "jsonl":
        return iter_jsonl(version)
    if fmt == "parquet":
        return iter_parquet(version)
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def export_to_file(version: DatasetVersion, out: str | Path, fmt: str) -> int:
    """Write the export to `out` atomically (temp file + rename); returns bytes written."""
    out = Path(out)
    chunks = iter_export(version, fmt)  # validates fmt before touching the disk
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    size = 0
    with tmp.open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            size += len(chunk)
    tmp.replace(out)
    return size


def filename(version: DatasetVersion, fmt: str) -> str:
    return f"{version.name}.{fmt}"
