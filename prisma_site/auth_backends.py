"""The authentication backends of ``settings.AUTHENTICATION_BACKENDS``, and the
django-axes handler of ``settings.AXES_HANDLER``.

``LockoutBackend`` comes first: django-axes' check that refuses a locked-out client or
username before ``ModelBackend`` looks at the password. Every log-in on the web has a
request (the log-in page, the admin's log-in, the API's token endpoint), so every one is
counted and can be locked out. ``authenticate()`` without a request (a shell, a
management command, ``Client.login`` in a test) has no client to count or lock out:
axes' own backend raises there, this one steps aside and lets ``ModelBackend`` decide.

``LockoutHandler`` is axes' database handler, except for what a successful log-in
forgets (docs/design/security.md, "A success forgets only its own username").
"""

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LockoutHandler(AxesDatabaseHandler):
    """Failures are counted per client address and per username
    (``AXES_LOCKOUT_PARAMETERS``), as axes does; a successful log-in
    (``AXES_RESET_ON_SUCCESS``) deletes only the failures recorded for the username that
    logged in, from any address, and none for other usernames.

    axes' own handler deletes every record that matches any lockout parameter of the
    success, so with the client address among them one log-in to one's own account
    forgot every failure from that address, whatever username they were for: an
    attacker could guess another account's password without end from one address.
    """

    def reset_user_attempts(self, request, credentials=None) -> int:
        username = get_client_username(request, credentials)
        if not username:
            return 0
        count, _ = AccessAttempt.objects.filter(username=username).delete()
        return count
