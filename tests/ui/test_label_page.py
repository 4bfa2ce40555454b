"""The labeling page in a real browser: keyboard labels, prefetch, undo, 409s; blind labeling."""

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Annotation, Assignment, Item
from core.roles import ANNOTATOR, QA
from tests.factories import make_project, make_user
from tests.ui.images import pretty_creatives

pytestmark = pytest.mark.django_db(transaction=True)

RF1M_KEYS = {
    "1": "available",
    "2": "unsuitable",
    "3": "space_mismatch",
    "4": "size_mismatch",
    "5": "indistinctiveness",
    "6": "shape_hallucination",
}


def shown_item(page) -> int:
    value = page.locator("body").get_attribute("data-item-id")
    return int(value) if value else 0


def wait_for_new_item(page, previous: int) -> int:
    page.wait_for_function(
        "prev => document.body.dataset.itemId && document.body.dataset.itemId !== String(prev)",
        arg=previous,
    )
    return shown_item(page)


def wait_saved(page):
    page.wait_for_function("document.body.dataset.pending === '0'")


def wait_prefetched(page, n=2):
    page.wait_for_function(f"window.rfsLabel && window.rfsLabel.state().queue.length === {n}")


@pytest.mark.browser
def test_label_five_by_keyboard_then_undo(live_server, new_page, login, shots_dir):
    project = make_project(slug="kbd", name="Spring catalogue · batch 3")
    services.add_creatives_to_project(project=project, creatives=pretty_creatives(8))
    annotator = make_user(ANNOTATOR, username="ann-kbd")
    page = login(new_page(), annotator)
    page.goto(f"{live_server.url}/label/kbd/")

    expected = {}  # item id -> label slug
    current = wait_for_new_item(page, 0)
    for key in ["1", "2", "3", "4", "5"]:
        # The next item is already leased and its image decoded before the key press.
        wait_prefetched(page)
        expected[current] = RF1M_KEYS[key]
        page.keyboard.press(key)
        current = wait_for_new_item(page, current)
    wait_saved(page)

    # Two leases while the page is open: the shown item and the prefetched one.
    wait_prefetched(page)
    held = set(
        Assignment.objects.filter(annotator=annotator, status="active").values_list(
            "item_id", flat=True
        )
    )
    assert held == {int(i) for i in page.evaluate("window.rfsLabel.state().queue")}
    assert current in held and not held & set(expected)

    page.screenshot(path=str(shots_dir / "label-page.png"))

    # Undo the fifth label: that item is shown again and its annotation discarded, not deleted.
    last_item = list(expected)[-1]
    page.keyboard.press("u")
    assert wait_for_new_item(page, current) == last_item
    wait_saved(page)

    rows = Annotation.objects.filter(annotator=annotator).select_related("label")
    active = {a.item_id: a.label.slug for a in rows if a.discarded_at is None}
    discarded = [(a.item_id, a.label.slug, a.discard_reason) for a in rows if a.discarded_at]
    assert active == {i: s for i, s in expected.items() if i != last_item}
    assert discarded == [(last_item, expected[last_item], "undo")]
    assert all(a.duration_ms is not None for a in rows)
    assert Item.objects.get(pk=last_item).status == Item.Status.OPEN

    # Relabel it with the button (clickable as well as keys).
    page.click("[data-label=shape_hallucination]")
    wait_for_new_item(page, last_item)
    wait_saved(page)
    assert Annotation.objects.filter(annotator=annotator).count() == 6
    assert (
        Annotation.objects.get(item_id=last_item, annotator=annotator, discarded_at=None).label.slug
        == "shape_hallucination"
    )
    # Progress follows: 5 done today.
    page.wait_for_function(
        "document.querySelector('#progress [data-stat=done-today]').textContent.trim() === '5'"
    )


