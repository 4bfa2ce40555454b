"""One source of truth for an item's state: an item imported with a label ends in exactly the state
the services reach when an annotator submits that label (status, counters, consensus, agreement,
votes, QA selection), and unlabeled imports get the services' initial priority."""

import pytest
from django.core.management import call_command

from annotation import item_state, services
from annotation.models import Item
from generation.models import Creative
from tests.factories import make_user

pytestmark = pytest.mark.django_db

STATE = [
    "status",
    "annotation_count",
    "priority",
    "consensus_label_id",
    "agreement",
    "votes",
    "review_status",
    "review_reason",
]


def _state(item):
    item.refresh_from_db()
    return {field: getattr(item, field) for field in STATE}


@pytest.mark.parametrize(
    ("ordering", "overlap", "qa_rate"),
    [
        ("uncertainty", 1, 1.0),  # imports used to get priority 0.0 here, services 1.0
        ("uncertainty", 1, 0.0),
        ("fifo", 1, 1.0),  # imported finished items used never to be sampled for QA
        ("fifo", 2, 1.0),
    ],
)
def test_imported_item_matches_a_submitted_one(builder, ordering, overlap, qa_rate):
    project = services.create_project(
        name="State",
        slug="state",
        overlap=overlap,
        ordering=ordering,
        qa_sample_rate=qa_rate,
    )
    path = builder.write([builder.row(0, label="available"), builder.row(1)])
    call_command("import_creatives", str(path), "--project", "state")
    imported = Item.objects.get(project=project, external_id="ext-0")
    unlabeled = Item.objects.get(project=project, external_id="ext-1")

    # The same two creatives queued and labeled through the services, in a twin project.
    twin = services.create_project(
        name="Twin",
        slug="twin",
        overlap=overlap,
        ordering=ordering,
        qa_sample_rate=qa_rate,
    )
    services.add_creatives_to_project(
        project=twin, creatives=Creative.objects.order_by("external_id")
    )
    labeled = Item.objects.get(project=twin, creative=imported.creative)
    annotator = make_user()
    assignment = services.claim_next_item(project=twin, annotator=annotator)
    assert assignment.item.pk == labeled.pk
    services.submit_annotation(
        item_id=labeled.pk, annotator=annotator, label="available", idempotency_key="k"
    )
    fresh = Item.objects.get(project=twin, creative=unlabeled.creative)

    assert _state(imported) == _state(labeled)
    assert _state(unlabeled) == _state(fresh)
    expected = item_state.UNSCORED_PRIORITY if ordering == "uncertainty" else 0.0
    assert imported.priority == unlabeled.priority == expected
    if overlap == 1 and qa_rate == 1.0:
        assert (imported.review_status, imported.review_reason) == ("pending", "sample")


def test_random_ordering_draws_per_item(builder):
    project = services.create_project(name="R", slug="rand", ordering="random")
    path = builder.write([builder.row(i) for i in range(6)])
    call_command("import_creatives", str(path), "--project", "rand")
    priorities = list(Item.objects.filter(project=project).values_list("priority", flat=True))
    assert len(set(priorities)) == 6 and all(0.0 <= p < 1.0 for p in priorities)


def test_relabel_of_an_existing_item_is_sampled_for_qa(builder):
    """An existing open item that an import finishes goes through QA selection too."""
    project = services.create_project(name="E", slug="exist", qa_sample_rate=1.0)
    row = builder.row(0)
    path = builder.write([row])
    call_command("import_creatives", str(path), "--project", "exist")
    path = builder.write([{**row, "label": "unsuitable"}], name="labels.jsonl")
    call_command("import_creatives", str(path), "--project", "exist")
    item = Item.objects.get(project=project)
    assert (item.status, item.review_status, item.review_reason) == ("done", "pending", "sample")


def test_rules_are_pure():
    assert item_state.consensus_of({"a": 2, "b": 1}) == ("a", 2 / 3, 3)
    assert item_state.consensus_of({"a": 1, "b": 1}) == (None, 0.5, 2)
    assert item_state.consensus_of({"a": 1, "b": 2}, "a") == ("a", 1 / 3, 3)
    assert item_state.status_for(votes=2, overlap=2, is_gold=False) == "done"
    assert item_state.status_for(votes=5, overlap=2, is_gold=True) is None
    reason = item_state.review_reason
    assert reason(counts={"a": 1}, low_gold=True, qa_sample_rate=0) == "low_gold"
    assert reason(counts={"a": 1, "b": 1}, low_gold=False, qa_sample_rate=0) == "disagreement"
    assert reason(counts={"a": 2}, low_gold=False, qa_sample_rate=1.0) == "sample"
    assert reason(counts={"a": 2}, low_gold=False, qa_sample_rate=0.0) == ""


def test_overlap_change_keeps_qa_decisions_and_validates():
    from django.core.exceptions import ValidationError

    from tests.factories import make_project

    project = make_project(n_items=2, overlap=1, qa_sample_rate=0.0)
    items = list(Item.objects.filter(project=project).order_by("id"))
    for i, item in enumerate(items):
        annotator = make_user()
        services.claim_next_item(project=project, annotator=annotator)
        services.submit_annotation(
            item_id=item.pk, annotator=annotator, label="available", idempotency_key=f"o{i}"
        )
    Item.objects.filter(pk=items[0].pk).update(review_status="pending", review_reason="sample")
    services.review_item(item_id=items[0].pk, reviewer=make_user("qa"), action="accept")
    services.set_project_overlap(project=project, overlap=3)
    accepted, other = (Item.objects.get(pk=i.pk) for i in items)
    assert (accepted.status, accepted.review_status) == ("done", "accepted")  # QA decided
    assert other.status == "open"
    for bad in (0, 101, "2", True):
        with pytest.raises(ValidationError):
            services.set_project_overlap(project=project, overlap=bad)
