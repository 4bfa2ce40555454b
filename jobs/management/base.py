"""Base for commands that launch a job: enqueue (default) or run it here with `--foreground` and a
terminal progress bar; a failed foreground job exits non-zero. Subclasses name the kind and turn
their options into params:

    class Command(JobCommand):
        kind = "rfnet_train"
        def add_job_arguments(self, parser):
            parser.add_argument("--dataset", required=True)
        def job_params(self, options):
            return {"dataset": options["dataset"]}
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs import runner, services
from jobs.models import Job, JobStatus
from jobs.tasks import default_worker_id


class JobCommand(BaseCommand):
    kind: str = ""

    def add_job_arguments(self, parser) -> None:
        """Subclasses add their own options here."""

    def job_params(self, options) -> dict:
        return {}

    def job_inputs(self, options) -> dict:
        return {}

    def get_kind_name(self, options) -> str:
        return self.kind

    def add_arguments(self, parser) -> None:
        self.add_job_arguments(parser)
        parser.add_argument(
            "--foreground", action="store_true", help="Run here (no worker) with a progress bar."
        )
        parser.add_argument("--key", default=None, help="Idempotency key: enqueue at most once.")
        parser.add_argument("--user", default=None, help="Username recorded as requested_by.")
        parser.add_argument(
            "--num-processes",
            type=int,
            default=None,
            help="Processes under `accelerate launch` (one per GPU; distributed kinds only).",
        )

    def handle(self, *args, **options):
        kind = self.get_kind_name(options)
        params = dict(self.job_params(options))
        if options.get("num_processes"):
            params["num_processes"] = options["num_processes"]
        user = None
        if options.get("user"):
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user {options['user']!r}.")
        try:
            job = services.enqueue_job(
                kind=kind,
                params=params,
                requested_by=user,
                idempotency_key=options.get("key"),
                inputs=self.job_inputs(options),
                dispatch=not options["foreground"],
            )
        except ValidationError as exc:
            raise CommandError(f"Invalid parameters for {kind}: {_format(exc)}")
        if not options["foreground"]:
            self.stdout.write(
                f"Job #{job.pk} ({job.kind}) queued on '{job.queue}': /jobs/{job.pk}/"
            )
            return
        self.run_foreground(job)

    def run_foreground(self, job: Job) -> None:
        if job.status != JobStatus.QUEUED:
            raise CommandError(f"Job #{job.pk} is already {job.status} (same --key).")
        bar = ProgressBar(sys.stderr)
        worker_id = f"fg-{default_worker_id()}"
        while True:
            try:
                with _sigterm_interrupts():
                    status = runner.execute(
                        job_id=job.pk,
                        attempt=job.attempt,
                        worker_id=worker_id,
                        dispatch_retries=False,
                        on_flush=bar.update,
                        interrupt_cancels=True,
                    )
            except KeyboardInterrupt:
                bar.done()
                job.refresh_from_db()
                if job.status != JobStatus.CANCELLED:  # interrupted before or after its run
                    raise CommandError(f"Interrupted; job #{job.pk} is {job.status}.")
                raise CommandError(
                    f"Job #{job.pk} cancelled (interrupted). Retry it from /jobs/{job.pk}/ or "
                    "the API to continue; a resumable kind restarts from its last checkpoint."
                )
            bar.done()
            job.refresh_from_db()
            if job.status != JobStatus.QUEUED:  # retries (attempts left) run here too
                break
            self.stderr.write(f"attempt {job.attempt - 1} failed: {job.error}; retrying")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Job #{job.pk} {job.status} ({status}): {job.error}".strip())
        self.stdout.write(f"Job #{job.pk} succeeded: {job.result}")


@contextlib.contextmanager
def _sigterm_interrupts():
    """`kill` of a foreground command stops its job like Ctrl-C does (Python's default SIGTERM
    exits without unwinding, which left the job running until the sweeper re-queued it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _format(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in exc.message_dict.items())
    return " ".join(exc.messages)


class ProgressBar:
    def __init__(self, stream, width: int = 30):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.last = 0.0

    def update(self, reporter) -> None:
        step, total = reporter.step, reporter.total
        frac = (step / total) if total else 0.0
        filled = int(self.width * min(1.0, frac))
        eta = f" ETA {reporter.eta_seconds:.0f}s" if reporter.eta_seconds is not None else ""
        metrics = " ".join(f"{k}={v:.4g}" for k, v in list(reporter.last_metrics.items())[:3])
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {step}/{total or '?'} "
            f"{reporter.phase}{eta} {metrics}"
        )
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        elif time.monotonic() - self.last >= 5 or (total and step >= total):
            self.stream.write(line + "\n")
            self.last = time.monotonic()
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
