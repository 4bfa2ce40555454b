"""The QA queue is paged by item id (keyset), so a million pending items cost what 50 do."""

import pytest

from annotation.models import Item
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


def test_qa_queue_pages_by_id(client, django_assert_max_num_queries):
    project = make_project(n_items=120, slug="qa-paged")
    ids = list(Item.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    # Test setup only: 120 finished items waiting for QA (the services' path is tested elsewhere).
    Item.objects.filter(project=project).update(
        status="done", review_status="pending", review_reason="sample"
    )
    client.force_login(make_user("qa"))

    def page(query=""):
        response = client.get(f"/qa/qa-paged/{query}")
        assert response.status_code == 200
        return response

    with django_assert_max_num_queries(25):
        first = page()
    body = first.content.decode()
    assert "Review queue · 120" in body
    assert [i.pk for i in first.context["queue"]] == ids[:50]
    assert f"?after={ids[49]}" in body
    second = page(f"?after={ids[49]}")
    assert [i.pk for i in second.context["queue"]] == ids[50:100]
    last = page(f"?after={ids[99]}")
    assert [i.pk for i in last.context["queue"]] == ids[100:]
    assert "?after=" not in last.content.decode() and "← First" in last.content.decode()
    for bad in ("x", "-5", str(10**30)):
        assert [i.pk for i in page(f"?after={bad}").context["queue"]] == ids[:50]


def test_reviewing_the_last_item_of_a_page_moves_to_the_next_page(client):
    project = make_project(n_items=60, slug="qa-next")
    ids = list(Item.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    Item.objects.filter(project=project).update(
        status="done", review_status="pending", review_reason="sample"
    )
    client.force_login(make_user("qa"))
    response = client.post(f"/qa/qa-next/items/{ids[49]}/review/", {"action": "accept"})
    assert response.status_code == 302 and response["Location"].endswith(f"?item={ids[50]}")
    response = client.post(f"/qa/qa-next/items/{ids[59]}/review/", {"action": "accept"})
    assert response["Location"].endswith(f"?item={ids[0]}")  # past the end: back to the start


def test_pending_count_is_capped(client, monkeypatch):
    from annotation import selectors_ui

    monkeypatch.setattr(selectors_ui, "PENDING_COUNT_CAP", 100)
    project = make_project(n_items=120, slug="qa-cap")
    Item.objects.filter(project=project).update(
        status="done", review_status="pending", review_reason="sample"
    )
    client.force_login(make_user("qa"))
    assert "Review queue · 100+" in client.get("/qa/qa-cap/").content.decode()
