"""core.prepared.PreparedQuery gives what the ORM gives, compiled once per connection."""

import pytest
from django.db import connections
from django.db.models import Count, Exists, OuterRef

from annotation.models import Annotation, Item
from core.prepared import PreparedQuery
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


def _items(project_id, min_pk):
    return (
        Item.objects.select_related("creative__product", "project")
        .filter(project_id=project_id, pk__gte=min_pk)
        .annotate(
            n=Count("annotations"),
            labeled=Exists(Annotation.objects.filter(item_id=OuterRef("pk"))),
        )
        .order_by("pk")
    )


ITEMS = PreparedQuery(_items, ints=("project_id", "min_pk"))


def test_same_objects_related_and_annotations_as_the_orm(django_assert_num_queries):
    project = make_project(n_items=3)
    other = make_project(n_items=2)
    first = Item.objects.filter(project=project).order_by("pk").first()
    expected = list(_items(project.pk, first.pk + 1))
    got = ITEMS.all(project_id=project.pk, min_pk=first.pk + 1)
    assert [i.pk for i in got] == [i.pk for i in expected] and len(got) == 2
    for a, b in zip(got, expected, strict=True):
        assert (a.n, a.labeled, a.created_at) == (b.n, b.labeled, b.created_at)
        assert a.creative.product.sku == b.creative.product.sku
        assert a.project.slug == project.slug
    with django_assert_num_queries(1):  # compiled: one query, related objects included
        again = ITEMS.all(project_id=other.pk, min_pk=0)
        assert {i.creative.product.pk for i in again}
    assert {i.project_id for i in again} == {other.pk}
    assert ITEMS.first(project_id=-5, min_pk=0) is None
    assert connections["default"].__dict__["_rfs_prepared"]  # cached on this connection


def test_repeated_argument_and_strings():
    user = make_user("annotator", username="prep-user")
    by_name = PreparedQuery(
        lambda name: type(user).objects.filter(username=name).exclude(email=name)[:1]
    )
    assert by_name.first(name="prep-user") == user
    assert by_name.first(name="nobody") is None


def test_argument_that_does_not_reach_the_sql_is_refused():
    broken = PreparedQuery(lambda name: Item.objects.all(), ints=())
    with pytest.raises(ValueError, match="do not reach the SQL"):
        broken.all(name="x")
