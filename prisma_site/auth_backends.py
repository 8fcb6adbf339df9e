"""The authentication backends of ``settings.AUTHENTICATION_BACKENDS``.

``LockoutBackend`` comes first: django-axes' check that refuses a locked-out client or
username before ``ModelBackend`` looks at the password. Every log-in on the web has a
request (the log-in page, the admin's log-in, the API's token endpoint), so every one is
counted and can be locked out. ``authenticate()`` without a request (a shell, a
management command, ``Client.login`` in a test) has no client to count or lock out:
axes' own backend raises there, this one steps aside and lets ``ModelBackend`` decide.
"""

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
