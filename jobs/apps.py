from django.apps import AppConfig
from django.db.models.signals import post_migrate


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from core import roles

        from .builtin_kinds import register_builtin_kinds
        from .permissions import grant_job_permissions
        from .sweeper import start_in_worker_process

        post_migrate.connect(roles.ensure_roles, sender=self, dispatch_uid="rfstudio-roles")
        post_migrate.connect(
            grant_job_permissions, sender=self, dispatch_uid="rfstudio-jobs-permissions"
        )
        register_builtin_kinds()
        # Worker processes (db_worker, rqworker) sweep stale jobs even while idle.
        start_in_worker_process()
