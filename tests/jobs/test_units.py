"""Reporter throttling and cancel, atomic files, device choice, charts."""

import os
import threading

import pytest

from core.charts import line_chart
from jobs import services
from jobs.devices import pick_device
from jobs.files import atomic_save, atomic_write_dir
from jobs.models import Job, JobMetric
from jobs.reporting import Cancelled, JobReporter

pytestmark = pytest.mark.django_db


def _running_job():
    job = services.enqueue_job(kind="demo", params={"steps": 3}, dispatch=False)
    return services.start_attempt(job_id=job.pk, attempt=1, worker_id="t", device="cpu")


def test_reporter_throttles_and_flushes_on_phase_change(django_assert_max_num_queries):
    job = _running_job()
    flushes = []
    reporter = JobReporter(job_id=job.pk, attempt=1, flush_seconds=60, on_flush=flushes.append)
    # Two flushes (phase change, end) for 3000 calls; batched metric inserts dominate the count.
    with django_assert_max_num_queries(40):
        reporter.progress(0, total=1000, phase="train")
        for step in range(1, 1001):
            reporter.progress(step)
            reporter.metric("loss", 1.0 / step)
        reporter.log("done")
        reporter.close()
    assert len(flushes) == 3  # phase change, step == total, close (the log line)
    job.refresh_from_db()
    assert job.step == 1000 and job.phase == "train" and job.log_lines[-1].endswith("done")
    assert JobMetric.objects.filter(job=job).count() == 1000


def test_reporter_raises_cancelled_after_cancel_request():
    job = _running_job()
    reporter = JobReporter(job_id=job.pk, attempt=1, flush_seconds=0)
    reporter.progress(1, total=10)
    services.cancel_job(job_id=job.pk)
    with pytest.raises(Cancelled):
        reporter.progress(2)
    # A job swept from under its worker (no longer this attempt's) also stops the loop.
    job2 = _running_job()
    r2 = JobReporter(job_id=job2.pk, attempt=1, flush_seconds=0)
    Job.objects.filter(pk=job2.pk).update(attempt=2, status="queued")
    with pytest.raises(Cancelled):
        r2.metric("loss", 1.0)
    assert r2.lost


def test_log_is_bounded():
    job = _running_job()
    reporter = JobReporter(job_id=job.pk, attempt=1, flush_seconds=60, log_limit=5)
    for i in range(20):
        reporter.log(f"line {i}")
    reporter.close()
    job.refresh_from_db()
    assert len(job.log_lines) == 5 and job.log_lines[-1].endswith("line 19")


def test_atomic_save_never_exposes_partial_file(tmp_path):
    target = tmp_path / "ckpt.bin"
    atomic_save(target, b"old")

    def failing_writer(path):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_save(target, failing_writer)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]  # no temp left behind
    with atomic_write_dir(tmp_path / "model") as d:
        (d / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_write_dir(tmp_path / "model") as d:
        (d / "a.txt").write_text("2")
        raise RuntimeError
    assert (tmp_path / "model" / "a.txt").read_text() == "1"


def test_device_override(monkeypatch):
    monkeypatch.setenv("RFSTUDIO_DEVICE", "cuda:3")
    assert pick_device() == "cuda:3"
    monkeypatch.delenv("RFSTUDIO_DEVICE")
    import torch

    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_chart_is_escaped_svg():
    svg = line_chart("<loss>", {"<loss>": [(1, 2.0), (2, 1.0), (3, float("nan"))]})
    assert svg.startswith("<svg") and "&lt;loss&gt;" in svg and "polyline" in svg
    assert "no data" in line_chart("x", {"x": []})


def test_the_one_chart_module_escapes_and_draws_everything():
    from core import charts

    labels = ["a<b", "c"]
    svg = charts.heatmap([[3, 1], [0, 2]], labels, title="T&", svg_id="hm")
    assert svg.startswith('<svg id="hm"') and svg.count("<rect") == 4
    assert "a&lt;b" in svg and "T&amp;" in svg and "<b" not in svg.replace("<b>", "")
    bars = charts.grouped_bars(
        [("x<", [2, 5]), ("y", [1, 0])], series=[("items", "#111"), ("votes", "#999")], title="B"
    )
    assert bars.count("<rect") == 4 and "x&lt;: 5 votes" in bars
    rel = charts.reliability_diagram([{"lo": 0.0, "hi": 0.5, "count": 3, "accuracy": 0.5,
                                       "confidence": 0.4}])  # fmt: skip
    assert rel.count("<rect") == 2


def test_sweeper_thread_only_in_worker_processes():
    from jobs.sweeper import _worker_id_from_argv, start_in_worker_process

    assert not start_in_worker_process(["manage.py", "runserver"])
    assert _worker_id_from_argv(["m", "db_worker", "--worker-id", "gpu-1"]) == "gpu-1"
    assert _worker_id_from_argv(["m", "rqworker", "--name=r1"]) == "r1"
    assert threading.active_count() >= 1 and os.getpid()
