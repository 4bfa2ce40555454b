from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import selectors, services
from annotation.exceptions import (
    IdempotencyKeyReused,
    InvalidLabel,
    InvalidReview,
    LeaseConflict,
    ReviewConflict,
)
from annotation.models import Annotation, Assignment, AuditEvent, Item, Project
from tests.factories import make_creatives, make_project, make_user

from .conftest import work_queries

pytestmark = pytest.mark.django_db


def submit(item_id, user, label="available", key=None):
    return services.submit_annotation(
        item_id=item_id, annotator=user, label=label, idempotency_key=key or f"{user.pk}-{item_id}"
    )


def expire(assignment):
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_rf1m_schema_and_project_defaults():
    project = make_project()
    assert project.schema.slug == "rf1m"
    assert [c.slug for c in project.schema.classes.all()][0] == "available"
    assert project.lease_seconds == 600


def test_claim_fifo_reuse_and_exhaustion(project, annotator):
    a = services.claim_next_item(project=project, annotator=annotator)
    first = Item.objects.filter(project=project).order_by("id").first()
    assert a.item_id == first.pk
    # Asking again while the lease is live returns the same lease.
    again = services.claim_next_item(project=project, annotator=annotator)
    assert again.pk == a.pk
    seen = set()
    for _ in range(5):
        a = services.claim_next_item(project=project, annotator=annotator)
        seen.add(a.item_id)
        submit(a.item_id, annotator)
    assert len(seen) == 5
    assert services.claim_next_item(project=project, annotator=annotator) is None
    assert Item.objects.filter(project=project, status="done").count() == 5


def test_leased_item_not_given_to_another(project):
    u1, u2 = make_user(), make_user()
    a1 = services.claim_next_item(project=project, annotator=u1)
    a2 = services.claim_next_item(project=project, annotator=u2)
    assert a1.item_id != a2.item_id


def test_overlap_two_distinct_annotators_and_cap():
    project = make_project(overlap=2, n_items=1)
    u1, u2, u3 = make_user(), make_user(), make_user()
    a1 = services.claim_next_item(project=project, annotator=u1)
    a2 = services.claim_next_item(project=project, annotator=u2)
    assert a1.item_id == a2.item_id
    assert services.claim_next_item(project=project, annotator=u3) is None  # both slots leased
    submit(a1.item_id, u1)
    assert services.claim_next_item(project=project, annotator=u1) is None  # already labeled
    submit(a2.item_id, u2, label="unsuitable")
    item = Item.objects.get(pk=a1.item_id)
    assert item.status == "done" and item.annotation_count == 2
    assert item.consensus_label is None and item.agreement == 0.5  # tie
    assert item.review_status == "pending" and item.review_reason == "disagreement"
    assert services.claim_next_item(project=project, annotator=u3) is None


def test_lease_expiry_frees_item_and_conflicts(project):
    u1, u2 = make_user(), make_user()
    a1 = services.claim_next_item(project=project, annotator=u1)
    expire(a1)
    # Nobody took it: the expired lease may still be submitted.
    ann, created = submit(a1.item_id, u1)
    assert created
    b1 = services.claim_next_item(project=project, annotator=u1)
    expire(b1)
    b2 = services.claim_next_item(project=project, annotator=u2)
    assert b2.item_id == b1.item_id  # the expired lease freed the item
    assert Assignment.objects.get(pk=b1.pk).status == "expired"
    with pytest.raises(LeaseConflict, match="given to someone else"):
        submit(b1.item_id, u1)
    with pytest.raises(LeaseConflict):
        services.renew_lease(item_id=b1.item_id, annotator=u1)
    assert submit(b2.item_id, u2)[1]
    assert AuditEvent.objects.filter(action="expire", item_id_ref=b1.item_id).exists()


def test_heartbeat_renews(project, annotator):
    a = services.claim_next_item(project=project, annotator=annotator)
    expire(a)
    renewed = services.renew_lease(item_id=a.item_id, annotator=annotator)
    assert renewed.expires_at > timezone.now() + timedelta(seconds=500)
    assert Item.objects.get(pk=a.item_id).lease_expires_at == renewed.expires_at


def test_idempotency_and_errors(project, annotator):
    a = services.claim_next_item(project=project, annotator=annotator)
    ann, created = submit(a.item_id, annotator, key="same")
    ann2, created2 = submit(a.item_id, annotator, key="same")
    assert created and not created2 and ann.pk == ann2.pk
    assert Annotation.objects.count() == 1
    other = services.claim_next_item(project=project, annotator=annotator)
    with pytest.raises(IdempotencyKeyReused):
        submit(other.item_id, annotator, key="same")
    with pytest.raises(InvalidLabel):
        submit(other.item_id, annotator, label="nope", key="k2")
    stranger = make_user()
    with pytest.raises(LeaseConflict, match="not leased to you"):
        submit(other.item_id, stranger)
    with pytest.raises(LeaseConflict, match="already labeled"):
        submit(a.item_id, annotator, key="k3")


