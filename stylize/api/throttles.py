import hashlib

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from prisma_site.middleware import client_ip


class _RateFromSettings:
    """Read the rate when asked, not when the class was defined (so settings can change)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class JobCreateThrottle(_RateFromSettings, UserRateThrottle):
    """Jobs a user may create: ``DEFAULT_THROTTLE_RATES["job_create"]``, per user."""

    scope = "job_create"


class AuthTokenThrottle(_RateFromSettings, SimpleRateThrottle):
    """Password tries for a token: ``DEFAULT_THROTTLE_RATES["auth_token"]``, per address.

    The address is DRF's ``get_ident``: ``REMOTE_ADDR`` unless ``NUM_PROXIES`` (settings)
    trusted proxies sit in front, so a made-up ``X-Forwarded-For`` starts no new count.
    """

    scope = "auth_token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


# --- The password reset page (stylize.views.PasswordResetView); work on any request ---


class PasswordResetClientThrottle(_RateFromSettings, SimpleRateThrottle):
    """Reset requests from one client address (``client_ip``):
    ``DEFAULT_THROTTLE_RATES["password_reset_client"]``."""

    scope = "password_reset_client"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


class PasswordResetEmailThrottle(_RateFromSettings, SimpleRateThrottle):
    """Reset requests for one email address, whoever asks and whether or not an account
    has it: ``DEFAULT_THROTTLE_RATES["password_reset_email"]``."""

    scope = "password_reset_email"

    def __init__(self, email: str):
        self.email = email.strip().lower()
        super().__init__()

    def get_cache_key(self, request, view):
        digest = hashlib.sha256(self.email.encode()).hexdigest()  # no address in a key
        return self.cache_format % {"scope": self.scope, "ident": digest}
