import hashlib
import re

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
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


# --- Previews (stylize.services.previews): rates from settings, "count/period" ---------

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])[a-z]*\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _RateSetting:
    """The rate of the setting ``rate_setting``, read when asked: "count/period", the
    period a unit (s, m, h, d, or a word starting so) with an optional number before it
    ("1/5m": one every five minutes); empty: no limit."""

    rate_setting = ""

    def get_rate(self):
        return getattr(settings, self.rate_setting, "") or None

    def parse_rate(self, rate):
        if rate is None:
            return None, None
        match = _RATE.match(str(rate))
        if match is None:
            raise ImproperlyConfigured(
                f"{self.rate_setting} must be like 30/h or 1/5m, not {rate!r}.")
        count, multiple, unit = match.groups()
        return int(count), int(multiple or 1) * _SECONDS[unit]


class PreviewAnonymousThrottle(_RateSetting, SimpleRateThrottle):
    """Preview grids made without an account, per client address (``client_ip``):
    ``PREVIEW_ANONYMOUS_RATE``. Users are not counted here."""

    scope = "preview_anonymous"
    rate_setting = "PREVIEW_ANONYMOUS_RATE"

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


class PreviewCreateThrottle(_RateSetting, SimpleRateThrottle):
    """Preview grids a user makes: ``PREVIEW_CREATE_RATE``, per user."""

    scope = "preview_create"
    rate_setting = "PREVIEW_CREATE_RATE"

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class PreviewPaintThrottle(_RateSetting, SimpleRateThrottle):
    """Re-paints of a preview (another strength or mix): ``PREVIEW_PAINT_RATE``, per user,
    or per client address without an account."""

    scope = "preview_paint"
    rate_setting = "PREVIEW_PAINT_RATE"

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = client_ip(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
