"""core.pgcopy on PostgreSQL: binary COPY, foreign keys checked per key set, and the
fallbacks to PostgreSQL's own row-level checks (an unknown trigger, a role without the right)."""

import threading

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotation.importing import ANNOTATION_FIELDS, ITEM_FIELDS, PG_SUBMIT_TRIGGER
from annotation.models import Annotation, Item
from core import bulk, pgcopy
from generation.models import Creative
from tests.factories import make_creative, make_project, make_user

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL COPY paths"),
]


def _item_rows(project, creatives, label, ids=None):
    now = timezone.now()
    votes = {label.slug: 1}
    for n, creative in enumerate(creatives):
        pk = ids[n] if ids else None
        yield (pk, project.pk, creative.pk, "done", 1, 0.0, False, "", "", label.pk, 1.0,
               f"x{n}", now, now, votes)  # fmt: skip


def _copy_items(project, creatives, label, **kwargs):
    ids = bulk.allocate_ids(Item, len(creatives))
    cols = [Item._meta.get_field(f).column for f in ITEM_FIELDS]
    fixed = [f.column for f in Item._meta.concrete_fields if f.column not in cols]
    rows = (
        (*row, *(False if c == "flagged_low_gold" else 0 if c == "lease_count" else None
                 for c in fixed))
        for row in _item_rows(project, creatives, label, ids)
    )  # fmt: skip
    return ids, pgcopy.copy_rows(connection, Item._meta.db_table, cols + fixed, rows, **kwargs)


def test_binary_copy_round_trips_values_and_checks_keys_per_set():
    project = make_project()
    label = project.schema.classes.get(slug="available")
    creatives = [make_creative() for _ in range(3)]
    with transaction.atomic():
        ids, per_set = _copy_items(project, creatives, label)
    assert per_set  # CI's role is a superuser: triggers off, keys checked per set
    items = list(Item.objects.filter(pk__in=ids).order_by("pk"))
    assert [i.creative_id for i in items] == [c.pk for c in creatives]
    assert items[0].votes == {"available": 1}  # a jsonb object, not a JSON string
    assert items[0].consensus_label_id == label.pk and items[0].agreement == 1.0
    assert items[0].gold_label_id is None and items[0].created_at is not None


def test_a_dangling_key_raises_and_writes_nothing():
    project = make_project()
    label = project.schema.classes.get(slug="available")
    ghost = Creative(pk=10**12, product=make_creative().product)  # never saved
    before = Item.objects.count()
    refused = pytest.raises(IntegrityError, match=r"creative_id\)=\(1000000000000\)")
    with refused, transaction.atomic():
        _copy_items(project, [make_creative(), ghost], label)
    assert Item.objects.count() == before


def test_new_parents_are_trusted_without_a_check():
    """Keys named in new_parents are neither checked nor locked: the caller inserted them in
    this transaction. Shown with a key that does not exist (the transaction is rolled back)."""
    project = make_project()
    label = project.schema.classes.get(slug="available")
    ghost = Creative(pk=10**12, product=make_creative().product)  # never saved
    with pytest.raises(_Rollback), transaction.atomic():
        _, per_set = _copy_items(project, [ghost], label, new_parents={"creative_id": {ghost.pk}})
        assert per_set and Item.objects.filter(creative_id=ghost.pk).exists()
        raise _Rollback
    assert not Item.objects.filter(creative_id=ghost.pk).exists()


class _Rollback(Exception):
    pass


def test_an_unknown_insert_trigger_keeps_the_row_level_path():
    project = make_project()
    label = project.schema.classes.get(slug="available")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION rfs_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'trigger fired'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER rfs_test_refuse AFTER INSERT ON annotation_item "
            "FOR EACH ROW EXECUTE FUNCTION rfs_test_refuse()"
        )
    # The trigger is not the caller's to skip: it must fire (and here refuses the insert).
    with pytest.raises(Exception, match="trigger fired"), transaction.atomic():
        _copy_items(project, [make_creative()], label)
    # Named by the caller as a no-op for its rows, it is skipped with the FK checks.
    with transaction.atomic():
        _, per_set = _copy_items(
            project, [make_creative()], label, skip_triggers={"rfs_test_refuse"}
        )
    assert per_set


def test_a_role_without_the_right_gets_postgres_row_level_checks():
    project = make_project()
    label = project.schema.classes.get(slug="available")
    good, ghost = make_creative(), Creative(pk=10**12, product_id=1)
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE rfs_test_plain NOLOGIN")
        cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO rfs_test_plain")
        cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO rfs_test_plain")
        cursor.execute("SET ROLE rfs_test_plain")
    try:
        with transaction.atomic():
            ids, per_set = _copy_items(project, [good], label)
        assert not per_set and Item.objects.filter(pk__in=ids).count() == 1
        # PostgreSQL's own trigger still refuses a dangling key, at the latest at commit.
        with pytest.raises(IntegrityError), transaction.atomic():
            _copy_items(project, [ghost], label)
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def test_importer_annotation_insert_takes_the_per_set_path():
    """The importer's label rows: the submit trigger is a promised no-op (source "import")."""
    project = make_project(n_items=2)
    label = project.schema.classes.get(slug="available")
    user = make_user(None)
    items = list(project.items.all())
    now = timezone.now()
    rows = [
        (i.pk, user.pk, label.pk, "", f"k{i.pk}", "", Annotation.Source.IMPORT, now) for i in items
    ]
    cols = [Annotation._meta.get_field(f).column for f in ANNOTATION_FIELDS]
    extra = [
        f for f in Annotation._meta.concrete_fields if f.column not in cols and not f.primary_key
    ]
    full = [(*r, *(f.get_default() for f in extra)) for r in rows]
    with transaction.atomic():
        per_set = pgcopy.copy_rows(
            connection,
            Annotation._meta.db_table,
            cols + [f.column for f in extra],
            full,
            skip_triggers={PG_SUBMIT_TRIGGER},
        )
    assert per_set and Annotation.objects.filter(annotator=user).count() == 2


@pytest.mark.django_db(transaction=True)
def test_parents_are_locked_until_commit():
    """A concurrent DELETE of a creative that uncommitted imported items reference waits for
    the import (the FOR KEY SHARE lock the row-level trigger would also take)."""
    project = make_project()
    label = project.schema.classes.get(slug="available")
    creative = make_creative()
    settings = connection.settings_dict
    dsn = psycopg.conninfo.make_conninfo(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"],
        port=settings["PORT"] or None,
    )
    outcome = {}

    def delete_creative():
        with psycopg.connect(dsn) as other:
            other.execute("SET lock_timeout = '300ms'")
            try:
                other.execute("DELETE FROM generation_creative WHERE id = %s", [creative.pk])
                outcome["deleted"] = True
            except psycopg.errors.LockNotAvailable:
                outcome["blocked"] = True

    with transaction.atomic():
        _, per_set = _copy_items(project, [creative], label)
        assert per_set
        thread = threading.Thread(target=delete_creative)
        thread.start()
        thread.join(10)
    assert outcome == {"blocked": True}
    assert Item.objects.filter(creative=creative).exists()
