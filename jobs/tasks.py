"""The one task every job runs through. Its queue is chosen per job kind at enqueue time
(`run_job.using(queue_name=...)`); the arguments are just (job_id, attempt), so a stale task for an
earlier attempt is recognised and skipped."""

import os
import socket

from .tasks_api import task


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


@task(takes_context=True)
def run_job(context, job_id: int, attempt: int) -> dict:
    from . import runner

    ids = list(getattr(context.task_result, "worker_ids", None) or [])
    worker_id = ids[-1] if ids else default_worker_id()
    status = runner.execute(job_id=job_id, attempt=attempt, worker_id=worker_id)
    return {"job_id": job_id, "attempt": attempt, "status": status}
