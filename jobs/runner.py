"""Runs one attempt of a job inside a worker (or in the foreground for `--foreground` commands).

The runner owns the attempt: it claims it (services.start_attempt), gives the kind a JobContext,
keeps the heartbeat fresh from a background thread (so a long step with no reports is not swept),
and records the outcome. With the param num_processes > 1 it launches itself across the GPUs of the
host with `accelerate launch -m jobs.launch`, and rank 0 reports.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection

from . import conf, devices, services
from .kinds import JobKind, get_kind
from .params import NUM_PROCESSES, clean_params
from .reporting import Cancelled, JobReporter, NullReporter
from .sweeper import maybe_sweep

logger = logging.getLogger("jobs")


@dataclass
class JobContext:
    job: Any  # jobs.models.Job
    params: dict
    reporter: Any
    work_dir: Path
    device: str
    attempt: int
    rank: int = 0
    world_size: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    def save_artifact(self, name: str, path) -> str:
        """Store a finished file (or folder, zipped) as an artifact; returns the storage name.
        Only rank 0 saves under accelerate."""
        if not self.is_main_process:
            return ""
        return services.save_artifact(job_id=self.job.pk, name=name, path=path)


def work_dir_for(job) -> Path:
    """Persistent per job across attempts: checkpoints live here for resume. The creation time is
    part of the name because ids restart when a database is reset while var/ is kept: a new job
    must never resume another job's checkpoint."""
    path = conf.work_root() / f"{job.pk}-{job.created_at:%Y%m%dT%H%M%S%f}"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Heartbeat(threading.Thread):
    """Refreshes the heartbeat every JOBS_HEARTBEAT_SECONDS, notices cancel requests (setting the
    reporter's event so the job raises Cancelled at its next report) and sweeps other stale jobs."""

    def __init__(self, *, job_id, attempt, worker_id, device, cancel_event):
        super().__init__(name=f"jobs-heartbeat-{job_id}", daemon=True)
        self.job_id, self.attempt = job_id, attempt
        self.worker_id, self.device = worker_id, device
        self.cancel_event = cancel_event
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(conf.heartbeat_seconds()):
                try:
                    close_old_connections()
                    owned, cancel = services.heartbeat(job_id=self.job_id, attempt=self.attempt)
                    if not owned or cancel:
                        self.cancel_event.set()
                    services.touch_worker(
                        worker_id=self.worker_id, device=self.device, current_job_id=self.job_id
                    )
                    maybe_sweep()
                except Exception:
                    logger.exception("heartbeat for job %s failed", self.job_id)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def execute(
    *,
    job_id: int,
    attempt: int,
    worker_id: str,
    dispatch_retries: bool = True,
    on_flush=None,
    interrupt_cancels: bool = False,
) -> str:
    """Run (job, attempt). Returns the job status afterwards ("skipped" for a stale task).

    A KeyboardInterrupt propagates. With `interrupt_cancels` (a `--foreground` command: the user
    pressed Ctrl-C) the job is first marked cancelled, so no worker picks it up again; in a
    worker it stays running until the sweeper re-queues it (the worker went away, not the job's
    owner)."""
    maybe_sweep()
    device = devices.pick_device()
    job = services.start_attempt(
        job_id=job_id, attempt=attempt, worker_id=worker_id, device=devices.describe(device)
    )
    if job is None:
        return "skipped"
    reporter = JobReporter(
        job_id=job.pk,
        attempt=attempt,
        flush_seconds=conf.flush_seconds(),
        log_limit=conf.log_lines(),
        initial_log=job.log_lines,
        start_step=job.step,
        total=job.total,
        on_flush=on_flush,
    )
    beat = Heartbeat(
        job_id=job.pk,
        attempt=attempt,
        worker_id=worker_id,
        device=devices.describe(device),
        cancel_event=reporter.cancel_event,
    )
    beat.start()
    status = "running"
    try:
        kind = get_kind(job.kind)
        cleaned, _ = clean_params(kind, job.params)
        ctx = JobContext(
            job=job,
            params=cleaned,
            reporter=reporter,
            work_dir=work_dir_for(job),
            device=device,
            attempt=attempt,
        )
        n = int(cleaned.get(NUM_PROCESSES) or 1)
        result = _run_distributed(ctx, n) if n > 1 else kind.run(ctx)
        reporter.close()
        services.finish_succeeded(
            job_id=job.pk, attempt=attempt, result=_jsonable(result), log_lines=None
        )
        status = "succeeded"
    except KeyboardInterrupt:
        if interrupt_cancels:
            _close_quietly(reporter)
            services.finish_cancelled(
                job_id=job.pk, attempt=attempt, why="stopped from the terminal (interrupted)"
            )
        raise
    except Cancelled:
        _close_quietly(reporter)
        if reporter.lost:
            status = "lost"  # swept while we were silent: the next attempt owns the job now
        elif services.finish_cancelled(job_id=job.pk, attempt=attempt):
            status = "cancelled"
        else:
            status = "lost"
    except Exception as exc:
        if isinstance(exc, ValidationError):
            exc = ValueError(f"invalid parameters at run time: {exc.messages}")
        logger.exception("job %s attempt %s failed", job.pk, attempt)
        _close_quietly(reporter)
        status = (
            services.finish_failed(
                job_id=job.pk, attempt=attempt, exc=exc, dispatch=dispatch_retries
            )
            or "lost"
        )
    finally:
        beat.stop()
        services.touch_worker(worker_id=worker_id, device=devices.describe(device))
    return str(status)


