"""The registry of job kinds. Each app registers its kinds in its AppConfig.ready():

from jobs.kinds import JobKind, register
register(JobKind(name="rfnet_train", queue="gpu", run=run_training, params_form=TrainForm,
                 label="Train RFNet", resumable=True, max_attempts=3))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

QUEUES = ("default", "gpu")


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Callable[[Any], dict | None]  # run(ctx: jobs.runner.JobContext) -> JSON-able dict | None
    queue: str = "default"
    params_form: type | None = None  # a django.forms.Form class; None = no parameters
    label: str = ""
    description: str = ""
    # Resumable kinds are re-enqueued after a crash (stale heartbeat) while attempts remain; they
    # must pick up their last checkpoint from ctx.work_dir. Failures (exceptions) are retried
    # under the same limit for every kind.
    resumable: bool = False
    max_attempts: int = 1
    # Kinds whose run() works under `accelerate launch` accept the param num_processes > 1.
    distributed: bool = False
    # lineage(cleaned_params) -> (inputs dict, input object or None): what the job reads (dataset
    # version, base model), recorded at enqueue whichever launcher (admin, CLI, API) was used.
    lineage: Callable[[dict], tuple[dict, Any]] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"Job kind {self.name!r}: unknown queue {self.queue!r} ({QUEUES})")
        if self.max_attempts < 1:
            raise ValueError(f"Job kind {self.name!r}: max_attempts must be >= 1")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


_REGISTRY: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Register (or re-register, e.g. on autoreload) a kind under its name."""
    _REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ValidationError(
            f"Unknown job kind {name!r} (known: {known}).", code="unknown_kind"
        ) from None


def all_kinds() -> list[JobKind]:
    return sorted(_REGISTRY.values(), key=lambda k: k.name)
