from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "RFStudio core"

    def ready(self):
        from django.contrib import admin

        from . import checks  # noqa: F401 - registers the system checks
        from .policy import can_use_admin

        # The admin asks core.policy too (staff only; model permissions still apply per page).
        admin.site.has_permission = lambda request: can_use_admin(request.user)
