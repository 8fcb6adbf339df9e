"""Request and response middleware of the whole site (listed in ``settings.MIDDLEWARE``).

``RequestBodyLimitMiddleware``
    right after Django's ``SecurityMiddleware``, before anything that reads a body: a
    request that declares a body over the limit is answered
    ``413`` at once, before anything reads the body: a readable plain-text message, or
    JSON under ``/api/``. The limit is ``settings.REQUEST_BODY_MAX_BYTES`` (the upload
    limit plus room for the multipart envelope) for ``multipart/form-data``, the only
    kind of body that carries a photo, and ``DATA_UPLOAD_MAX_MEMORY_SIZE`` for any other
    (form fields, JSON: Django REST framework reads those whole, without Django's own
    check). Django reads a body only up to its ``Content-Length`` (a body without one is
    read as empty), so the declared length is what matters; the reverse proxy in
    docker-compose.yml limits bodies too.

``SecurityHeadersMiddleware``
    sets ``Permissions-Policy`` (no camera, microphone, geolocation … for any page) and
    replaces the WSGI server's ``Server`` banner with a plain ``Prisma`` (Django's
    development server otherwise announces ``WSGIServer/0.2 CPython/3.x.y``; it only adds
    its banner when the response has none). gunicorn always sends ``Server: gunicorn``
    itself (no version) and cannot be told not to, so under gunicorn the header is left
    alone rather than doubled; the reverse proxy in docker-compose.yml removes it.
    The Content-Security-Policy comes from django-csp (``CONTENT_SECURITY_POLICY``).

``client_ip(request)``
    the client's address as every throttle and lockout counts it: ``REMOTE_ADDR``, unless
    ``settings.NUM_PROXIES`` trusted proxies sit in front, then the address the outermost
    of them saw (the ``NUM_PROXIES``-th entry of ``X-Forwarded-For`` from the right), the
    same rule as Django REST framework's ``NUM_PROXIES``. A client can put anything in
    ``X-Forwarded-For``; only the entries our own proxies append can be believed.
"""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import translation
from django.utils.translation import gettext as _

#: What every page may use of the browser's powerful features: none of these.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "usb",
    )
)
SERVER_HEADER = "Prisma"


def client_ip(request) -> str:
    """The client's address, believing ``X-Forwarded-For`` only as far as ``NUM_PROXIES``."""
    meta = request.META
    remote_addr = meta.get("REMOTE_ADDR", "")
    num_proxies = int(getattr(settings, "NUM_PROXIES", 0) or 0)
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if num_proxies <= 0 or not forwarded:
        return remote_addr
    addresses = [address.strip() for address in forwarded.split(",")]
    return addresses[-min(num_proxies, len(addresses))] or remote_addr


def request_body_max_bytes(content_type: str = "multipart/form-data") -> int:
    """The longest body accepted with this Content-Type."""
    if content_type.lower().lstrip().startswith("multipart/form-data"):
        return int(settings.REQUEST_BODY_MAX_BYTES)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def _request_language(request):
    """The language ``LocaleMiddleware`` would pick for ``request``, active in a block."""
    return translation.override(translation.get_language_from_request(request))


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


class RequestBodyLimitMiddleware:
    """413 for a declared body over ``REQUEST_BODY_MAX_BYTES``, before it is read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            with _request_language(request):
                return self._refuse(request, 400, _("The request's Content-Length is not a "
                                                    "number."))
        content_type = request.META.get("CONTENT_TYPE", "")
        limit = request_body_max_bytes(content_type)
        if length > limit:
            with _request_language(request):  # answered before LocaleMiddleware runs
                if limit == int(settings.REQUEST_BODY_MAX_BYTES):
                    allowed = _("photos may be at most %(size)s") % {
                        "size": _megabytes(settings.UPLOAD_MAX_BYTES)}
                else:
                    allowed = _("without a photo, at most %(size).1f MB") % {
                        "size": limit / (1024 * 1024)}
                return self._refuse(request, 413, _("The request is too large (%(size)s): "
                                                    "%(allowed)s.") % {
                    "size": _megabytes(length), "allowed": allowed})
        return self.get_response(request)

    @staticmethod
    def _refuse(request, status: int, message: str):
        if request.path_info.startswith("/api/"):
            response = JsonResponse({"detail": message}, status=status)
        else:
            response = HttpResponse(
                message + "\n", status=status, content_type="text/plain; charset=utf-8"
            )
        response["Cache-Control"] = "no-store"
        # Said here: this answer skips the middleware that would add it, and without it
        # the server would have to close the connection to end the answer.
        response["Content-Length"] = str(len(response.content))
        return response


class SecurityHeadersMiddleware:
    """``Permissions-Policy`` on every response, and no WSGI server banner."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if not request.META.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
            response["Server"] = SERVER_HEADER
        return response
