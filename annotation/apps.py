import threading

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate

# Set only while `manage.py flush` runs (annotation/management/commands/flush.py): the SQLite
# trigger that refuses DELETE on AuditEvent asks this flag through a SQL function.
_audit_purge = threading.local()


def audit_purge_allowed() -> int:
    return 1 if getattr(_audit_purge, "allowed", False) else 0


def _register_sqlite_functions(sender, connection, **kwargs):
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            "rfstudio_audit_purge_allowed", 0, audit_purge_allowed
        )


def _grant_role_permissions(sender, **kwargs):
    from core.roles import ML_ENGINEER, QA, grant

    models = (
        "labelschema",
        "labelclass",
        "project",
        "item",
        "assignment",
        "annotation",
        "review",
        "auditevent",
        "datasetversion",
        "datasetitem",
        "annotatorgoldstats",
    )
    # QA works in the review pages and may look at everything annotation-related in the admin.
    grant(QA, [f"annotation.view_{m}" for m in models] + ["annotation.add_review"])
    grant(
        ML_ENGINEER,
        [f"annotation.{verb}_{m}" for m in models for verb in ("view", "add", "change")]
        + ["annotation.delete_project", "annotation.delete_labelclass"],
    )


class AnnotationConfig(AppConfig):
    name = "annotation"

    def ready(self):
        connection_created.connect(_register_sqlite_functions, dispatch_uid="rfstudio_sqlite_fns")
        # After jobs' post_migrate (which creates the groups): grant() get_or_creates anyway.
        post_migrate.connect(_grant_role_permissions, sender=self, dispatch_uid="annotation_roles")
        from . import signals  # noqa: F401  (schema cache invalidation)
        from .jobs import register_kinds

        register_kinds()
        from .generation_plugins import register as register_generation_plugins

        register_generation_plugins()  # datasets and projects for generation's jobs
