"""QA pages: roles, the review queue with reasons, and reject/accept/relabel in a real browser."""

import pytest

from annotation import services
from annotation.models import Annotation, Item, Review
from core.roles import ANNOTATOR, ML_ENGINEER, QA
from tests.factories import make_project, make_user
from tests.ui.images import pretty_creatives

pytestmark = pytest.mark.django_db(transaction=True)


def labelled_project(
    *, slug, n_items=3, labels=("available", "space_mismatch", "size_mismatch"), pretty=False
):
    """A project with QA sampling every item, each labeled once by a fresh annotator."""
    if pretty:
        project = make_project(slug=slug, qa_sample_rate=1.0)
        services.add_creatives_to_project(project=project, creatives=pretty_creatives(n_items))
    else:
        project = make_project(n_items=n_items, slug=slug, qa_sample_rate=1.0)
    annotator = make_user(ANNOTATOR, username=f"{slug}-annotator")
    for i in range(n_items):
        assignment = services.claim_next_item(project=project, annotator=annotator)
        services.submit_annotation(
            item_id=assignment.item_id,
            annotator=annotator,
            label=labels[i % len(labels)],
            idempotency_key=f"{slug}-{i}",
            duration_ms=1500 + i,
            note=f"note {i}",
        )
    return project, annotator


def test_annotators_get_403_on_qa_pages(client):
    project, annotator = labelled_project(slug="roles", n_items=1)
    item = project.items.get()
    client.force_login(annotator)
    for url in ("/qa/", "/qa/roles/", f"/qa/roles/items/{item.pk}/"):
        assert client.get(url).status_code == 403, url
    resp = client.post(f"/qa/roles/items/{item.pk}/review/", {"action": "accept"})
    assert resp.status_code == 403
    assert not Review.objects.exists()
    # Anonymous users are sent to the login page.
    client.logout()
    assert client.get("/qa/").status_code == 302
    # QA, ML engineers and superusers may review.
    for user in (make_user(QA), make_user(ML_ENGINEER), make_user("superuser")):
        client.force_login(user)
        assert client.get("/qa/").status_code == 200
        assert client.get("/qa/roles/").status_code == 200


def test_queue_shows_items_with_reason_and_every_annotation(client):
    project, annotator = labelled_project(slug="queue")
    client.force_login(make_user(QA))
    html = client.get("/qa/queue/").content.decode()
    pending = list(Item.objects.filter(project=project, review_status="pending"))
    assert pending
    for item in pending:
        assert f"Item #{item.pk}" in html
    assert "Random sample" in html
    assert annotator.username in html and "note 0" in html  # annotations with their notes
    assert "1.5 s" in html  # duration


def test_reject_requires_reason_and_relabel_requires_label(client):
    project, _ = labelled_project(slug="rules", n_items=1)
    item = project.items.get()
    client.force_login(make_user(QA))
    url = f"/qa/rules/items/{item.pk}/review/"
    resp = client.post(url, {"action": "reject", "reason": ""}, headers={"HX-Request": "true"})
    assert resp.status_code == 400 and b"reason is required" in resp.content
    resp = client.post(url, {"action": "relabel"}, headers={"HX-Request": "true"})
    assert resp.status_code == 400
    resp = client.post(url, {"action": "relabel", "label": "not-a-label"})
    assert resp.status_code == 400
    assert not Review.objects.exists()
    resp = client.post(url, {"action": "relabel", "label": "size_mismatch"})
    assert resp.status_code == 302
    item.refresh_from_db()
    assert item.adjudicated_label.slug == "size_mismatch"


@pytest.mark.browser
def test_qa_rejects_in_browser_and_item_returns_to_queue(live_server, new_page, login, shots_dir):
    project, annotator = labelled_project(slug="qa-browser", pretty=True)
    reviewer = make_user(QA, username="qa-reviewer")
    first = Item.objects.filter(project=project, review_status="pending").order_by("id").first()
    page = login(new_page(), reviewer)
    page.goto(f"{live_server.url}/qa/qa-browser/")
    page.locator(f".qa-detail[data-item='{first.pk}']").wait_for()
    page.screenshot(path=str(shots_dir / "qa-page.png"))

    # Keyboard: r focuses the reason, Enter rejects.
    page.keyboard.press("r")
    page.keyboard.type("product floats above the table")
    page.keyboard.press("Enter")
    page.locator(".flash-msg").wait_for()
    assert f"Rejected item #{first.pk}" in page.locator(".flash-msg").inner_text()

    first.refresh_from_db()
    assert first.status == Item.Status.OPEN
    assert first.review_status == Item.Review.REJECTED
    assert first.annotation_count == 0
    annotations = Annotation.objects.filter(item=first)
    assert annotations.count() == 1  # discarded, not deleted
    assert annotations.get().discard_reason == "rejected"
    review = Review.objects.get(item=first)
    assert (review.action, review.reason, review.reviewer) == (
        "reject",
        "product floats above the table",
        reviewer,
    )
    # Back in the labeling queue: a fresh annotator is served it.
    again = services.claim_next_item(project=project, annotator=make_user(ANNOTATOR))
    assert again is not None and again.item_id == first.pk

    # The panel moved on to the next pending item; accept it with `a`.
    second = Item.objects.filter(project=project, review_status="pending").order_by("id").first()
    page.locator(f".qa-detail[data-item='{second.pk}']").wait_for()
    page.keyboard.press("a")
    page.locator(".flash-msg", has_text=f"Accepted item #{second.pk}").wait_for()
    second.refresh_from_db()
    assert second.review_status == Item.Review.ACCEPTED

    # Relabel the last one by clicking a label.
    third = Item.objects.filter(project=project, review_status="pending").get()
    page.locator(f".qa-detail[data-item='{third.pk}']").wait_for()
    page.click("button[name=label][value=shape_hallucination]")
    page.locator(".flash-msg", has_text=f"Relabeled item #{third.pk}").wait_for()
    third.refresh_from_db()
    assert third.adjudicated_label.slug == "shape_hallucination"
    assert "queue is empty" in page.locator("#qa-panel").inner_text()
