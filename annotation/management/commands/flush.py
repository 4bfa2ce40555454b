"""`flush` wipes the whole database, the append-only audit log included: on SQLite it deletes
rows, which the audit trigger refuses unless this command is the one running (PostgreSQL uses
TRUNCATE, which row triggers do not see). Test databases are reset through this command."""

from django.core.management.commands.flush import Command as FlushCommand

from annotation.apps import _audit_purge


class Command(FlushCommand):
    def handle(self, **options):
        _audit_purge.allowed = True
        try:
            return super().handle(**options)
        finally:
            _audit_purge.allowed = False
