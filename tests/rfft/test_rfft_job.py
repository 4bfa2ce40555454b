"""The rfft job on a real db_worker: SIGKILL mid-run → sweep → a fresh worker resumes from the
checkpoint → a new DiffusionModel with lineage; curves on the job; bad input is refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from generation.models import DiffusionModel
from jobs import services
from jobs.models import Job, JobMetric, JobStatus
from jobs.sweeper import sweep_stale_jobs
from tests.factories import make_user
from tests.jobs.conftest import TIMINGS, Workers, wait_for, worker_env

PARAMS = dict(
    base="tiny-base",
    reward="latest",
    method="rfft",
    beta=0.5,
    steps=16,
    batch_size=1,
    lr=1e-3,
    num_inference_steps=4,
    last_k=2,
    guidance_scale=2.0,
    checkpoint_every=3,
)


@pytest.fixture
def workers(tmp_path, transactional_db, settings):
    settings.JOBS_WORK_DIR = str(tmp_path / "work")
    for key, value in TIMINGS.items():
        setattr(settings, f"JOBS_{key}", value)
    w = Workers(tmp_path)
    yield w
    w.stop_all()


def _worker(workers, tmp_path, settings, name):
    env = worker_env(
        tmp_path,
        RFSTUDIO_MODELS_DIR=str(settings.RFSTUDIO_MODELS_DIR),
        RFSTUDIO_CACHE_DIR=str(settings.RFSTUDIO_CACHE_DIR),
        RFSTUDIO_JOBS_WORK_DIR=str(settings.JOBS_WORK_DIR),
    )
    return workers.start(
        "db_worker",
        "--queue-name",
        "gpu",
        "--worker-id",
        name,
        "--no-reload",
        "--no-startup-delay",
        "--interval",
        "0.2",
        name=name,
        env=env,
    )


def job(pk) -> Job:
    return Job.objects.get(pk=pk)


@pytest.mark.slow
def test_killed_rfft_worker_resumes_and_registers_lineage(
    workers, tmp_path, settings, tiny_base, register, products
):
    reward = register()
    user = make_user("ml_engineer")
    pk = services.enqueue_job(kind="rfft", params=PARAMS, requested_by=user).pk
    assert job(pk).params["reward"] == reward.name  # "latest" resolved at enqueue
    first = _worker(workers, tmp_path, settings, "rf-doomed")
    wait_for(lambda: job(pk).step >= 7, timeout=120, what="step 7", on_fail=workers.logs)
    workers.kill(first)
    killed_at = job(pk).step
    assert job(pk).status == JobStatus.RUNNING
    _worker(workers, tmp_path, settings, "rf-rescue")

    def swept():
        sweep_stale_jobs()
        return job(pk).attempt == 2

    wait_for(swept, timeout=30, what="sweep", on_fail=workers.logs)
    done = wait_for(
        lambda: job(pk).is_finished and job(pk), timeout=120, what="finish", on_fail=workers.logs
    )
    assert done.status == JobStatus.SUCCEEDED, (done.error, workers.logs())
    # The reported step is flushed on a throttle: it may lag the last checkpoint by a step or two.
    resumed = done.result["resumed_from_step"]
    assert 6 <= resumed <= killed_at + 3 and resumed % 3 == 0  # a checkpoint_every=3 boundary
    assert any("resuming from checkpoint" in line for line in done.log_lines)
    model = DiffusionModel.objects.get(job_id=pk)
    assert model.parent == tiny_base and model.reward_model == reward.name
    assert model.lineage["params"]["method"] == "rfft" and model.controlnet_path
    names = set(JobMetric.objects.filter(job_id=pk).values_list("name", flat=True))
    assert {"reward", "f_ac", "l_cc", "grad_norm", "loss"} <= names
    # The attempt after the kill logged its steps from the checkpoint on, not from 0.
    steps = JobMetric.objects.filter(job_id=pk, name="f_ac", attempt=2).values_list(
        "step", flat=True
    )
    assert min(steps) == done.result["resumed_from_step"] + 1 and max(steps) == PARAMS["steps"]


@pytest.mark.django_db
def test_bad_parameters_are_refused_by_name(tiny_base, register, products):
    register()
    user = make_user("ml_engineer")
    cases = [
        ({"base": "nope"}, "base"),
        ({"reward": "nope"}, "reward"),
        ({"products": "RF-0,UNKNOWN-9"}, "products"),
        ({"num_inference_steps": 4, "last_k": 9}, "last_k"),
        ({"method": "ppo"}, "method"),
    ]
    for change, field in cases:
        with pytest.raises(ValidationError) as exc:
            services.enqueue_job(kind="rfft", params={**PARAMS, **change}, requested_by=user)
        assert field in exc.value.message_dict, (change, exc.value.message_dict)
    assert not Job.objects.exists()
    with pytest.raises(CommandError, match="base"):
        call_command("finetune_diffuser", "--base", "missing", "--reward", "latest")
    # refl stores beta 0 (no regulariser), and the CLI enqueues on the gpu queue.
    call_command(
        "finetune_diffuser",
        "--base",
        "latest",
        "--reward",
        "latest",
        "--method",
        "refl",
        "--beta",
        "3",
        "--products",
        "RF-0",
    )
    j = Job.objects.get()
    assert j.queue == "gpu" and j.params["beta"] == 0.0 and j.params["products"] == "RF-0"
    assert j.params["base"] == "tiny-base" and j.inputs["base"] == "tiny-base"


@pytest.mark.django_db
def test_admin_actions_on_rfnet_and_on_diffusion_models(client, tiny_base, register, products):
    reward = register()
    user = make_user("ml_engineer", is_staff=True)
    client.force_login(user)
    # On the RFNet model: the confirmation form is pre-filled with this RFNet as the reward.
    url = "/admin/feedback/feedbackmodel/"
    base = {"action": "finetune_against_rfnet", "_selected_action": [reward.pk]}
    confirm = client.post(url, base)
    assert confirm.status_code == 200, confirm.content[:500]
    html = confirm.content.decode()
    assert f'value="{reward.name}"' in html and 'name="job-base"' in html
    key = confirm.context["job_key"]
    done = client.post(
        url,
        {
            **base,
            "post": "yes",
            "job_key": key,
            "job-base": "latest",
            "job-reward": reward.name,
            "job-method": "rfft",
            "job-beta": "0.2",
            "job-steps": "5",
        },
    )
    assert done.status_code == 302, done.content.decode()[-2000:]
    j = Job.objects.get(kind="rfft")
    assert j.params["reward"] == reward.name and j.params["base"] == "tiny-base"
    assert j.params["beta"] == 0.2 and j.params["gradient_checkpointing"] is True
    # On the diffusion model (feedback's proxy admin): fine-tune and evaluate.
    url = "/admin/feedback/finetunablediffuser/"
    assert client.get(url).status_code == 200
    for action, field in (("finetune_diffuser", "job-base"), ("evaluate_generator", "job-model")):
        page = client.post(url, {"action": action, "_selected_action": [tiny_base.pk]})
        assert page.status_code == 200 and f'name="{field}"' in page.content.decode()
        assert 'value="tiny-base"' in page.content.decode()


@pytest.mark.django_db
def test_api_launch_validates_per_field_and_evaluations_are_readable(tiny_base, register, products):
    from rest_framework.test import APIClient

    register()
    api = APIClient()
    api.force_authenticate(make_user("annotator"))
    assert api.post("/api/feedback/rfft/", {"params": PARAMS}, format="json").status_code == 403
    assert api.get("/api/feedback/generator-evaluations/").status_code == 403
    api.force_authenticate(make_user("ml_engineer"))
    bad = api.post("/api/feedback/rfft/", {"params": {**PARAMS, "base": "nope"}}, format="json")
    assert bad.status_code == 400 and "base" in bad.json()["params"]
    assert not Job.objects.exists()
    ok = api.post("/api/feedback/rfft/", {"params": PARAMS, "idempotency_key": "k1"}, format="json")
    again = api.post(
        "/api/feedback/rfft/", {"params": PARAMS, "idempotency_key": "k1"}, format="json"
    )
    assert ok.status_code == again.status_code == 201 and ok.json()["job"] == again.json()["job"]
    api.force_authenticate(make_user("qa"))
    assert api.get("/api/feedback/generator-evaluations/").json() == []
