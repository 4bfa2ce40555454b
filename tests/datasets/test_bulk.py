"""core.bulk: id allocation, key look-ups and the importer's optimistic creative insert,
on whichever database the suite runs (PostgreSQL in CI, SQLite by default)."""

import pytest
from django.db import transaction
from django.utils import timezone

from core import bulk
from generation import services as gen_services
from generation.models import Creative, Product
from tests.factories import make_creative, make_product

pytestmark = pytest.mark.django_db


def test_allocate_ids_never_reuses_ids_of_deleted_rows():
    with transaction.atomic():
        first = bulk.allocate_ids(Product, 3)
        now = timezone.now()
        bulk.insert_rows(
            Product,
            ["id", "sku", "image", "sha256", "created_at"],
            [(pk, f"S{pk}", "products/x.png", "0" * 64, now) for pk in first],
        )
    assert sorted(Product.objects.values_list("id", flat=True)) == sorted(first)
    Product.objects.filter(id=max(first)).delete()
    with transaction.atomic():
        again = bulk.allocate_ids(Product, 2)
    assert min(again) > max(first) and len(set(again)) == 2
    # An ordinary insert afterwards does not collide with the explicit ids either.
    assert make_product(sku="after").pk not in first


def test_ids_by_key_text_integer_and_separator_keys():
    a = make_product(sku="plain")
    b = make_product(sku="with\x1fseparator")
    c = make_product(sku="comma,and space")
    assert bulk.ids_by_key(Product, "sku", ["plain", "comma,and space", "absent"]) == {
        "plain": a.pk,
        "comma,and space": c.pk,
    }
    # A key containing the look-up's separator takes the array path and still matches.
    assert bulk.ids_by_key(Product, "sku", ["with\x1fseparator", "plain"]) == {
        "with\x1fseparator": b.pk,
        "plain": a.pk,
    }
    creative = make_creative(product=a)
    assert bulk.ids_by_key(Creative, "product", [a.pk, b.pk]) == {a.pk: creative.pk}
    assert bulk.ids_by_key(Product, "sku", []) == {}


def _row(sha, sku="P"):
    return gen_services.CreativeRow(
        sku=sku,
        image=f"creatives/{sha[:2]}/{sha}.png",
        thumbnail="",
        sha256=sha,
        width=8,
        height=8,
        params={"steps": 3},
    )


def test_assume_new_falls_back_when_a_concurrent_writer_stored_one_first():
    product = make_product(sku="P")
    # Stored "concurrently" after the caller's look-up found nothing:
    existing = Creative.objects.create(
        product=product, image="creatives/bb/b.png", sha256="b" * 64, width=8, height=8
    )
    rows = [_row("a" * 64), _row("b" * 64), _row("c" * 64)]
    with transaction.atomic():
        ids, created = gen_services.bulk_get_or_create_creatives(
            rows, {"P": product.pk}, assume_new=True
        )
    assert created == 2
    assert ids["b" * 64] == existing.pk
    assert set(ids) == {"a" * 64, "b" * 64, "c" * 64}
    assert Creative.objects.count() == 3
    assert Creative.objects.get(sha256="a" * 64).params == {"steps": 3}
    assert {ids[s] for s in ids} == set(Creative.objects.values_list("id", flat=True))


def test_assume_new_fast_path_uses_allocated_ids():
    product = make_product(sku="P")
    with transaction.atomic():
        ids, created = gen_services.bulk_get_or_create_creatives(
            [_row("d" * 64), _row("e" * 64)], {"P": product.pk}, assume_new=True
        )
    assert created == 2
    assert dict(Creative.objects.values_list("sha256", "id")) == ids