@pytest.mark.browser
def test_lost_lease_is_shown_as_an_error(live_server, new_page, login):
    """A submit on an item whose lease went to someone else gets a 409 the annotator sees."""
    project = make_project(n_items=3, slug="lost", lease_seconds=600)
    annotator = make_user(ANNOTATOR)
    page = login(new_page(), annotator)
    page.goto(f"{live_server.url}/label/lost/")
    item_id = wait_for_new_item(page, 0)
    wait_prefetched(page)

    # Our lease runs out and another annotator takes the item.
    Assignment.objects.filter(item_id=item_id, annotator=annotator).update(status="expired")
    other = make_user(ANNOTATOR)
    Item.objects.filter(project=project).exclude(pk=item_id).update(priority=10)
    taken = services.claim_next_item(project=project, annotator=other)
    assert taken.item_id == item_id
    services.submit_annotation(
        item_id=item_id, annotator=other, label="available", idempotency_key="o-1"
    )

    page.keyboard.press("2")
    toast = page.locator(".toast.error")
    toast.wait_for()
    assert "NOT saved" in toast.inner_text()
    assert not Annotation.objects.filter(annotator=annotator).exists()


@pytest.mark.browser
def test_help_and_zoom(live_server, new_page, login, shots_dir):
    make_project(n_items=2, slug="help", name="Help project")
    page = login(new_page(), make_user(ANNOTATOR))
    assert page.url.endswith("/label/")  # home sends annotators to their projects
    page.locator("[data-project=help]").wait_for()
    page.screenshot(path=str(shots_dir / "label-projects.png"))
    page.goto(f"{live_server.url}/label/help/")
    wait_for_new_item(page, 0)
    page.keyboard.press("?")
    dialog = page.locator("#help-dialog")
    dialog.wait_for(state="visible")
    assert "Shape hallucination" in dialog.inner_text()
    assert "pedestals" in dialog.inner_text()  # label descriptions
    page.screenshot(path=str(shots_dir / "label-help.png"))
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.keyboard.press("z")
    assert "zoomed" in page.locator("#stage").get_attribute("class")
    page.keyboard.press("z")
    assert "zoomed" not in page.locator("#stage").get_attribute("class")


def test_label_page_is_blind_to_other_annotators(client):
    """Neither the page nor the item payload carries anything about other people's labels."""
    project = make_project(n_items=1, overlap=2, slug="blind")
    first = make_user(ANNOTATOR, username="first-annotator")
    assignment = services.claim_next_item(project=project, annotator=first)
    services.submit_annotation(
        item_id=assignment.item_id,
        annotator=first,
        label="shape_hallucination",
        idempotency_key="k1",
        note="SECRET-NOTE",
    )
    second = make_user(ANNOTATOR)
    client.force_login(second)
    page = client.get("/label/blind/").content.decode()
    claim = client.post("/label/blind/claim/", {}, content_type="application/json")
    assert claim.status_code == 200
    payload = claim.json()["item"]
    assert payload["item_id"] == assignment.item_id  # the same item, second vote
    assert set(payload) == {
        "item_id",
        "lease_expires_at",
        "image_url",
        "width",
        "height",
        "prompt",
        "product",
    }
    for text in (page, claim.content.decode()):
        assert "first-annotator" not in text
        assert "SECRET-NOTE" not in text
        assert "consensus" not in text.lower()
    # No label button starts selected.
    assert 'aria-pressed="true"' not in page


def test_label_endpoints_validate_input(client):
    make_project(n_items=2, slug="val")
    user = make_user(ANNOTATOR)
    client.force_login(user)
    item = client.post("/label/val/claim/", {}, content_type="application/json").json()["item"]
    url = reverse("label-submit", args=["val", item["item_id"]])
    bad = client.post(url, "not json", content_type="application/json")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    bad = client.post(url, {"label": "available"}, content_type="application/json")
    assert bad.status_code == 400 and "idempotency_key" in bad.json()["error"]
    bad = client.post(
        url, {"label": "nope", "idempotency_key": "x"}, content_type="application/json"
    )
    assert bad.status_code == 400
    ok = client.post(
        url, {"label": "available", "idempotency_key": "x"}, content_type="application/json"
    )
    assert ok.status_code == 201
    again = client.post(
        url, {"label": "available", "idempotency_key": "x"}, content_type="application/json"
    )
    assert again.status_code == 200 and again.json()["annotation_id"] == ok.json()["annotation_id"]
    assert Annotation.objects.filter(annotator=user).count() == 1
    # An item of another project is not reachable through this project's URL.
    other = make_project(n_items=1, slug="val-other")
    other_item = other.items.get()
    url = reverse("label-submit", args=["val", other_item.pk])
    resp = client.post(
        url, {"label": "available", "idempotency_key": "y"}, content_type="application/json"
    )
    assert resp.status_code == 404
    # Heartbeat reports leases we do not hold as lost.
    beat = client.post(
        "/label/val/heartbeat/", {"item_ids": [other_item.pk]}, content_type="application/json"
    )
    assert beat.json()["lost"] == [other_item.pk]


