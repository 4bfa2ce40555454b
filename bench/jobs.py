"""Jobs benchmark: enqueue-to-start latency with a warm `db_worker`, and reporter overhead on a
10,000-step torch loop. Appends to bench/RESULTS.md.

    .venv/bin/python bench/jobs.py [--jobs 20] [--steps 10000] [--interval 1.0]

Uses a private SQLite database in a temporary RFSTUDIO_VAR_DIR (or DATABASE_URL if set: then it
must be a scratch database, since it is migrated and written to).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def p95(values):
    values = sorted(values)
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


def tiny_loop(steps: int, reporter=None) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    if reporter is not None:
        reporter.progress(0, total=steps, phase="train")
    start = time.perf_counter()
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        value = loss.item()  # both variants read the loss, as any training loop logging it does
        if reporter is not None:
            reporter.progress(step)
            reporter.metric("loss", value, step)
    if reporter is not None:
        reporter.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0, help="db_worker poll interval")
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="rfs-bench-jobs-")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["RFSTUDIO_VAR_DIR"] = var
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["RFSTUDIO_DEVICE"] = "cpu"
    import django

    django.setup()
    import torch
    from django.core.management import call_command
    from django.db import connection

    from jobs import conf, services
    from jobs.models import Job, JobStatus
    from jobs.reporting import JobReporter

    torch.set_num_threads(1)
    call_command("migrate", verbosity=0)

    # --- reporter overhead ---------------------------------------------------------------------
    plain, reported = [], []
    for _ in range(args.repeats):
        plain.append(tiny_loop(args.steps))
        job = services.enqueue_job(kind="demo", params={"steps": 1}, dispatch=False)
        services.start_attempt(job_id=job.pk, attempt=1, worker_id="bench", device="cpu")
        rep = JobReporter(job_id=job.pk, attempt=1, flush_seconds=conf.flush_seconds())
        reported.append(tiny_loop(args.steps, rep))
    overhead = statistics.median(reported) / statistics.median(plain) - 1

    # --- enqueue-to-start latency ----------------------------------------------------------------
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--queue-name", "default,gpu", "--worker-id",
         "bench", "--no-reload", "--interval", str(args.interval), "-v", "0"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    latencies = []
    try:
        warm = services.enqueue_job(kind="demo", params={"steps": 1})
        while Job.objects.get(pk=warm.pk).status != JobStatus.SUCCEEDED:
            time.sleep(0.05)
        for _ in range(args.jobs):
            job = services.enqueue_job(kind="demo", params={"steps": 1})
            while (j := Job.objects.get(pk=job.pk)).status != JobStatus.SUCCEEDED:
                time.sleep(0.02)
            latencies.append((j.started_at - j.created_at).total_seconds())
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    vendor = connection.vendor
    lines = [
        f"\n## jobs — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n",
        f"Command: `.venv/bin/python bench/jobs.py --jobs {args.jobs} --steps {args.steps} "
        f"--interval {args.interval}` ({vendor}, {os.cpu_count()} CPUs, torch threads 1)\n",
        f"- enqueue→start latency, warm db_worker polling every {args.interval:g} s, "
        f"{args.jobs} jobs: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {p95(latencies) * 1000:.0f} ms",
        f"- reporter overhead, {args.steps}-step torch loop (progress + metric every step, "
        f"flush every {conf.flush_seconds():g} s), median of {args.repeats}: "
        f"plain {statistics.median(plain):.2f} s, reported {statistics.median(reported):.2f} s, "
        f"ratio {1 + overhead:.3f} (overhead {overhead * 100:+.1f} %, target ≤ 5 %)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    results = ROOT / "bench" / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n")
    with results.open("a") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
