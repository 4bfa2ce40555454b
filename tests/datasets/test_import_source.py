"""Imported labels skip the per-row submit trigger (no lease) and are logged by one import event;
labels from the lease flow still close the lease and log `submit` (migration 0005)."""

import pytest
from django.core.management import call_command

from annotation import services
from annotation.models import Annotation, Assignment, AuditEvent, Project
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_imported_labels_are_logged_by_one_import_event_and_human_ones_by_submit(builder):
    rows = [builder.row(0, label="available"), builder.row(1, label="size_mismatch")]
    rows += [builder.row(2, label="available"), builder.row(3)]
    call_command("import_creatives", str(builder.write(rows)), "--project", "src", "--overlap", "2")
    project = Project.objects.get(slug="src")
    imported = Annotation.objects.filter(item__project=project)
    assert imported.count() == 3
    assert set(imported.values_list("source", flat=True)) == {Annotation.Source.IMPORT}
    assert not AuditEvent.objects.filter(action="submit").exists()
    event = AuditEvent.objects.get(action="import", project=project)
    assert event.data["labels"] == 3 and event.data["label_source"] == "import"
    assert event.data["labels_by_class"] == {"available": 2, "size_mismatch": 1}

    user = make_user()
    assignment = services.claim_next_item(project=project, annotator=user)
    ann, created = services.submit_annotation(
        item_id=assignment.item_id, annotator=user, label="available", idempotency_key="k1"
    )
    assert created and ann.source == Annotation.Source.HUMAN
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.SUBMITTED
    submit = AuditEvent.objects.get(action="submit")
    assert submit.item_id_ref == assignment.item_id and submit.data["annotation"] == ann.pk
