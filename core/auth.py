"""Authentication backend: django-axes' lockout for logins that come with a request."""

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """Every login through a web form (Django's login view, the admin's) passes the request and
    is checked against the lockout. Calls without one (the test client's `login()`, scripts)
    have no client address to lock and go to the next backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
