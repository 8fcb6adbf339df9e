"""Job webhooks: a program's ``callback_url``, checked, then POSTed the job's JSON once it ends.

The contract (docs/design/webhooks.md has the reasons):

* A callback URL is ``https://`` (``http://`` too while ``DEBUG`` is on), with no user
  name or password in it, at most 2,000 characters, and every address its host resolves
  to is public: loopback, private, shared (CGNAT), link-local (169.254.169.254, the
  cloud metadata address, among them), reserved, multicast and unspecified addresses are
  refused, IPv6 ones and IPv4 ones inside IPv6 (``::ffff:10.0.0.1``, 6to4, Teredo,
  NAT64) alike, site-local IPv6 (``fec0::/10``) too; a host that resolves to nothing
  is refused too (and retried at send time, DNS may answer later). A refused name is
  said to resolve to "an address that is not public", never which address or what kind:
  the message would otherwise tell any user the private addresses of internal names.
  ``WEBHOOK_ALLOW_LOOPBACK`` (the tests' settings only) lets loopback receivers in,
  over ``http://`` as well.
* ``callback_url_clean`` checks it when the job is created (a 400 for the API); the
  delivery checks it again, resolving the host afresh, and connects to the very address
  it checked (the ``Host`` header and TLS's SNI and certificate check keep the name), so
  a DNS answer changed in between reaches nothing it refused.
* When the job ends, ``job_webhook_deliver`` POSTs the job as the API shows it
  (``GET /api/v1/jobs/<id>/``) with ``X-Prisma-Signature: sha256=<hex>``, the
  HMAC-SHA256 of the body under the owner's webhook secret (the profile page), and
  ``X-Prisma-Event`` (``job.succeeded`` / ``job.failed``) and ``X-Prisma-Delivery`` (a
  new id per attempt). Any 2xx answer within ``WEBHOOK_TIMEOUT`` seconds is a delivery;
  redirects are not followed (a 3xx is a failure) and the answer's body is not read.
* A failure is retried by the task ``stylize.tasks.job_webhook_deliver`` after
  ``WEBHOOK_RETRY_BACKOFF`` seconds, doubled each time, until ``WEBHOOK_MAX_ATTEMPTS``
  attempts; an address refused at send time is not retried. The row counts the attempts
  (``callback_attempts``) and keeps the last failure (``callback_error``).
* At most one successful delivery per job: nothing is sent once ``callback_delivered_at``
  is set, and it is set by a guarded update (``… WHERE callback_delivered_at IS NULL``).
"""

import hashlib
import hmac
import http.client
import ipaddress
import logging
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from rest_framework.renderers import JSONRenderer

from stylize.models import StyleJob

from . import accounts

logger = logging.getLogger(__name__)

#: The longest callback URL (``StyleJob.callback_url``'s ``max_length``).
CALLBACK_URL_MAX_LENGTH = 2000
SIGNATURE_HEADER = "X-Prisma-Signature"
USER_AGENT = "Prisma-Webhook/1.0"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackRefused(Exception):
    """The callback URL, or an address its host resolves to, may not be called."""


class CallbackUnresolved(CallbackRefused):
    """The callback URL's host resolves to nothing (now: DNS may answer later)."""


class WebhookRetry(Exception):
    """The delivery failed and is tried again ``countdown`` seconds from now."""

    def __init__(self, job_id, countdown: float, reason: str):
        super().__init__(f"Webhook of job {job_id} retries in {countdown:.0f} s: {reason}")
        self.countdown = countdown


class _DeliveryFailed(Exception):
    def __init__(self, reason: str, *, retry: bool = True):
        super().__init__(reason)
        self.retry = retry


