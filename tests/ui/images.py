"""Realistic-looking creatives for UI screenshots (real cut-outs from SHARED_DIR if present)."""

from pathlib import Path


def _scene(product_rgba, index: int, size: int = 384):
    """A plausible-looking ad image: a soft two-tone backdrop, a table edge and the product."""
    from PIL import Image, ImageDraw, ImageFilter

    palettes = [
        ((226, 236, 248), (182, 200, 224)),
        ((246, 232, 220), (214, 186, 160)),
        ((228, 242, 230), (170, 204, 178)),
        ((240, 232, 246), (196, 180, 214)),
    ]
    top, bottom = palettes[index % len(palettes)]
    img = Image.new("RGB", (size, size), top)
    draw = ImageDraw.Draw(img)
    for y in range(size):
        t = y / size
        draw.line(
            [(0, y), (size, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    draw.rectangle([0, int(size * 0.68), size, size], fill=tuple(int(c * 0.9) for c in bottom))
    img = img.filter(ImageFilter.GaussianBlur(2))
    scale = 0.55 + 0.1 * (index % 3)
    product = product_rgba.copy()
    product.thumbnail((int(size * scale), int(size * scale)))
    x = (size - product.width) // 2 + (index % 3 - 1) * size // 10
    y = int(size * 0.74) - product.height
    img.paste(product, (x, y), product)
    return img


def pretty_creatives(n: int):
    """Creatives made from the real cut-outs in SHARED_DIR (procedural ones when absent), for
    screenshots that look like the real work."""
    import hashlib
    import io
    import json

    from django.conf import settings
    from django.core.files.base import ContentFile
    from PIL import Image, ImageDraw

    from generation.models import Creative, Product

    shared = Path(settings.SHARED_DIR) / "products"
    sources = []
    if (shared / "products.json").exists():
        for row in json.loads((shared / "products.json").read_text()):
            sources.append(
                (row["sku"], row["title"], Image.open(shared / row["file"]).convert("RGBA"))
            )
    if not sources:
        cutout = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
        ImageDraw.Draw(cutout).rounded_rectangle([60, 40, 196, 230], 24, fill=(40, 90, 200, 255))
        sources.append(("SKU-DEMO", "Blue bottle", cutout))

    def png(image) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()

    creatives = []
    products = {}
    for i in range(n):
        sku, title, cutout = sources[i % len(sources)]
        if sku not in products:
            small = cutout.copy()
            small.thumbnail((256, 256))
            data = png(small)
            product = Product(
                sku=f"{sku}-ui",
                title=title,
                sha256=hashlib.sha256(data).hexdigest(),
                width=small.width,
                height=small.height,
            )
            product.image.save(f"{sku}.png", ContentFile(data), save=False)
            product.save()
            products[sku] = product
        data = png(_scene(cutout, i))
        sha = hashlib.sha256(data).hexdigest()
        creative = Creative(
            product=products[sku],
            sha256=sha,
            width=384,
            height=384,
            prompt="soft scene, a front view of a product placed on a white desktop, light sky "
            "blue and white, commercial images, shallow depth of field, highly detailed",
        )
        creative.image.save(f"{sha[:16]}.png", ContentFile(data), save=False)
        creative.save()
        creatives.append(creative)
    return creatives
