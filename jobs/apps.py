from django.apps import AppConfig
from django.db.models.signals import post_migrate


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from . import roles

        post_migrate.connect(roles.ensure_roles, sender=self, dispatch_uid="rfstudio-roles")