# --------------------------------------------------------------------------- addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and routes to, if any."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: Address) -> str | None:
    """Why a webhook may not be sent to ``address``, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_refusal(embedded)
    if address.is_loopback:
        return None if settings.WEBHOOK_ALLOW_LOOPBACK else _("a loopback address")
    if address.is_link_local:
        return _("a link-local address (such as the cloud metadata address)")
    if address.is_unspecified:
        return _("an unspecified address")
    if address.is_multicast:
        return _("a multicast address")
    if address.is_private or address.is_reserved or not address.is_global:
        return _("a private or reserved address")
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return _("a private or reserved address")  # fec0::/10: deprecated, not global
    return None


def _literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def callback_addresses(host: str, port: int) -> list[Address]:
    """The addresses ``host`` resolves to now, each once, checked: raises
    ``CallbackRefused`` if it resolves to none or to any that may not be called."""
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise CallbackUnresolved(
                _("The callback URL's host %(host)s could not be found.") % {"host": host}
            ) from exc
        addresses = list(dict.fromkeys(
            ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos
        ))
    if not addresses:
        raise CallbackUnresolved(
            _("The callback URL's host %(host)s could not be found.") % {"host": host}
        )
    for address in addresses:
        refusal = address_refusal(address)
        if refusal and literal is not None:  # the caller wrote it: its kind tells nothing
            raise CallbackRefused(
                _("The callback URL's address %(host)s is %(what)s: webhooks are only sent "
                  "to public addresses.") % {"host": host, "what": refusal})
        if refusal:  # a name: neither the address nor its kind (an internal name's secret)
            raise CallbackRefused(
                _("The callback URL's host %(host)s resolves to an address that is not "
                  "public: webhooks are only sent to public addresses.") % {"host": host})
    return addresses


# --------------------------------------------------------------------------- the URL


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def _target(url: str) -> _Target:
    """The parts of a callback URL, with the form checks; raises ``CallbackRefused``."""
    if len(url) > CALLBACK_URL_MAX_LENGTH:
        raise CallbackRefused(_("The callback URL is longer than %(max)d characters.")
                              % {"max": CALLBACK_URL_MAX_LENGTH})
    schemes = ["http", "https"] if plain_http_allowed() else ["https"]
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError as exc:
        raise CallbackRefused(_("The callback URL is not a valid URL.")) from exc
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise CallbackRefused(_("The callback URL must start with https://."))
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused(
            _("The callback URL may not hold a user name or password: check the "
              "X-Prisma-Signature header instead.")
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise CallbackRefused(_("The callback URL's port is not valid.")) from exc
    try:  # the name as it goes into the Host header, SNI and DNS
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise CallbackRefused(_("The callback URL is not a valid URL.")) from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(scheme=parts.scheme, host=host, port=port, path=path)


def plain_http_allowed() -> bool:
    """Whether ``http://`` callbacks are accepted: while ``DEBUG`` is on, and in the
    tests (``WEBHOOK_ALLOW_LOOPBACK``)."""
    return bool(settings.DEBUG or settings.WEBHOOK_ALLOW_LOOPBACK)


def callback_url_clean(url: str | None) -> str:
    """``url`` checked as a job's callback URL (module docstring), resolving its host:
    the URL, stripped, or "" for none. Raises ``ValidationError`` keyed by
    ``callback_url``, with a message fit to show a user."""
    url = (url or "").strip()
    if not url:
        return ""
    try:
        target = _target(url)
        callback_addresses(target.host, target.port)
    except CallbackRefused as exc:
        raise ValidationError({"callback_url": [str(exc)]}) from exc
    return url


# --------------------------------------------------------------------------- sending


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The ``X-Prisma-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256
    under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _tls_context() -> ssl.SSLContext:
    """The system's trusted certificates, the host name checked (a seam for the tests)."""
    return ssl.create_default_context()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """A connection to ``address``, with ``host`` in the Host header."""

    def __init__(self, host, port, *, address: Address, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """A TLS connection to ``address`` whose SNI and certificate check use ``host``."""

    def __init__(self, host, port, *, address: Address, timeout: float):
        super().__init__(host, port, timeout=timeout, context=_tls_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _post(url: str, *, body: bytes, headers: dict[str, str]) -> None:
    """POST ``body`` to ``url`` at an address checked just now; raises ``_DeliveryFailed``
    unless the answer is a 2xx."""
    try:
        target = _target(url)
        addresses = callback_addresses(target.host, target.port)
    except CallbackRefused as exc:
        raise _DeliveryFailed(str(exc), retry=isinstance(exc, CallbackUnresolved)) from exc
    connection_class = (_PinnedHTTPSConnection if target.scheme == "https"
                        else _PinnedHTTPConnection)
    last_error: Exception | None = None
    for address in addresses:
        connection = connection_class(target.host, target.port, address=address,
                                      timeout=settings.WEBHOOK_TIMEOUT)
        try:
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            status = response.status
            location = response.getheader("Location", "")
        except ssl.SSLError as exc:
            raise _DeliveryFailed(_("The TLS connection failed: %(error)s") % {"error": exc}) \
                from exc
        except (OSError, http.client.HTTPException) as exc:
            last_error = exc  # try the host's next address, if it has one
            continue
        finally:
            connection.close()
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise _DeliveryFailed(
                _("The receiver answered HTTP %(status)d, a redirect to %(location)s: "
                  "redirects are not followed.") % {"status": status, "location": location[:200]}
            )
        raise _DeliveryFailed(_("The receiver answered HTTP %(status)d.") % {"status": status})
    raise _DeliveryFailed(
        _("The receiver could not be reached: %(error)s") % {"error": last_error}
    )


def job_webhook_body(*, job: StyleJob, payload: Callable[[StyleJob], dict]) -> bytes:
    """The bytes POSTed for ``job``: ``payload(job)`` (the API's JSON of a job) rendered
    as the API renders it."""
    return JSONRenderer().render(payload(job))


def job_webhook_deliver(*, job_id, payload: Callable[[StyleJob], dict]) -> bool:
    """Send the finished job's webhook once (module docstring). True if this call
    delivered it; False if there was nothing to send (no callback URL, not finished,
    delivered already, out of attempts) or it failed for good. Raises ``WebhookRetry``
    when it failed and has attempts left, ``StyleJob.DoesNotExist`` if the job is gone.

    ``payload`` gives the job's JSON (``stylize.api.serializers.job_api_data``).
    """
    job = StyleJob.objects.select_related("owner", "style", "blend_with").get(pk=job_id)
    with translation.override(accounts.user_language(job.owner)):  # callback_error's
        return _job_webhook_deliver(job, payload)


def _job_webhook_deliver(job: StyleJob, payload: Callable[[StyleJob], dict]) -> bool:
    if (not job.callback_url or job.callback_delivered_at is not None or not job.is_finished
            or job.callback_attempts >= settings.WEBHOOK_MAX_ATTEMPTS):
        return False
    counted = StyleJob.objects.filter(
        pk=job.pk, callback_delivered_at__isnull=True,
        callback_attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS,
    ).update(callback_attempts=F("callback_attempts") + 1)
    if not counted:
        return False
    attempt = job.callback_attempts + 1
    body = job_webhook_body(job=job, payload=payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: webhook_signature(
            secret=accounts.profile_webhook_secret(user=job.owner), body=body
        ),
        "X-Prisma-Event": f"job.{job.status}",
        "X-Prisma-Delivery": str(uuid.uuid4()),
    }
    try:
        _post(job.callback_url, body=body, headers=headers)
    except _DeliveryFailed as failure:
        reason = str(failure)
        retry = failure.retry and attempt < settings.WEBHOOK_MAX_ATTEMPTS
        if not retry:
            reason = ngettext("Gave up after %(attempts)d attempt: %(reason)s",
                              "Gave up after %(attempts)d attempts: %(reason)s", attempt) % {
                "attempts": attempt, "reason": reason}
        StyleJob.objects.filter(pk=job.pk, callback_delivered_at__isnull=True).update(
            callback_error=reason[:2000])
        logger.warning("Webhook of job %s, attempt %d, failed: %s", job.pk, attempt, failure)
        if retry:
            countdown = settings.WEBHOOK_RETRY_BACKOFF * 2 ** (attempt - 1)
            raise WebhookRetry(job.pk, countdown, str(failure)) from failure
        return False
    return bool(StyleJob.objects.filter(pk=job.pk, callback_delivered_at__isnull=True).update(
        callback_delivered_at=timezone.now(), callback_error=""))