def _close_quietly(reporter: JobReporter) -> None:
    try:
        reporter.close()
    except Exception:
        logger.exception("final flush failed")


def _jsonable(result):
    if result is None:
        return None
    try:
        return json.loads(json.dumps(result, default=str))
    except (TypeError, ValueError):
        return {"repr": repr(result)[:2000]}


# --- multi-process (accelerate) ----------------------------------------------------------------
def launcher(n: int, device: str) -> list[str]:
    """The command that starts `n` processes of a module (append `-m module args…`).

    GPUs: `accelerate launch --multi_gpu`. CPU: torchrun, because `accelerate launch --cpu`
    starts a single process for N > 1 (it expects mpirun); `Accelerator(cpu=True)` joins
    torchrun's process group (gloo) all the same."""
    if device.startswith("cuda"):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n)]
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        return [*cmd, "--multi_gpu"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]


def launch_command(job_id: int, attempt: int, n: int, device: str) -> list[str]:
    return [*launcher(n, device), "-m", "jobs.launch", str(job_id), str(attempt)]


def _run_distributed(ctx: JobContext, n: int):
    """The parent keeps the heartbeat; rank 0 reports progress and writes result-<attempt>.json.
    A cancel request kills the whole process group."""
    result_path = ctx.work_dir / f"result-{ctx.attempt}.json"
    result_path.unlink(missing_ok=True)
    env = {**os.environ, "RFSTUDIO_JOBS_PARENT_PID": str(os.getpid())}
    proc = subprocess.Popen(
        launch_command(ctx.job.pk, ctx.attempt, n, ctx.device), env=env, start_new_session=True
    )
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if ctx.reporter.cancel_event.is_set():
                    raise Cancelled(f"job {ctx.job.pk} was cancelled")
    except BaseException:
        # Cancel, Ctrl-C or kill of a foreground run: the ranks run in their own session (a
        # terminal's Ctrl-C does not reach them), so stop the group here or it outlives the job.
        stop_process_group(proc)
        raise
    if rc == 3 or ctx.reporter.cancel_event.is_set():
        raise Cancelled(f"job {ctx.job.pk} was cancelled")
    if rc != 0:
        raise RuntimeError(f"accelerate launch with {n} processes exited with status {rc}")
    return json.loads(result_path.read_text()) if result_path.exists() else None


def stop_process_group(proc: subprocess.Popen, *, timeout: float = 30.0) -> None:
    """SIGTERM the process group led by `proc`, SIGKILL it after `timeout` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_rank(job_id: int, attempt: int) -> int:
    """Entry point of each process under accelerate (see jobs/launch.py)."""
    from .models import Job

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    job = Job.objects.get(pk=job_id)
    kind: JobKind = get_kind(job.kind)
    cleaned, _ = clean_params(kind, job.params)
    reporter = (
        JobReporter(
            job_id=job.pk,
            attempt=attempt,
            flush_seconds=conf.flush_seconds(),
            log_limit=conf.log_lines(),
            initial_log=job.log_lines,
            start_step=job.step,
            total=job.total,
        )
        if rank == 0
        else NullReporter()
    )
    ctx = JobContext(
        job=job,
        params=cleaned,
        reporter=reporter,
        work_dir=work_dir_for(job),
        device=devices.pick_device(),
        attempt=attempt,
        rank=rank,
        world_size=world,
    )
    try:
        result = kind.run(ctx)
    except Cancelled:
        return 3
    if rank == 0:
        from .files import atomic_save

        reporter.close()
        atomic_save(ctx.work_dir / f"result-{attempt}.json", json.dumps(_jsonable(result)))
    return 0