def test_skip_not_offered_again(project, annotator):
    a = services.claim_next_item(project=project, annotator=annotator)
    services.skip_item(item_id=a.item_id, annotator=annotator)
    b = services.claim_next_item(project=project, annotator=annotator)
    assert b.item_id != a.item_id
    other = services.claim_next_item(project=project, annotator=make_user())
    assert other.item_id == a.item_id  # someone else gets it
    with pytest.raises(LeaseConflict):
        services.skip_item(item_id=a.item_id, annotator=annotator)


def test_undo_returns_item_with_fresh_lease(project, annotator):
    a = services.claim_next_item(project=project, annotator=annotator)
    submit(a.item_id, annotator)
    nxt = services.claim_next_item(project=project, annotator=annotator)
    ann = services.undo_last_annotation(project=project, annotator=annotator)
    assert ann.item_id == a.item_id
    ann.refresh_from_db()
    assert ann.discarded_at and ann.discard_reason == "undo"
    item = Item.objects.get(pk=a.item_id)
    assert item.status == "open" and item.annotation_count == 0 and item.lease_count == 1
    assert Assignment.objects.get(pk=nxt.pk).status == "expired"
    again = services.claim_next_item(project=project, annotator=annotator)
    assert again.item_id == a.item_id
    ann2, created = submit(a.item_id, annotator, label="unsuitable", key="after-undo")
    assert created and Item.objects.get(pk=a.item_id).consensus_label.slug == "unsuitable"


def test_undo_refused_after_review(annotator):
    project = make_project(n_items=1)
    a = services.claim_next_item(project=project, annotator=annotator)
    submit(a.item_id, annotator)
    services.review_item(item_id=a.item_id, reviewer=make_user("qa"), action="accept")
    assert services.undo_last_annotation(project=project, annotator=annotator) is None


def test_review_reject_relabel_accept():
    project = make_project(overlap=1, n_items=3)
    u, qa = make_user(), make_user("qa")
    ids = []
    for _ in range(3):
        a = services.claim_next_item(project=project, annotator=u)
        submit(a.item_id, u)
        ids.append(a.item_id)
    with pytest.raises(InvalidReview):
        services.review_item(item_id=ids[0], reviewer=qa, action="reject")
    services.review_item(item_id=ids[0], reviewer=qa, action="reject", reason="wrong")
    item = Item.objects.get(pk=ids[0])
    assert (item.status, item.annotation_count, item.review_status) == ("open", 0, "rejected")
    assert Annotation.objects.filter(item_id=ids[0], discard_reason="rejected").count() == 1
    again = services.claim_next_item(project=project, annotator=make_user())
    assert again.item_id == ids[0]  # back in the queue for a fresh label
    services.review_item(item_id=ids[1], reviewer=qa, action="relabel", label="size_mismatch")
    item = Item.objects.get(pk=ids[1])
    assert item.consensus_label.slug == "size_mismatch" and item.review_status == "relabeled"
    services.review_item(item_id=ids[2], reviewer=qa, action="accept")
    assert Item.objects.get(pk=ids[2]).review_status == "accepted"
    with pytest.raises(ReviewConflict):
        services.review_item(item_id=ids[0], reviewer=qa, action="accept")
    assert AuditEvent.objects.filter(action="review").count() == 3


def test_qa_sampling_and_review_queue():
    project = make_project(overlap=1, n_items=4, qa_sample_rate=1.0)
    u = make_user()
    for _ in range(4):
        a = services.claim_next_item(project=project, annotator=u)
        submit(a.item_id, u)
    queue = list(selectors.review_queue(project=project))
    assert len(queue) == 4 and {i.review_reason for i in queue} == {"sample"}


