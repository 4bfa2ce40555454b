"""Admin is read-only for queue data: no add/change/delete of items, leases, labels, reviews or gold
statistics, project ordering/overlap read-only once created; changes go through admin actions
that call the services (which keep the overlap cap, counters and audit log)."""

import pytest

from annotation import services
from annotation.models import AuditEvent, Item, Project
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db

QUEUE_MODELS = ["item", "assignment", "annotation", "review", "annotatorgoldstats"]


@pytest.fixture
def ml_client(client):
    client.force_login(make_user("ml_engineer", is_staff=True))
    return client


@pytest.mark.parametrize("model", QUEUE_MODELS)
def test_queue_rows_cannot_be_added_changed_or_deleted(client, model):
    project = make_project(n_items=2, overlap=1)
    item = Item.objects.filter(project=project).first()
    annotator = make_user()
    services.claim_next_item(project=project, annotator=annotator)
    services.submit_annotation(
        item_id=item.pk, annotator=annotator, label="available", idempotency_key="k1"
    )
    client.force_login(make_user("superuser"))
    assert client.get(f"/admin/annotation/{model}/add/").status_code == 403
    obj = {
        "item": item,
        "assignment": item.assignments.first(),
        "annotation": item.annotations.first(),
    }.get(model)
    if obj is not None:
        url = f"/admin/annotation/{model}/{obj.pk}/change/"
        page = client.get(url)
        assert page.status_code == 200 and b'name="_save"' not in page.content
        assert client.post(url, {"status": "open", "priority": "-5"}).status_code == 403
        assert client.get(f"/admin/annotation/{model}/{obj.pk}/delete/").status_code == 403


def test_ordering_action_uses_the_service(ml_client):
    project = make_project(n_items=5, overlap=2)
    response = ml_client.post(
        "/admin/annotation/project/",
        {"action": "order_uncertainty", "index": 0, "_selected_action": [project.pk]},
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.ordering == Project.Ordering.UNCERTAINTY
    assert set(Item.objects.filter(project=project).values_list("priority", flat=True)) == {1.0}
    assert AuditEvent.objects.filter(project=project, action="set_ordering").exists()


def _form(project, **changes):
    data = {
        "name": project.name,
        "slug": project.slug,
        "overlap": project.overlap,
        "lease_seconds": project.lease_seconds,
        "instructions": project.instructions,
        "qa_sample_rate": project.qa_sample_rate,
        "gold_rate": project.gold_rate,
        "ordering": project.ordering,
        "created_by": "",
    }
    data.update(changes)
    return data


def _finish(project, n):
    """Label the first n items once each (through the services)."""
    for i in range(n):
        annotator = make_user()
        lease = services.claim_next_item(project=project, annotator=annotator)
        services.submit_annotation(
            item_id=lease.item.pk, annotator=annotator, label="available", idempotency_key=f"f{i}"
        )


def test_editing_overlap_in_the_form_goes_through_the_service(ml_client):
    project = make_project(n_items=3, overlap=1, qa_sample_rate=0.0)
    _finish(project, 2)
    url = f"/admin/annotation/project/{project.pk}/change/"
    assert ml_client.post(url, _form(project, overlap=2)).status_code == 302
    statuses = sorted(Item.objects.filter(project=project).values_list("status", flat=True))
    assert statuses == ["open", "open", "open"]  # finished items need a second label now
    assert AuditEvent.objects.get(project=project, action="set_overlap").data["reopened"] == 2
    project.refresh_from_db()
    assert ml_client.post(url, _form(project, overlap=1, ordering="random")).status_code == 302
    items = Item.objects.filter(project=project)
    assert sorted(items.values_list("status", flat=True)) == ["done", "done", "open"]
    done = items.filter(status="done").first()
    assert done.consensus_label.slug == "available" and done.agreement == 1.0
    assert AuditEvent.objects.filter(project=project, action="set_ordering").exists()
    # Bad values are form errors, not server errors.
    page = ml_client.post(url, _form(project, overlap=10**4))
    assert page.status_code == 200 and b"Between 1 and 100" in page.content


def test_reopen_action_goes_through_the_service(ml_client):
    project = make_project(n_items=1, overlap=1)
    item = Item.objects.get(project=project)
    annotator = make_user()
    services.claim_next_item(project=project, annotator=annotator)
    services.submit_annotation(
        item_id=item.pk, annotator=annotator, label="available", idempotency_key="k"
    )
    response = ml_client.post(
        "/admin/annotation/item/",
        {"action": "reopen_items_action", "index": 0, "_selected_action": [item.pk]},
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == "open" and item.annotation_count == 0
    assert item.annotations.get().discarded_at is not None  # discarded, never deleted
    assert AuditEvent.objects.filter(item_id_ref=item.pk, action="reopen").exists()


def test_queue_actions_need_the_ml_engineer_role(client):
    make_project(n_items=1)
    client.force_login(make_user("qa", is_staff=True))
    page = client.get("/admin/annotation/item/").content.decode()
    assert "reopen_items_action" not in page
