"""Who may do what with jobs: core.policy decides (pages and API alike: reads for staff, ML
engineers and QA; launch, cancel, retry for ML engineers). These names stay for callers."""

from core.policy import can_manage_jobs, can_read_jobs  # noqa: F401 - re-exported
from core.roles import ML_ENGINEER, QA, grant

can_view_jobs = can_read_jobs
can_read_jobs_api = can_read_jobs


def grant_job_permissions(**kwargs) -> None:
    grant(
        ML_ENGINEER,
        [
            "jobs.view_job",
            "jobs.change_job",
            "jobs.view_jobartifact",
            "jobs.view_jobmetric",
            "jobs.view_worker",
        ],
    )
    grant(QA, ["jobs.view_job", "jobs.view_jobartifact"])
