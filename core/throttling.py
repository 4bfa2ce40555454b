"""DRF throttles per signed-in user and per anonymous IP (README "Limits")."""

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _SettingRate:
    """Reads its rate from settings at each request (DRF binds the rates at import), so the
    environment and tests decide; an empty rate disables the throttle."""

    setting = ""

    def get_rate(self):
        from django.conf import settings

        return getattr(settings, self.setting, None) or None

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class UserThrottle(_SettingRate, UserRateThrottle):
    """Per signed-in user (anonymous callers fall back to their IP)."""

    setting = "RFSTUDIO_THROTTLE_USER"


class AnonThrottle(_SettingRate, AnonRateThrottle):
    """Per anonymous client IP."""

    setting = "RFSTUDIO_THROTTLE_ANON"
    refused = False  # counting a refused call: the caller is anonymous, do not ask request.user

    def get_cache_key(self, request, view):
        if self.refused:
            return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
        return super().get_cache_key(request, view)