def test_project_listing_and_access(client):
    open_project = make_project(n_items=2, slug="open-to-all", name="Open to all")
    restricted = make_project(n_items=1, slug="restricted", name="Restricted")
    insider = make_user(ANNOTATOR)
    restricted.annotators.add(insider)
    outsider = make_user(ANNOTATOR)
    client.force_login(outsider)
    listing = client.get("/label/").content.decode()
    assert "Open to all" in listing and "Restricted" not in listing
    assert client.get("/label/restricted/").status_code == 403
    assert client.get(f"/label/{open_project.slug}/").status_code == 200
    client.force_login(insider)
    assert client.get("/label/restricted/").status_code == 200
    # A QA reviewer without the annotator role cannot label.
    client.force_login(make_user(QA))
    assert client.get("/label/").status_code == 403
    assert (
        client.post("/label/open-to-all/claim/", {}, content_type="application/json").status_code
        == 403
    )


@pytest.mark.browser
def test_heartbeat_renews_both_leases(live_server, new_page, login):
    project = make_project(n_items=3, slug="beat", lease_seconds=10)
    annotator = make_user(ANNOTATOR)
    page = login(new_page(), annotator)
    page.goto(f"{live_server.url}/label/beat/")
    wait_for_new_item(page, 0)
    wait_prefetched(page)
    first = {
        a.item_id: a.expires_at
        for a in Assignment.objects.filter(annotator=annotator, status="active")
    }
    assert len(first) == 2
    # lease_seconds / 3 rounds up to the 5 s minimum beat.
    page.wait_for_timeout(5600)
    later = {
        a.item_id: a.expires_at
        for a in Assignment.objects.filter(annotator=annotator, status="active")
    }
    assert later.keys() == first.keys()
    assert all(later[i] > first[i] for i in first), (first, later)
    assert project.items.filter(status="open").count() == 3


def test_undo_refuses_reviewed_items(client):
    make_project(n_items=1, slug="undo-reviewed", qa_sample_rate=1.0)
    annotator = make_user(ANNOTATOR)
    client.force_login(annotator)
    item = client.post("/label/undo-reviewed/claim/", {}, content_type="application/json")
    item_id = item.json()["item"]["item_id"]
    url = reverse("label-submit", args=["undo-reviewed", item_id])
    client.post(
        url, {"label": "available", "idempotency_key": "a"}, content_type="application/json"
    )
    services.review_item(item_id=item_id, reviewer=make_user(QA), action="accept")
    resp = client.post("/label/undo-reviewed/undo/", {}, content_type="application/json")
    assert resp.status_code == 200
    assert resp.json()["item"] is None and "Nothing to undo" in resp.json()["message"]
    assert Annotation.objects.get(item_id=item_id).discarded_at is None


@pytest.mark.browser
def test_offline_label_shows_next_item_and_is_retried(live_server, new_page, login):
    """Optimistic submit: the next (prefetched) item shows at once while the network is down;
    the label is retried with the same idempotency key and stored exactly once."""
    make_project(n_items=4, slug="offline")
    annotator = make_user(ANNOTATOR)
    page = login(new_page(), annotator)
    page.goto(f"{live_server.url}/label/offline/")
    first = wait_for_new_item(page, 0)
    wait_prefetched(page)
    page.context.set_offline(True)
    page.keyboard.press("3")
    second = wait_for_new_item(page, first)  # no network needed
    page.wait_for_function("document.getElementById('status-line').textContent.includes('Offline')")
    assert not Annotation.objects.filter(annotator=annotator).exists()
    page.context.set_offline(False)
    wait_saved(page)
    stored = Annotation.objects.get(annotator=annotator)
    assert (stored.item_id, stored.label.slug) == (first, "space_mismatch")
    assert shown_item(page) == second
    wait_prefetched(page)  # the queue refills once the network is back
