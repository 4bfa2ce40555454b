"""System checks for deployment mistakes Django's own checks do not know about."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=False)
def insecure_dev_key(app_configs, **kwargs):
    """The public development key must never sign sessions outside DEBUG. Registered as a normal
    check (not deploy-only) so runserver, migrate and gunicorn's start-up checks refuse it, and
    `check --deploy` reports it too."""
    key = getattr(settings, "INSECURE_DEV_KEY", None)
    if not settings.DEBUG and key and key == settings.SECRET_KEY:
        return [
            Error(
                "The public development SECRET_KEY is in use with DEBUG off "
                "(RFSTUDIO_INSECURE_DEV_KEY).",
                hint="Set DJANGO_SECRET_KEY; RFSTUDIO_INSECURE_DEV_KEY is for local tooling only.",
                id="core.E001",
            )
        ]
    return []


def refuse_insecure_serving() -> None:
    """Called by config/wsgi.py and asgi.py: gunicorn/uvicorn run no system checks."""
    from django.core.exceptions import ImproperlyConfigured

    errors = insecure_dev_key(None)
    if errors:
        raise ImproperlyConfigured(f"{errors[0].msg} {errors[0].hint}")
