"""Shared test factories (append-only for other helpers). Real rows, real PNG files written through
Django's default storage (MEDIA_ROOT is a per-test tmp folder, see tests/conftest.py)."""

from __future__ import annotations

import hashlib
import io
import itertools

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from core.roles import ANNOTATOR

_seq = itertools.count(1)
PASSWORD = "test-pass-123"


def _next() -> int:
    return next(_seq)


def png_bytes(*, size=(32, 32), color=None, mode="RGB", seed: int | None = None) -> bytes:
    """A tiny real PNG. `seed` (or a fresh counter value) makes the pixels, hence sha256, unique."""
    n = _next() if seed is None else seed
    if color is None:
        color = (n * 37 % 256, n * 91 % 256, n * 13 % 256) + ((255,) if mode == "RGBA" else ())
    img = Image.new(mode, size, color)
    # Encode the counter in the first pixels so that equal colours still give unique files.
    for i, byte in enumerate(n.to_bytes(4, "big")):
        px = (byte, byte, byte) + ((255,) if mode == "RGBA" else ())
        img.putpixel((i, 0), px)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_user(role: str | None = ANNOTATOR, *, username=None, password=PASSWORD, **extra):
    """A user in the group `role` (None: no role; "superuser": a superuser)."""
    from django.contrib.auth.models import Group

    User = get_user_model()
    username = username or f"{role or 'user'}{_next()}"
    if role == "superuser":
        return User.objects.create_superuser(username=username, password=password, **extra)
    user = User.objects.create_user(username=username, password=password, **extra)
    if role:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user


def make_token(user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key


def make_product(*, sku=None, title="Test product", category="test", size=(32, 32), **extra):
    from generation.models import Product

    data = png_bytes(size=size, mode="RGBA")
    sku = sku or f"SKU-{_next()}"
    product = Product(
        sku=sku,
        title=title,
        category=category,
        sha256=hashlib.sha256(data).hexdigest(),
        width=size[0],
        height=size[1],
        **extra,
    )
    product.image.save(f"{sku}.png", ContentFile(data), save=False)
    product.save()
    return product


def make_creative(*, product=None, prompt="a product on a table", size=(32, 32), **extra):
    from generation.models import Creative

    product = product or make_product()
    data = png_bytes(size=size)
    sha = hashlib.sha256(data).hexdigest()
    creative = Creative(
        product=product, sha256=sha, width=size[0], height=size[1], prompt=prompt, **extra
    )
    creative.image.save(f"{sha[:16]}.png", ContentFile(data), save=False)
    creative.save()
    return creative


def make_creatives(n: int, *, product=None, **extra) -> list:
    product = product or make_product()
    return [make_creative(product=product, **extra) for _ in range(n)]


def make_project(*, overlap=1, n_items=0, slug=None, name=None, gold_labels=None, **settings):
    """A project on the RF1M schema, optionally with `n_items` fresh creatives in its queue.
    Extra keyword arguments are project settings (lease_seconds, ordering, gold_rate, ...)."""
    from annotation import services

    slug = slug or f"project-{_next()}"
    project = services.create_project(name=name or slug, slug=slug, overlap=overlap, **settings)
    if n_items:
        services.add_creatives_to_project(
            project=project, creatives=make_creatives(n_items), gold_labels=gold_labels
        )
    return project
