"""Image checks and derived files, in plain PIL (no Django: runs in import worker processes).

`inspect_image` is the one gate every imported file goes through: it hashes the bytes, decodes the
whole image (so truncated or corrupt files fail here, not in training) and refuses decompression
bombs. Storage names are content addressed (`creatives/ab/<sha256>.png`) so the same bytes are
stored once, however often they are imported.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

THUMBNAIL_SIZE = 256
# Formats we accept, with the extension used for the stored copy.
FORMAT_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


class BadImage(ValueError):
    """The file is missing, not an image, truncated/corrupt, too large, or of an unknown format."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int
    height: int
    format: str  # PIL format name, e.g. "PNG"
    mode: str

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def content_name(prefix: str, sha256: str, extension: str) -> str:
    """Content-addressed storage name: `prefix/ab/<sha256>.<ext>` (two-level fan-out)."""
    return f"{prefix}/{sha256[:2]}/{sha256}.{extension}"


def _decode(data: bytes) -> Image.Image:
    """Open and fully decode `data`, turning every failure into BadImage."""
    # LOAD_TRUNCATED_IMAGES must stay off: a truncated file is an error, not a grey stripe.
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # pragma: no cover - global misconfiguration
        raise BadImage("PIL LOAD_TRUNCATED_IMAGES is on; refusing to validate images")
    try:
        with warnings.catch_warnings():
            # Above MAX_IMAGE_PIXELS PIL only warns (errors at twice that): refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"image too large (decompression bomb): {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"corrupt or truncated image: {exc}") from None
    if image.format not in FORMAT_EXTENSIONS:
        raise BadImage(f"unsupported image format {image.format!r}")
    if image.width <= 0 or image.height <= 0:
        raise BadImage("image has no pixels")
    if image.mode.startswith(("I", "F")):
        # 16-bit greyscale and integer/float pixels: every consumer converts to 8-bit RGB,
        # which PIL does by clipping (a 16-bit image turns white), so refuse rather than mislead.
        raise BadImage(
            f"unsupported pixel mode {image.mode!r} (16-bit or float greyscale): "
            "save the image as 8-bit RGB or RGBA"
        )
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL mostly warns instead
        raise BadImage(f"unreadable EXIF metadata: {exc}") from None
    if orientation not in (1, None):
        # Stored pixels plus a "turn me" tag: browsers show the image turned, every model input
        # (training, scoring, the score API) reads the stored pixels, so annotators and RFNet would
        # see two different images. Re-encoding it here would break content addressing.
        raise BadImage(
            f"the image carries an EXIF orientation tag ({orientation}: stored rotated or "
            "mirrored): save it upright without the tag (e.g. PIL ImageOps.exif_transpose, "
            "or `magick mogrify -auto-orient`)"
        )
    return image


def inspect_bytes(data: bytes) -> tuple[ImageInfo, Image.Image]:
    image = _decode(data)
    info = ImageInfo(sha256_bytes(data), image.width, image.height, image.format, image.mode)
    return info, image


def inspect_image(path: str | Path) -> ImageInfo:
    """Validate the image at `path` (fully decoded) and return its hash and size."""
    return inspect_bytes(_read(path))[0]


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImage(f"file not found: {path}") from None
    except IsADirectoryError:
        raise BadImage(f"is a directory, not an image: {path}") from None
    except OSError as exc:
        raise BadImage(f"cannot read {path}: {exc}") from None


def thumbnail_webp(image: Image.Image, size: int = THUMBNAIL_SIZE, quality: int = 80) -> bytes:
    """A WebP thumbnail that fits in size×size, keeping the aspect ratio and transparency."""
    thumb = image.copy()
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert(
            "RGBA" if "A" in thumb.getbands() or "transparency" in thumb.info else "RGB"
        )
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="WEBP", quality=quality, method=4)
    return buf.getvalue()


def mask_from_alpha(image: Image.Image, threshold: int = 127) -> Image.Image:
    """The product mask ("L", 0/255) of an RGBA cut-out: alpha above `threshold`.

    Images without transparency give an all-foreground mask (the whole frame is the product).
    """
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
        return alpha.point(lambda a: 255 if a > threshold else 0, mode="L")
    return Image.new("L", image.size, 255)


@dataclass(frozen=True)
class ProcessedFile:
    """What an import worker returns for one source file."""

    path: str
    info: ImageInfo | None = None
    thumbnail: bytes | None = None
    error: str | None = None


def process_file(path: str, make_thumbnail: bool = False) -> ProcessedFile:
    """Worker entry point: validate + hash (+ thumbnail). Never raises for a bad file."""
    try:
        info, image = inspect_bytes(_read(path))
        thumb = thumbnail_webp(image) if make_thumbnail else None
        return ProcessedFile(path=path, info=info, thumbnail=thumb)
    except BadImage as exc:
        return ProcessedFile(path=path, error=str(exc))
    except Exception as exc:  # PIL raises many exception types on hostile input
        return ProcessedFile(path=path, error=f"cannot process image: {exc}")


def process_files(
    jobs: list[tuple[str, bool]], workers: int = 2, pool_threshold: int = 64
) -> dict[str, ProcessedFile]:
    """Process (path, make_thumbnail) pairs; a process pool of `workers` for large batches.

    Small batches run inline: starting processes costs more than hashing a few files.
    """
    if workers <= 1 or len(jobs) < pool_threshold:
        return {path: process_file(path, thumb) for path, thumb in jobs}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: the import may run inside a threaded web server, where fork() is unsafe.
    ctx = multiprocessing.get_context("forkserver")
    paths = [p for p, _ in jobs]
    thumbs = [t for _, t in jobs]
    chunksize = max(1, min(256, len(jobs) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = pool.map(process_file, paths, thumbs, chunksize=chunksize)
        return {r.path: r for r in results}
