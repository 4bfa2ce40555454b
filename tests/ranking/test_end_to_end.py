"""Logs → train_ranker job on a real db_worker → "Preview ranking…" from the admin in a real
browser → the preview page shows each product's creatives in the ranker's order."""

import re

import pytest
from django.core.management import call_command

from core.roles import QA
from jobs.models import Job
from ranking.models import PreviewEntry, RankingModel
from tests.factories import PASSWORD, make_user
from tests.feedback.test_end_to_end import wait_for, worker  # noqa: F401  (fixture)

from .conftest import catalogue, write_jsonl
from .test_pipeline import preference_logs

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_logs_train_preview_in_browser(
    worker,  # noqa: F811  (the fixture imported above)
    live_server,
    new_page,
    login,
    shots_dir,
    tmp_path,
):
    from jobs.services import enqueue_job

    cat = catalogue(n_products=3, per_product=3)
    call_command(
        "import_impressions", str(write_jsonl(tmp_path / "l.jsonl", preference_logs(cat, 6)))
    )
    ml = make_user("superuser", is_staff=True)
    features = enqueue_job(kind="ranking_features", params={"extractors": "visual"})
    features = wait_for(features, worker, timeout=60)
    assert features.status == "succeeded", (features.error, features.log_lines[-10:])
    train = enqueue_job(
        kind="train_ranker",
        params={"name": "e2e-ranker", "epochs": 3, "encoder": "none"},
        requested_by=ml,
    )
    train = wait_for(train, worker, timeout=90)
    assert train.status == "succeeded", (train.error, train.log_lines[-10:])
    ranker = RankingModel.objects.get(name="e2e-ranker")
    assert ranker.metrics["ndcg@3"] is not None

    # The ML engineer launches "Preview ranking…" on segment "a" from the admin.
    page = new_page()
    login(page, ml, PASSWORD)
    page.goto(f"{live_server.url}/admin/ranking/segment/")
    page.check(f"input[name=_selected_action][value='{_segment_pk('a')}']")
    page.select_option("select[name=action]", "preview_ranking")
    page.click("button[name=index]")
    page.wait_for_selector("text=Launch job")
    assert page.input_value("input[name='job-segment']") == "a"
    page.click("input[value='Launch job']")
    page.wait_for_url(re.compile(r"/jobs/\d+/"))
    job = Job.objects.filter(kind="ranking_preview").get()
    job = wait_for(job, worker, timeout=60)
    assert job.status == "succeeded", (job.error, job.log_lines[-10:])

    # QA looks at the ranked lists.
    qa_page = new_page()
    login(qa_page, make_user(QA), PASSWORD)
    qa_page.goto(f"{live_server.url}/ranking/preview/?segment=a&model=e2e-ranker")
    cards = qa_page.locator("section.rank-row")
    assert cards.count() == 3
    shown = [
        int(x)
        for x in qa_page.locator("section[data-sku='P-0'] li.ranked-creative").evaluate_all(
            "els => els.map(e => e.dataset.creative)"
        )
    ]
    expected = list(
        PreviewEntry.objects.filter(segment__slug="a", model=ranker, product__sku="P-0")
        .order_by("rank")
        .values_list("creative_id", flat=True)
    )
    assert shown == expected and len(shown) == 3
    contributions = qa_page.locator("section[data-sku='P-0'] .contrib li").all_inner_texts()
    assert len(contributions) >= 3 and any(t.startswith("visual.") for t in contributions)
    qa_page.screenshot(path=str(shots_dir / "ranking-preview.png"), full_page=True)
    # Filter by category in the form.
    qa_page.select_option("select[name=category]", "shoes")
    qa_page.click("#preview-filters button[type=submit]")
    qa_page.wait_for_url(re.compile(r"category=shoes"))
    assert qa_page.locator("section.rank-row").count() == 1


def _segment_pk(slug):
    from ranking.models import Segment

    return Segment.objects.get(slug=slug).pk
