"""Queue positions restart from the new top when priorities are rewritten (issue 8, "cursors
reset when priorities change"): the project's priority epoch, the claim's cursor, the query
budget of the claim path, and a claim racing a rewrite's commit (PostgreSQL)."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from annotation import services
from annotation.models import Assignment, Item, Project
from tests.factories import make_creatives, make_project, make_user

from .conftest import work_queries

pytestmark = pytest.mark.django_db


def submit(item_id, user):
    return services.submit_annotation(
        item_id=item_id, annotator=user, label="available", idempotency_key=f"k-{item_id}-{user.pk}"
    )


def _ids(project):
    return list(Item.objects.filter(project=project).order_by("id").values_list("id", flat=True))


def _epoch(project) -> int:
    return Project.objects.values_list("priority_epoch", flat=True).get(pk=project.pk)


def _queue(n, overlap=2):
    project = make_project(overlap=overlap, n_items=n, ordering="uncertainty", qa_sample_rate=0)
    ids = _ids(project)
    services.set_item_priorities(project=project, priorities={i: k / n for k, i in enumerate(ids)})
    return project, ids


def test_rewrite_sends_the_cursor_back_to_the_new_top():
    project, ids = _queue(10)
    u = make_user()
    for expected in ids[:2]:  # walk the queue: the cursor is now at ids[1]
        a = services.claim_next_item(project=project, annotator=u)
        assert a.item_id == expected
        submit(a.item_id, u)
    # A rescoring puts the cursor's item mid-queue: continuing after it would serve ids[4]
    # while ids[9] is the most uncertain item now.
    new_order = [ids[k] for k in (9, 8, 7, 6, 5, 1, 0, 4, 3, 2)]
    before = _epoch(project)
    services.set_item_priorities(
        project=project, priorities={i: k / 10 for k, i in enumerate(new_order)}
    )
    assert _epoch(project) == before + 1
    with CaptureQueriesContext(connection) as ctx:
        a = services.claim_next_item(project=project, annotator=u)
    # The claim path: one INSERT ... SELECT and the payload's SELECT, no wrap-around retry.
    assert len(work_queries(ctx)) == 2, work_queries(ctx)
    assert a.item_id == ids[9]
    assert Assignment.objects.get(pk=a.pk).priority_epoch == _epoch(project)
    submit(a.item_id, u)
    # Within one epoch the cursor walks on as before.
    served = []
    while (b := services.claim_next_item(project=project, annotator=u)) is not None:
        submit(b.item_id, u)
        served.append(b.item_id)
    assert served == [i for i in new_order[1:] if i not in ids[:2]]


def test_every_annotator_restarts_and_labels_are_kept():
    project, ids = _queue(6)
    u1, u2 = make_user(), make_user()
    for u in (u1, u2):
        for _ in range(3):
            submit(services.claim_next_item(project=project, annotator=u).item_id, u)
    new_order = [ids[k] for k in (5, 2, 4, 3, 1, 0)]  # the cursors' item (ids[2]) comes second
    services.set_item_priorities(
        project=project, priorities={i: k / 6 for k, i in enumerate(new_order)}
    )
    # Both restart from the new top; what they labeled is never offered again.
    assert services.claim_next_item(project=project, annotator=u1).item_id == ids[5]
    assert services.claim_next_item(project=project, annotator=u2).item_id == ids[5]


def test_skipped_items_stay_skipped_after_a_rewrite():
    """A skip is the annotator's decision about the item, not a queue position: it survives."""
    project, ids = _queue(4, overlap=1)
    u = make_user()
    a = services.claim_next_item(project=project, annotator=u)
    services.skip_item(item_id=a.item_id, annotator=u)
    services.set_item_priorities(project=project, priorities={a.item_id: -1.0})
    assert services.claim_next_item(project=project, annotator=u).item_id != a.item_id


def test_who_bumps_the_epoch():
    project, ids = _queue(3)
    e = _epoch(project)
    services.set_project_ordering(project=project, ordering="random")  # rewrites every item
    assert _epoch(project) == e + 1
    # New items join behind (uncertainty: 1.0) or at a random place without moving anyone's
    # cursor item: no rewrite.
    services.add_creatives_to_project(project=project, creatives=make_creatives(2))
    assert services.set_item_priorities(project=project, priorities={}) == 0
    other = make_project(n_items=1)
    # Items of another project are ignored (and counted out).
    assert services.set_item_priorities(project=project, priorities={_ids(other)[0]: 0.5}) == 0
    assert _epoch(project) == e + 2
    assert _epoch(other) == 0


def test_bad_priority_writes_nothing():
    project, ids = _queue(3)
    e = _epoch(project)
    with pytest.raises(ValidationError, match=f"item {ids[1]}"):
        services.set_item_priorities(
            project=project, priorities={ids[0]: 0.9, ids[1]: float("nan")}
        )
    assert _epoch(project) == e
    assert Item.objects.get(pk=ids[0]).priority == 0.0


def test_a_stale_project_save_never_moves_the_epoch_back():
    project, ids = _queue(3)
    stale = Project.objects.get(pk=project.pk)
    services.set_item_priorities(project=project, priorities={ids[0]: 0.5})
    stale.instructions = "Look at the product's edges."
    stale.save()  # e.g. the admin form, loaded before the rescoring
    fresh = Project.objects.get(pk=project.pk)
    assert fresh.instructions == "Look at the product's edges."
    assert fresh.priority_epoch == stale.priority_epoch + 1


@pytest.mark.django_db(transaction=True)
def test_claim_while_a_rewrite_commits():
    """The race in docs/architecture.md: a claim that runs while a rescoring transaction holds
    its item rows passes over them (SKIP LOCKED) and carries the old epoch, so the claim after
    the commit starts from the new top."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite: the claim waits for the rewrite's writer lock (no overlap to test)")
    project, ids = _queue(6)
    u = make_user()
    submit(services.claim_next_item(project=project, annotator=u).item_id, u)  # cursor ids[0]
    old = _epoch(project)
    # ids[5] keeps 5/6; the others move around it
    new = {ids[4]: 0.0, ids[3]: 0.1, ids[0]: 0.2, ids[2]: 0.9, ids[1]: 0.95}
    holding, release, errors = threading.Event(), threading.Event(), []

    def rescoring():
        try:
            with transaction.atomic():
                services.set_item_priorities(project=project, priorities=new)
                holding.set()
                release.wait(20)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            holding.set()
            connection.close()

    thread = threading.Thread(target=rescoring)
    thread.start()
    try:
        assert holding.wait(20)
        a = services.claim_next_item(project=project, annotator=u)
        assert a.item_id == ids[5]  # ids[1..4] are locked by the rewrite: passed over
        assert Assignment.objects.get(pk=a.pk).priority_epoch == old
    finally:
        release.set()
        thread.join(30)
    assert not errors
    assert _epoch(project) == old + 1
    submit(a.item_id, u)
    # Without the epoch the cursor would sit at ids[5] (5/6) and serve ids[2] next.
    assert services.claim_next_item(project=project, annotator=u).item_id == ids[4]
