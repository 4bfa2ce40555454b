"""products → generate job on a real worker → creatives in a project → labelled in the browser."""

from __future__ import annotations

import pytest

from annotation.models import Annotation
from core.roles import ANNOTATOR
from generation.models import Generation
from jobs.services import enqueue_job
from tests.factories import make_project, make_user
from tests.feedback.test_end_to_end import wait_for, worker  # noqa: F401  (real db_worker)
from tests.generation._tiny import make_cutout_product, register_tiny

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_generate_on_a_worker_then_label_in_the_browser(
    worker,  # noqa: F811  (the fixture imported above)
    live_server,
    new_page,
    login,
    tmp_path,
):
    register_tiny(tmp_path, "tiny-e2e")
    make_cutout_product("E2E-1")
    project = make_project(slug="gen-e2e", name="Generated batch")
    job = enqueue_job(
        kind="generate",
        params={"skus": "E2E-1", "seeds": "0,1", "steps": 2, "project": "gen-e2e"},
        requested_by=make_user("superuser"),
    )
    job = wait_for(job, worker, timeout=240)
    assert job.status == "succeeded", (job.error, job.log_lines[-5:])
    generated = set(Generation.objects.filter(job=job).values_list("creative_id", flat=True))
    assert len(generated) == 6 and job.result["queued"] == 6
    assert set(project.items.values_list("creative_id", flat=True)) == generated

    annotator = make_user(ANNOTATOR)
    page = login(new_page(), annotator)
    page.goto(f"{live_server.url}/label/gen-e2e/")
    for _ in range(6):
        page.wait_for_function("document.body.dataset.itemId")
        current = page.locator("body").get_attribute("data-item-id")
        page.keyboard.press("1")
        page.wait_for_function(
            "prev => document.body.dataset.itemId !== prev",
            arg=current,
        )
    page.wait_for_function("document.body.dataset.pending === '0'")
    labelled = set(
        Annotation.objects.filter(item__project=project, annotator=annotator).values_list(
            "item__creative_id", flat=True
        )
    )
    assert labelled == generated
