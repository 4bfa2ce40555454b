"""Who may do what with jobs. Web pages: staff and ML engineers. API reads: also QA (they read
model outputs). Launch, cancel, retry: ML engineers (superusers have every role)."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.roles import ML_ENGINEER, QA, grant, has_role


def can_view_jobs(user) -> bool:
    return bool(user and user.is_authenticated and (user.is_staff or has_role(user, ML_ENGINEER)))


def can_read_jobs_api(user) -> bool:
    return can_view_jobs(user) or has_role(user, QA)


def can_manage_jobs(user) -> bool:
    """Launch, cancel, retry."""
    return has_role(user, ML_ENGINEER)


class JobsApiPermission(BasePermission):
    message = "Only ML engineers may launch, cancel or retry jobs."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return can_read_jobs_api(request.user)
        return can_manage_jobs(request.user)


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
