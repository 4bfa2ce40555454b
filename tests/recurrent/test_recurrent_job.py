"""recurrent_generate on the tiny diffuser with a real tiny RFNet as the gate: every attempt is
stored and linked, the loop stops a group at its first kept attempt, the report adds up."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from generation.models import Generation
from jobs.models import Job
from tests.generation._tiny import make_cutout_product, register_tiny

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(tmp_path, register):
    register_tiny(tmp_path, "tiny-r")
    make_cutout_product("R-1")
    make_cutout_product("R-2", category="electronics", w=30, h=18)
    model = register(prefix="gate")
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"prompt": "a product on a desk, {} walls"}]))
    return model, prompts


def _run(model, prompts, threshold, budget):
    call_command("recurrent_generate", "--model", "tiny-r", "--reward", model.name,
                 "--budget", str(budget), "--threshold", str(threshold), "--all",
                 "--prompts", str(prompts), "--steps", "2", "--guidance", "1",
                 "--seed-start", "10", "--foreground")  # fmt: skip
    return Job.objects.filter(kind="recurrent_generate").order_by("-id").first()


def test_rejected_groups_use_the_whole_budget_with_new_seeds(setup):
    model, prompts = setup
    job = _run(model, prompts, threshold=1.0, budget=2)
    rows = list(Generation.objects.filter(job=job).order_by("group", "attempt"))
    assert [(g.group, g.attempt, g.seed) for g in rows] == [
        (0, 1, 10), (0, 2, 11), (1, 1, 10), (1, 2, 11)]  # fmt: skip
    assert all(g.score is not None and g.kept is False for g in rows)
    params = rows[1].creative.params
    assert params["attempt"] == 2 and params["recurrent"]["reward_model"] == model.name
    r = job.result
    assert r["attempts"] == 4 and r["kept"] == 0 and r["usable_rate"] == 0.0
    assert r["attempts_per_usable_image"] is None and r["gpu_seconds"] > 0


def test_accepted_groups_stop_at_the_first_attempt(setup):
    model, prompts = setup
    job = _run(model, prompts, threshold=0.0, budget=3)
    rows = list(Generation.objects.filter(job=job))
    assert len(rows) == 2 and all(g.kept and g.attempt == 1 for g in rows)
    assert job.result["usable_rate"] == 1.0 and job.result["attempts_per_usable_image"] == 1.0
    _run(model, prompts, threshold=1.0, budget=2)  # a second run: 2 groups × 2 rejected
    from feedback.recurrent import usable_rate_by_model

    (report,) = usable_rate_by_model()
    assert report["model"] == "tiny-r" and report["groups"] == 4 and report["kept"] == 2
    assert report["attempts"] == 6 and report["usable_rate"] == 0.5
    assert report["attempts_per_usable_image"] == 3.0 and report["gpu_seconds"] > 0
    out = io.StringIO()
    call_command("recurrent_generate", "--report", stdout=out)
    assert json.loads(out.getvalue()) == [report]


def test_bad_parameters_are_refused(setup):
    model, prompts = setup
    with pytest.raises(CommandError, match="threshold"):
        call_command("recurrent_generate", "--threshold", "1.5", "--all", "--reward",
                     model.name, "--foreground")  # fmt: skip
    with pytest.raises(CommandError, match="reward"):
        call_command("recurrent_generate", "--all", "--reward", "nope", "--foreground")
    assert not Job.objects.exists()
