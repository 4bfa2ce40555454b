"""Synchronous scoring of uploaded images (the API's small-batch path). Nothing is stored: the
uploads are validated completely before any model runs, then scored from a temporary folder."""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from PIL import Image

from generation import images

from .analysis import summarize
from .models import FeedbackModel

MAX_UPLOADS = 8


def parse_placement(value: str, index: int):
    """'x0,y0,x1,y1' (creative pixels) → a tuple, '' → None; a bad value is a ValidationError."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        box = tuple(float(v) for v in value.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise ValidationError(
            f"Upload {index}: placement {value!r} must be 'x0,y0,x1,y1' with x1 > x0 and y1 > y0."
        )
    return box


MAX_SIDE = 4096

_scorers: OrderedDict = OrderedDict()
_lock = threading.Lock()


@dataclass
class Upload:
    image: object  # an UploadedFile
    product: object
    caption: str = ""
    placement: tuple[float, float, float, float] | None = None  # the generator's input box


def _open(upload, what: str, index: int) -> Image.Image:
    name = getattr(upload, "name", what)
    try:
        upload.seek(0)
        # The import gate's rules (format, corruption, bombs, pixel mode): what imports scores.
        _, image = images.inspect_bytes(upload.read())
    except images.BadImage as exc:
        raise ValidationError(f"Upload {index}: {what} {name!r} is not a usable image: {exc}.")
    if max(image.size) > MAX_SIDE:
        raise ValidationError(
            f"Upload {index}: {what} {name!r} is {image.size[0]}x{image.size[1]}; "
            f"the limit is {MAX_SIDE} px per side."
        )
    return image


def get_scorer(model: FeedbackModel, device: str | None = None):
    """A loaded Scorer per checkpoint, the two most recent kept (loading costs more than a tiny
    batch)."""
    from .ml.scoring import Scorer

    key = (str(model.checkpoint_path), device)
    with _lock:
        scorer = _scorers.get(key)
        if scorer is None:
            scorer = Scorer.from_pretrained(model.checkpoint_path, device=device)
            _scorers[key] = scorer
            while len(_scorers) > 2:
                _scorers.popitem(last=False)
        else:
            _scorers.move_to_end(key)
        return scorer


def score_uploads(*, model: FeedbackModel, uploads: list[Upload], device: str | None = None):
    from .ml.data import Sample

    if not uploads:
        raise ValidationError("Send at least one `image` with its `product` cut-out.")
    if len(uploads) > MAX_UPLOADS:
        raise ValidationError(
            f"At most {MAX_UPLOADS} images per request; use a scoring job for more."
        )
    opened = [
        (_open(u.image, "image", i), _open(u.product, "product", i), u.caption, u.placement)
        for i, u in enumerate(uploads)
    ]
    with tempfile.TemporaryDirectory(prefix="rfnet-score-") as tmp:
        samples = []
        for i, (image, product, caption, placement) in enumerate(opened):
            image_path = Path(tmp) / f"{i}-image.png"
            product_path = Path(tmp) / f"{i}-product.png"
            image.convert("RGB").save(image_path)
            product.convert("RGBA").save(product_path)
            samples.append(
                Sample(
                    creative_path=str(image_path),
                    product_path=str(product_path),
                    caption=caption or "",
                    placement=placement,
                )
            )
        probs = get_scorer(model, device).score(samples, batch_size=len(samples))
    return [summarize(row, model.class_names) for row in probs]
