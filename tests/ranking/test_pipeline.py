"""Logs → features → encoder → ranker → evaluation → preview, through the job kinds and their
command twins (in the foreground; the worker path is in test_end_to_end.py)."""

import json

import pytest
import torch
from django.core.management import CommandError, call_command

from ranking.models import CreativeEmbedding, CreativeFeatures, PreviewEntry, RankingModel

from .conftest import catalogue, write_jsonl

# Jobs run with their heartbeat thread on its own connection: it must see the committed job.
pytestmark = pytest.mark.django_db(transaction=True)


def preference_logs(cat, days, start=1, seed=0):
    """Segment "a" clicks the first creative of each product most, "b" the last."""
    import random

    rng = random.Random(seed)
    rows = []
    for d in range(start, start + days):
        for seg in ("a", "b"):
            for sku, creatives in cat.items():
                for i, c in enumerate(creatives):
                    best = 0 if seg == "a" else len(creatives) - 1
                    ctr = 0.12 if i == best else 0.03
                    imp = 200
                    clk = sum(rng.random() < ctr for _ in range(imp))
                    row = {
                        "day": f"2026-11-{d:02d}",
                        "segment": seg,
                        "sku": sku,
                        "creative": c.external_id,
                        "impressions": imp,
                        "clicks": clk,
                    }
                    if d == start and i == 0:
                        row["segment_features"] = {"age": 20 if seg == "a" else 60}
                    rows.append(row)
    return rows


@pytest.fixture
def logged(tmp_path):
    cat = catalogue(n_products=6, per_product=3)
    call_command(
        "import_impressions", str(write_jsonl(tmp_path / "l.jsonl", preference_logs(cat, 8)))
    )
    return cat


def test_pipeline_commands(logged, tmp_path, capsys):
    call_command("extract_creative_features", "--extractors", "visual", "--foreground")
    assert CreativeFeatures.objects.filter(extractor="visual", error="").count() == 18
    # Cached per (creative, extractor, version): a second run computes nothing.
    call_command("extract_creative_features", "--extractors", "visual", "--foreground")
    assert CreativeFeatures.objects.count() == 18
    call_command(
        "train_encoder",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--image-size",
        "32",
        "--name",
        "enc-1",
        "--foreground",
    )
    encoder = RankingModel.objects.get(name="enc-1", kind="encoder")
    assert CreativeEmbedding.objects.filter(encoder=encoder).count() == 18
    assert "recall@5" in encoder.metrics["heldout"]
    assert (encoder.checkpoint_path / "index.faiss").is_file()
    # A creative imported after training gets its embedding from the features job.
    from tests.factories import make_creative

    late = make_creative(product=logged["P-0"][0].product, external_id="P-0-late")
    call_command("extract_creative_features", "--extractors", "embedding", "--foreground")
    assert CreativeEmbedding.objects.filter(encoder=encoder, creative=late).exists()
    call_command("train_ranker", "--name", "r1", "--epochs", "3", "--foreground")
    ranker = RankingModel.objects.get(name="r1")
    assert ranker.config["model"]["encoder"] == "enc-1"
    assert ranker.metrics["windows"]["test"] == ["2026-11-07", "2026-11-08"]
    with pytest.raises(CommandError, match="already exists"):
        call_command("train_ranker", "--name", "r1", "--foreground")
    with pytest.raises(CommandError, match="days"):
        call_command("train_ranker", "--name", "r2", "--days", "2026-11-09:2026-11-01")
    capsys.readouterr()
    call_command("evaluate_ranker", "--model", "latest", "--json")
    out = json.loads(capsys.readouterr().out)
    for key in ("ndcg@1", "ndcg@3", "gauc", "auc", "nsctr"):
        assert key in out and key in out["baselines"]["random"]
        assert key in out["baselines"]["highest_past_ctr"]
    # Future days from a file that was never imported.
    future = write_jsonl(tmp_path / "future.jsonl", preference_logs(logged, 2, start=20))
    call_command("evaluate_ranker", "--model", "r1", "--logs", str(future), "--json")
    out = json.loads(capsys.readouterr().out)
    assert out["lists"] == 12
    # Past CTR knows the preference: it beats random on the future days.
    assert out["baselines"]["highest_past_ctr"]["ndcg@1"] > out["baselines"]["random"]["ndcg@1"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"day": "x"}])
    with pytest.raises(CommandError, match="line 1"):
        call_command("evaluate_ranker", "--logs", str(bad), "--json")
    # Preview: every creative of every product, ranked, with contributions.
    from jobs import runner
    from jobs.services import enqueue_job

    job = enqueue_job(kind="ranking_preview", params={"segment": "a,b"}, dispatch=False)
    runner.execute(job_id=job.pk, attempt=job.attempt, worker_id="t", dispatch_retries=False)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert PreviewEntry.objects.filter(model=ranker).count() == 2 * 19  # the late one too
    top = PreviewEntry.objects.filter(segment__slug="a", rank=1).first()
    assert top.contributions and len(top.contributions[0]) == 2


def test_train_ranker_job_killed_midway_resumes_to_the_same_model(logged):
    """The job as a worker runs it, killed at step 8 (epoch-end checkpoints at 3, 6, 9): the
    next attempt resumes at step 6 from the job's work dir and registers the weights a job that
    was never interrupted registers."""
    from safetensors.torch import load_file

    from jobs.kinds import get_kind
    from jobs.params import clean_params
    from jobs.runner import JobContext, work_dir_for
    from jobs.services import enqueue_job
    from ranking.jobs import run_train_ranker

    from .test_ml import KillAt, Killed

    def run(job, reporter, attempt=1):
        cleaned, _ = clean_params(get_kind(job.kind), job.params)
        ctx = JobContext(job=job, params=cleaned, reporter=reporter, work_dir=work_dir_for(job),
                         device="cpu", attempt=attempt)  # fmt: skip
        return run_train_ranker(ctx)

    params = dict(epochs=4, batch_size=4, encoder="none", holdout_days=2)  # 12 lists: 3 steps
    straight = enqueue_job(kind="train_ranker", params={**params, "name": "a"}, dispatch=False)
    assert run(straight, KillAt())["ranker"] == "a"
    job = enqueue_job(kind="train_ranker", params={**params, "name": "b"}, dispatch=False)
    with pytest.raises(Killed):
        run(job, KillAt(8))
    assert not RankingModel.objects.filter(name="b").exists()
    log = KillAt()
    assert run(job, log, attempt=2)["ranker"] == "b"
    assert "Resuming the ranker at step 6 of 12." in log.logs
    a, b = (RankingModel.objects.get(name=n) for n in "ab")
    assert b.metrics["resumed_from_step"] == 6 and a.metrics["resumed_from_step"] == 0
    assert a.metrics["history"] == b.metrics["history"]
    wa, wb = (load_file(str(m.checkpoint_path / "model.safetensors")) for m in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
