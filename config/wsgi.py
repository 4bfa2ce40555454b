import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from core.checks import refuse_insecure_serving  # noqa: E402 - needs the app registry

refuse_insecure_serving()
