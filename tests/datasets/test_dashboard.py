import pytest

from tests.factories import make_user

from .conftest import make_voted_project

pytestmark = pytest.mark.django_db

A, U = "available", "unsuitable"


@pytest.fixture
def project():
    project, users, _ = make_voted_project(
        [
            {"sku": "a", "votes": [A, A, U]},
            {"sku": "b", "votes": [U, U, U]},
            {"sku": "c", "votes": [A, A, A]},
            {"sku": "g", "votes": [A, U, A], "gold": A},
            {"sku": "o", "votes": [A]},
        ],
        slug="dash",
    )
    return project


def test_dashboard_permissions(client, project):
    url = "/projects/dash/dashboard/"
    assert client.get(url).status_code == 302  # login first
    client.force_login(make_user("annotator"))
    assert client.get(url).status_code == 403
    for role in ("qa", "ml_engineer"):
        client.force_login(make_user(role))
        assert client.get(url).status_code == 200
    assert client.get("/projects/nope/dashboard/").status_code == 404


def test_dashboard_renders_charts_and_stats(client, project, django_assert_max_num_queries):
    client.force_login(make_user("qa"))
    with django_assert_max_num_queries(20):
        response = client.get("/projects/dash/dashboard/")
    html = response.content.decode()
    assert '<svg id="label-distribution"' in html and '<svg id="confusion"' in html
    assert html.count("<rect") >= 6 * 2 + 36  # two bars per class + 6×6 heatmap cells
    assert "annotator available / consensus available: 8" in html
    ctx = response.context
    assert ctx["progress"]["done"] == 4 and ctx["progress"]["total"] == 5
    first = {a["username"]: a for a in ctx["annotators"]}
    annotator = next(a for a in first.values() if a["labels"] == 5)
    assert annotator["gold_accuracy"] == 1.0
    assert annotator["labels_per_hour"] == pytest.approx(5 / (5 * 2 / 3600))
    assert ctx["coefficients"]["krippendorff_alpha"] is not None


def test_dashboard_empty_project(client):
    from annotation import services

    services.create_project(name="empty", slug="empty")
    client.force_login(make_user("ml_engineer"))
    response = client.get("/projects/empty/dashboard/")
    assert response.status_code == 200
    assert "No items with a consensus label yet" in response.content.decode()
