"""The database triggers the queue, the audit log and dataset immutability rely on exist after
`migrate` (the test database is built by the migrations), on SQLite and on PostgreSQL.

SQLite has no ALTER for most column changes: Django rebuilds the table (create new, copy, drop
old, rename) and every trigger on the old table silently disappears. A future migration that
alters one of these tables must re-create its triggers; this test is what notices when it does not.
Each trigger is also exercised once, so a trigger that exists but no longer fires fails too."""

import pytest
from django.db import DatabaseError, connection, transaction

from annotation import services
from annotation.datasets import create_dataset_version
from annotation.models import AuditEvent, Item
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db

# table -> trigger names (and a fragment of the definition that must be current)
SQLITE = {
    "annotation_assignment": {
        "annotation_assignment_ai": "lease_count + 1",
        "annotation_assignment_au": "lease_count",
        "annotation_assignment_ad": "lease_count - 1",
    },
    "annotation_annotation": {"annotation_annotation_ai": "NEW.source = 'human'"},
    "annotation_auditevent": {
        "annotation_auditevent_no_update": "append-only",
        "annotation_auditevent_no_delete": "rfstudio_audit_purge_allowed",
    },
    "annotation_datasetversion": {"annotation_datasetversion_no_update": "immutable"},
    "annotation_datasetitem": {"annotation_datasetitem_no_update": "immutable"},
}
POSTGRES = {
    "annotation_assignment": {"annotation_assignment_sync": "rfstudio_assignment_sync"},
    "annotation_annotation": {"annotation_annotation_submitted": "'human'"},
    "annotation_auditevent": {"annotation_auditevent_append_only": "rfstudio_refuse_audit_change"},
    "annotation_datasetversion": {
        "annotation_datasetversion_no_update": "rfstudio_refuse_dataset_update"
    },
    "annotation_datasetitem": {
        "annotation_datasetitem_no_update": "rfstudio_refuse_dataset_update"
    },
}


def _triggers() -> dict[str, dict[str, str]]:
    """{table: {trigger: definition}} as the database has them now."""
    found: dict[str, dict[str, str]] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute(
                "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
                " JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
            )
        for table, name, sql in cursor.fetchall():
            found.setdefault(table, {})[name] = sql
    return found


def test_expected_triggers_exist_after_migrate():
    expected = SQLITE if connection.vendor == "sqlite" else POSTGRES
    found = _triggers()
    missing = [
        f"{table}.{name}"
        for table, names in expected.items()
        for name in names
        if name not in found.get(table, {})
    ]
    assert missing == [], f"triggers lost (a table rebuild?): {missing}"
    stale = [
        f"{table}.{name}"
        for table, names in expected.items()
        for name, fragment in names.items()
        if fragment not in found[table][name]
    ]
    assert stale == [], f"triggers with an old definition: {stale}"


def test_the_triggers_fire():
    project = make_project(n_items=1, overlap=1)
    annotator = make_user()
    lease = services.claim_next_item(project=project, annotator=annotator)
    item = Item.objects.get(pk=lease.item.pk)
    assert item.lease_count == 1  # lease bookkeeping (assignment insert)
    assert AuditEvent.objects.filter(action="claim", item_id_ref=item.pk).exists()
    services.submit_annotation(
        item_id=item.pk, annotator=annotator, label="available", idempotency_key="t"
    )
    item.refresh_from_db()
    assert item.lease_count == 0  # annotation insert -> lease submitted -> item updated
    assert AuditEvent.objects.filter(action="submit", item_id_ref=item.pk).exists()
    event = AuditEvent.objects.first()
    version = create_dataset_version(project=project, name="trig-v1")
    # Raw SQL: the database refuses, whatever the models' own guards do.
    for sql, params, message in (
        ("UPDATE annotation_auditevent SET action = 'x' WHERE id = %s", [event.pk], "append-only"),
        ("DELETE FROM annotation_auditevent WHERE id = %s", [event.pk], "append-only"),
        (
            "UPDATE annotation_datasetversion SET name = 'x' WHERE id = %s",
            [version.pk],
            "immutable",
        ),
    ):
        with (
            pytest.raises(DatabaseError, match=message),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