def test_gold_items_mixed_once_and_low_accuracy_flags_reviews():
    # Every finished item is sampled for QA, so the low-gold flag must upgrade a pending
    # "sample" item to "low_gold" (the stronger reason).
    project = make_project(overlap=1, gold_rate=1.0, qa_sample_rate=1.0)
    normal = make_creatives(3)
    gold = make_creatives(6)
    services.add_creatives_to_project(project=project, creatives=normal)
    services.add_creatives_to_project(
        project=project, creatives=gold, gold_labels={c.pk: "available" for c in gold}
    )
    u = make_user()
    # First a normal item, labeled before the annotator's gold accuracy is known.
    project.gold_rate = 0.0
    a = services.claim_next_item(project=project, annotator=u)
    submit(a.item_id, u)
    project.gold_rate = 1.0
    seen = []
    for _ in range(6):
        a = services.claim_next_item(project=project, annotator=u)
        assert a.item.is_gold
        seen.append(a.item_id)
        submit(a.item_id, u, label="unsuitable")  # wrong every time
    assert len(set(seen)) == 6  # each gold item at most once
    a = services.claim_next_item(project=project, annotator=u)
    assert not a.item.is_gold  # gold exhausted: normal queue
    assert not Item.objects.filter(is_gold=True, status="done").exists()
    first = Item.objects.get(pk=Annotation.objects.filter(annotator=u).order_by("id")[0].item_id)
    assert first.review_status == "pending" and first.review_reason == "low_gold"
    submit(a.item_id, u)
    assert Item.objects.get(pk=a.item_id).review_reason == "low_gold"
    # Payload does not reveal gold.
    assert "gold" not in str(selectors.next_item_payload(assignment=a)).lower()


def test_random_and_uncertainty_ordering():
    project = make_project(n_items=6)
    services.set_project_ordering(project=project, ordering="random")
    prios = list(Item.objects.filter(project=project).values_list("priority", flat=True))
    assert len(set(prios)) == 6
    services.set_project_ordering(project=project, ordering="uncertainty")
    ids = list(Item.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    services.set_item_priorities(project=project, priorities={ids[4]: 0.01, ids[2]: 0.02})
    u = make_user()
    a = services.claim_next_item(project=project, annotator=u)
    assert a.item_id == ids[4]
    submit(a.item_id, u)
    assert services.claim_next_item(project=project, annotator=u).item_id == ids[2]
    assert Project.objects.get(pk=project.pk).ordering == "uncertainty"


def test_overlap_cursor_skips_own_labels_and_wraps():
    project = make_project(overlap=2, n_items=4)
    u1, u2 = make_user(), make_user()
    labeled = []
    for _ in range(4):
        a = services.claim_next_item(project=project, annotator=u1)
        submit(a.item_id, u1)
        labeled.append(a.item_id)
    assert services.claim_next_item(project=project, annotator=u1) is None
    # u2 skips the first item; the wrap-around still finds the rest for u2.
    a = services.claim_next_item(project=project, annotator=u2)
    services.skip_item(item_id=a.item_id, annotator=u2)
    got = []
    while (b := services.claim_next_item(project=project, annotator=u2)) is not None:
        submit(b.item_id, u2)
        got.append(b.item_id)
    assert sorted(got) == sorted(labeled[1:])


def test_query_budget_service_level():
    project = make_project(overlap=2, n_items=20)
    users = [make_user() for _ in range(3)]
    for u in users:  # warm-up: schema cache, a previous claim (cursor)
        a = services.claim_next_item(project=project, annotator=u)
        submit(a.item_id, u)
    u = users[0]
    with CaptureQueriesContext(connection) as ctx:
        a = services.claim_next_item(project=project, annotator=u)
        selectors.next_item_payload(assignment=a)
    assert len(work_queries(ctx)) <= 4, work_queries(ctx)
    assert not any("SAVEPOINT" in q for q in work_queries(ctx))
    with CaptureQueriesContext(connection) as ctx:
        submit(a.item_id, u)
    assert len(work_queries(ctx)) <= 4, work_queries(ctx)
    assert not any("SAVEPOINT" in q for q in work_queries(ctx))


def test_audit_is_append_only(project, annotator):
    services.claim_next_item(project=project, annotator=annotator)
    assert AuditEvent.objects.filter(action="claim").exists()
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.update(action="tampered")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert not AuditEvent.objects.filter(action="tampered").exists()


def test_reopen_and_import_labels(project, annotator):
    a = services.claim_next_item(project=project, annotator=annotator)
    submit(a.item_id, annotator)
    assert services.reopen_items(item_ids=[a.item_id]) == 1
    assert Item.objects.get(pk=a.item_id).status == "open"
    other = make_user()
    ids = list(Item.objects.filter(project=project).values_list("id", flat=True)[:2])
    services.record_import_labels(
        project=project,
        rows=[{"item_id": i, "annotator": other, "label": "unsuitable"} for i in ids],
    )
    item = Item.objects.get(pk=ids[0])
    assert item.status == "done" and item.consensus_label.slug == "unsuitable"
    assert item.votes == {"unsuitable": 1}
    with pytest.raises(InvalidLabel):
        services.record_import_labels(
            project=project, rows=[{"item_id": ids[0], "annotator": other, "label": "x"}]
        )
