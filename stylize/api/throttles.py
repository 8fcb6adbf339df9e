from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle


class _RateFromSettings:
    """Read the rate when asked, not when the class was defined (so settings can change)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class JobCreateThrottle(_RateFromSettings, UserRateThrottle):
    """Jobs a user may create: ``DEFAULT_THROTTLE_RATES["job_create"]``, per user."""

    scope = "job_create"


class AuthTokenThrottle(_RateFromSettings, SimpleRateThrottle):
    """Password tries for a token: ``DEFAULT_THROTTLE_RATES["auth_token"]``, per address."""

    scope = "auth_token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
