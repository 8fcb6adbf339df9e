"""Job webhooks (stylize.services.webhooks) against a real HTTP receiver on loopback.

The receiver listens on 127.0.0.1 at a port the OS picks; tests/settings.py's
``WEBHOOK_ALLOW_LOOPBACK`` lets webhooks reach it. The refusals are checked with the
production rules: ``DEBUG`` and ``WEBHOOK_ALLOW_LOOPBACK`` off.
"""

import hashlib
import hmac
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from stylize.api.serializers import job_api_data
from stylize.models import StyleJob
from stylize.services import accounts, jobs, webhooks
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import gradient_upload

PUBLIC_V4 = "93.184.216.34"


# --------------------------------------------------------------------------- receiver


class Receiver:
    """An HTTP server on 127.0.0.1 that records each request and answers from
    ``script`` (a list of ``(status, headers)``; 200 once it is empty)."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, delay: float = 0.0):
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict]] = []
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                if receiver.delay:
                    time.sleep(receiver.delay)
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client gone: fine
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook", host="127.0.0.1", scheme="http"):
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.requests) >= count, f"{len(self.requests)} requests, not {count}"
        return self.requests

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def production(settings):
    """The rules of production: DEBUG off, no loopback receivers."""
    settings.DEBUG = False
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    return settings


@pytest.fixture
def fake_dns(monkeypatch):
    """``socket.getaddrinfo`` with ``names`` (host → addresses, or None: not found)
    answered here and every other host really resolved; ``lookups`` counts the names
    looked up."""
    real = socket.getaddrinfo
    names: dict[str, list[str]] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        if host in names and names[host] is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host in names:
            return [
                (socket.AF_INET6 if ip_address(a).version == 6 else socket.AF_INET,
                 socket.SOCK_STREAM, 6, "", (a, port))
                for a in names[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    getaddrinfo.names, getaddrinfo.lookups = names, lookups
    return getaddrinfo


def signature_ok(secret: str, request: dict) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"]["X-Prisma-Signature"], expected)


def secret_on_profile_page(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    page = client.get(reverse("stylize:profile")).content.decode()
    return re.search(r'id="webhook-secret-key"[^>]*value="([^"]+)"', page).group(1)


def finished_job(callback_url, **kwargs):
    job = StyleJobFactory(callback_url=callback_url, **kwargs)
    job.status, job.error = StyleJob.Status.FAILED, "The photo could not be read."
    job.finished_at = timezone.now()
    job.save()
    return job


def deliver(job):
    return webhooks.job_webhook_deliver(job_id=job.pk, payload=job_api_data)


def api_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {accounts.api_token_create(user=user).key}")
    return client


def api_create(client, style, callback_url):
    return client.post("/api/v1/jobs/", {"image": gradient_upload(), "style": style.slug,
                                         "callback_url": callback_url}, format="multipart")


# --------------------------------------------------------------------------- on a real worker


@pytest.mark.slow
def test_an_api_job_calls_its_webhook_signed_with_the_profiles_secret_on_a_real_worker(
    receiver, recording_backend, celery_worker_thread, empty_cache, settings
):
    settings.SITE_URL = "https://prisma.example.com"
    user = UserFactory()
    style = StyleFactory(slug="starry-night")
    response = api_create(api_client(user), style, receiver.url())
    assert response.status_code == 201, response.json()
    assert response.json()["callback_url"] == receiver.url()

    [request] = receiver.wait_for(1)  # the worker painted the job, then sent its webhook
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Prisma-Event"] == "job.succeeded"
    assert signature_ok(secret_on_profile_page(user), request)
    body = json.loads(request["body"])
    job_id = response.json()["id"]
    assert body["id"] == job_id and body["status"] == "succeeded"
    assert body["result_url"] == f"https://prisma.example.com/api/v1/jobs/{job_id}/result/"

    deadline = time.monotonic() + 10
    while StyleJob.objects.get(pk=job_id).callback_delivered_at is None:
        assert time.monotonic() < deadline, "the delivery was not recorded"
        time.sleep(0.05)
    job = StyleJob.objects.get(pk=job_id)
    assert job.callback_attempts == 1 and job.callback_error == ""
    # What the API shows of the job is what was sent, and now the delivery too.
    shown = api_client(user).get(f"/api/v1/jobs/{job_id}/").json()
    assert shown.pop("callback_delivered_at") is not None
    assert shown.pop("callback_error") == ""
    assert shown == body | {"result_url": f"http://testserver/api/v1/jobs/{job_id}/result/"}


@pytest.mark.slow
def test_a_500_is_retried_with_backoff_and_delivered_once_on_a_real_worker(
    receiver, celery_worker_thread, settings
):
    settings.WEBHOOK_RETRY_BACKOFF = 0.2
    receiver.script = [(500, {})]
    job = StyleJobFactory(callback_url=receiver.url())
    started = time.monotonic()
    assert jobs.job_fail(job_id=job.pk, error="The photo could not be read.")

    first, second = receiver.wait_for(2)
    assert time.monotonic() - started >= 0.2  # the retry waited for its backoff
    secret = accounts.profile_webhook_secret(user=job.owner)
    assert signature_ok(secret, first) and signature_ok(secret, second)
    assert first["body"] == second["body"]
    assert first["headers"]["X-Prisma-Delivery"] != second["headers"]["X-Prisma-Delivery"]
    assert json.loads(second["body"])["status"] == "failed"
    deadline = time.monotonic() + 10
    while StyleJob.objects.get(pk=job.pk).callback_delivered_at is None:
        assert time.monotonic() < deadline, "the delivery was not recorded"
        time.sleep(0.05)
    job.refresh_from_db()
    assert job.callback_attempts == 2 and job.callback_error == ""
    time.sleep(1.0)
    assert len(receiver.requests) == 2  # nothing more once delivered


# --------------------------------------------------------------------------- delivery


@pytest.mark.django_db
def test_the_task_run_twice_delivers_once(receiver):
    from stylize.tasks import job_webhook_deliver

    job = finished_job(receiver.url())
    job_webhook_deliver(str(job.pk))
    job_webhook_deliver(str(job.pk))
    assert deliver(job) is False
    assert len(receiver.requests) == 1
    job.refresh_from_db()
    assert job.callback_attempts == 1 and job.callback_delivered_at is not None


@pytest.mark.django_db
def test_a_failure_with_attempts_left_raises_a_retry_with_doubling_backoff(receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_RETRY_BACKOFF = 3, 7.0
    receiver.script = [(503, {}), (500, {}), (502, {})]
    job = finished_job(receiver.url())
    countdowns = []
    for _ in range(2):
        with pytest.raises(webhooks.WebhookRetry) as retry:
            deliver(job)
        countdowns.append(retry.value.countdown)
    assert countdowns == [7.0, 14.0]
    assert deliver(job) is False  # the last attempt: no retry left
    job.refresh_from_db()
    assert job.callback_attempts == 3 and job.callback_delivered_at is None
    assert "Gave up after 3 attempts" in job.callback_error and "502" in job.callback_error
    assert deliver(job) is False and len(receiver.requests) == 3  # out of attempts


@pytest.mark.django_db
def test_a_redirect_is_not_followed(receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    receiver.script = [(302, {"Location": receiver.url("/elsewhere")})]
    job = finished_job(receiver.url())
    assert deliver(job) is False
    assert [request["path"] for request in receiver.requests] == ["/hook"]
    job.refresh_from_db()
    assert job.callback_delivered_at is None
    assert "302" in job.callback_error and "redirect" in job.callback_error


@pytest.mark.django_db
def test_a_receiver_slower_than_the_timeout_fails_the_attempt(settings):
    settings.WEBHOOK_TIMEOUT, settings.WEBHOOK_MAX_ATTEMPTS = 0.3, 1
    slow = Receiver(delay=2.0)
    try:
        job = finished_job(slow.url())
        started = time.monotonic()
        assert deliver(job) is False
        assert time.monotonic() - started < 1.5
    finally:
        slow.close()
    job.refresh_from_db()
    assert job.callback_delivered_at is None and "timed out" in job.callback_error


@pytest.mark.django_db
def test_the_checked_address_is_the_one_connected_to_with_the_name_in_host(
    receiver, fake_dns
):
    fake_dns.names["hooks.example.test"] = ["127.0.0.1"]
    job = finished_job(receiver.url(host="hooks.example.test"))
    assert deliver(job) is True
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"hooks.example.test:{receiver.port}"
    # One lookup, checked and connected to: no second answer to rebind.
    assert fake_dns.lookups.count("hooks.example.test") == 1


@pytest.mark.django_db
def test_a_host_that_resolves_to_a_private_address_at_send_time_is_refused(
    production, fake_dns, empty_cache, monkeypatch
):
    fake_dns.names["hooks.example.test"] = [PUBLIC_V4]
    user, style = UserFactory(), StyleFactory()
    with monkeypatch.context() as patched:  # created with no worker to run it
        patched.setattr("stylize.tasks.job_run.apply_async", lambda *a, **k: None)
        response = api_create(api_client(user), style, "https://hooks.example.test/hook")
    assert response.status_code == 201, response.json()
    fake_dns.names["hooks.example.test"] = ["10.0.0.1"]  # rebound since
    connections = []
    monkeypatch.setattr(socket, "create_connection",
                        lambda *args, **kwargs: connections.append(args))
    job = StyleJob.objects.get(pk=response.json()["id"])
    jobs.job_fail(job_id=job.pk, error="The photo could not be read.")

    assert deliver(job) is False  # refused for good: no retry
    assert connections == []
    job.refresh_from_db()
    assert job.callback_attempts == 1 and job.callback_delivered_at is None
    assert "not public" in job.callback_error and "10.0.0.1" not in job.callback_error


def _openssl_cert(tmp_path, name: str):
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return cert, server


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.django_db
def test_https_checks_the_certificate_against_the_name_not_the_address(
    tmp_path, fake_dns, monkeypatch, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    cert, server_context = _openssl_cert(tmp_path, "hooks.example.test")
    monkeypatch.setattr(webhooks, "_tls_context",
                        lambda: ssl.create_default_context(cafile=str(cert)))
    fake_dns.names["hooks.example.test"] = ["127.0.0.1"]
    fake_dns.names["other.example.test"] = ["127.0.0.1"]
    tls = Receiver(tls_context=server_context)
    try:
        good = finished_job(tls.url(host="hooks.example.test", scheme="https"))
        assert deliver(good) is True
        wrong = finished_job(tls.url(host="other.example.test", scheme="https"))
        assert deliver(wrong) is False
    finally:
        tls.close()
    assert len(tls.requests) == 1
    wrong.refresh_from_db()
    assert "TLS" in wrong.callback_error and wrong.callback_delivered_at is None


@pytest.mark.django_db
def test_a_job_ending_sends_its_webhook_once_committed_and_only_with_a_callback(
    django_capture_on_commit_callbacks,
):
    with_url = StyleJobFactory(callback_url="https://hooks.example.test/")
    without = StyleJobFactory()
    with mock.patch("stylize.tasks.job_webhook_deliver.apply_async") as apply_async, \
            mock.patch("stylize.tasks.job_email_send.apply_async"):
        with django_capture_on_commit_callbacks(execute=False):
            jobs.job_fail(job_id=with_url.pk, error="Broken.")
            jobs.job_fail(job_id=without.pk, error="Broken.")
        assert apply_async.call_count == 0  # not before the commit
        with django_capture_on_commit_callbacks(execute=True):
            jobs.job_fail(job_id=StyleJobFactory(callback_url="https://h.example.test/").pk,
                          error="Broken.")
            jobs.job_fail(job_id=without.pk, error="Broken.")  # ended already: nothing
            jobs.job_fail(job_id=StyleJobFactory().pk, error="Broken.")
    [call] = apply_async.call_args_list
    assert call.args[0] == (str(StyleJob.objects.get(callback_url="https://h.example.test/").pk),)


@pytest.mark.django_db
def test_the_sweep_sends_a_webhook_that_was_never_tried(django_capture_on_commit_callbacks):
    finished = timezone.now() - timedelta(hours=1)
    untried = StyleJobFactory(callback_url="https://hooks.example.test/")
    tried = StyleJobFactory(callback_url="https://hooks.example.test/", callback_attempts=1)
    StyleJob.objects.filter(pk__in=[untried.pk, tried.pk]).update(
        status=StyleJob.Status.FAILED, error="Broken.", finished_at=finished,
        emailed_at=finished)
    with django_capture_on_commit_callbacks() as callbacks:
        counts = jobs.jobs_requeue_stuck()
    assert counts["webhooks"] == 1 and len(callbacks) == 1


# --------------------------------------------------------------------------- refusals


REFUSED = [
    "https://10.0.0.1/hook",
    "https://192.168.1.20/",
    "https://172.16.0.1/",
    "https://100.64.0.1/",  # shared address space (CGNAT)
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://127.0.0.1/",
    "https://0.0.0.0/",
    "https://224.0.0.1/",
    "https://localhost/",  # resolves to loopback
    "https://[::1]/",
    "https://[::]/",
    "https://[fe80::1]/",
    "https://[fd00:ec2::254]/",  # a cloud's IPv6 metadata address
    "https://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "https://[::ffff:169.254.169.254]/",
    "https://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "https://[2002:a00:1::1]/",  # 6to4 of 10.0.0.1
    "https://[ff02::1]/",
    "https://[fec0::1]/",  # site-local (deprecated, but routed inside some networks)
    "https://[feff:ffff::1]/",  # the top of fec0::/10
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", REFUSED)
def test_private_addresses_are_refused_with_a_400_in_production(
    production, empty_cache, url, queue
):
    user, style = UserFactory(), StyleFactory()
    response = api_create(api_client(user), style, url)
    assert response.status_code == 400
    [message] = response.json()["callback_url"]
    assert "only sent to public addresses" in message
    assert not StyleJob.objects.exists()


INTERNAL = ["10.20.30.40", "192.168.7.9", "127.0.0.1", "169.254.169.254", "fd12:3456::7",
            "fec0::1", "fe80::1", "::ffff:172.16.5.4"]
KINDS = ["loopback", "private", "link-local", "metadata", "reserved", "site-local",
         "multicast", "unspecified"]


@pytest.mark.django_db
@pytest.mark.parametrize("address", INTERNAL)
def test_a_refused_name_says_only_that_its_address_is_not_public(
    production, empty_cache, fake_dns, address, queue
):
    """Anyone with an account may try a callback URL: the refusal must not tell them
    what an internal name resolves to (neither the address nor its kind)."""
    fake_dns.names["intranet.example.test"] = [address]
    fake_dns.names["mixed.example.test"] = [PUBLIC_V4, address]
    client, style = api_client(UserFactory()), StyleFactory()
    for host in ("intranet.example.test", "mixed.example.test"):
        response = api_create(client, style, f"https://{host}/hook")
        assert response.status_code == 400
        [message] = response.json()["callback_url"]
        assert host in message and "not public" in message
        assert str(ip_address(address)) not in message and address not in message
        assert not any(kind in message for kind in KINDS), message
    assert not StyleJob.objects.exists()


@pytest.mark.django_db
def test_a_written_address_is_refused_with_its_kind(production, empty_cache, queue):
    """An address in the URL itself is the user's own: saying what it is tells nothing."""
    response = api_create(api_client(UserFactory()), StyleFactory(), "https://[fec0::1]/")
    [message] = response.json()["callback_url"]
    assert "fec0::1" in message and "private or reserved" in message


@pytest.mark.django_db
@pytest.mark.parametrize("url, words", [
    ("http://hooks.example.test/hook", "https://"),
    ("https://user:pw@hooks.example.test/", "user name or password"),
    ("ftp://hooks.example.test/", "not a valid URL"),
    ("https://no-such-host.example.test/", "could not be found"),
    ("https://hooks.example.test/" + "a" * 2000, "longer than 2000"),
])
def test_other_refusals_say_why(production, empty_cache, fake_dns, url, words, queue):
    fake_dns.names["hooks.example.test"] = [PUBLIC_V4]
    fake_dns.names["no-such-host.example.test"] = None
    response = api_create(api_client(UserFactory()), StyleFactory(), url)
    assert response.status_code == 400
    [message] = response.json()["callback_url"]
    assert words in message


@pytest.mark.django_db
def test_a_public_https_url_is_accepted_and_http_only_with_debug(
    production, empty_cache, fake_dns, queue
):
    fake_dns.names["hooks.example.test"] = [PUBLIC_V4, "2606:2800:220:1:248:1893:25c8:1946"]
    client, style = api_client(UserFactory()), StyleFactory()
    assert api_create(client, style, "https://hooks.example.test/hook").status_code == 201
    assert api_create(client, style, "http://hooks.example.test/hook").status_code == 400
    production.DEBUG = True
    assert api_create(client, style, "http://hooks.example.test/hook").status_code == 201
    assert api_create(client, style, "http://10.0.0.1/hook").status_code == 400


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_the_test_setting_lets_in_loopback_and_nothing_else(settings, address):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    assert webhooks.address_refusal(ip_address(address)) is None
    for private in ("10.0.0.1", "169.254.169.254", "fe80::1", "::ffff:10.0.0.1", "0.0.0.0",
                    "fec0::1"):
        assert webhooks.address_refusal(ip_address(private)) is not None
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    assert webhooks.address_refusal(ip_address(address)) is not None


# --------------------------------------------------------------------------- the secret


@pytest.mark.django_db
def test_the_profile_shows_the_secret_and_rotating_replaces_it(client):
    user = UserFactory()
    client.force_login(user)
    shown = secret_on_profile_page(user)
    assert shown == accounts.profile_webhook_secret(user=user) and len(shown) >= 40
    assert secret_on_profile_page(user) == shown  # made once, then kept

    assert client.get(reverse("stylize:webhook_secret")).status_code == 405
    response = client.post(reverse("stylize:webhook_secret"))
    assert response.status_code == 302
    assert response["Location"].endswith("#webhook-secret")
    rotated = secret_on_profile_page(user)
    assert rotated != shown and rotated == accounts.profile_webhook_secret(user=user)

    body = b'{"id": "x"}'
    assert webhooks.webhook_signature(secret=rotated, body=body) != \
        webhooks.webhook_signature(secret=shown, body=body)


@pytest.mark.django_db
def test_a_delivery_is_signed_with_the_secret_of_the_moment(receiver):
    job = finished_job(receiver.url())
    old = accounts.profile_webhook_secret(user=job.owner)
    new = accounts.profile_webhook_secret_rotate(user=job.owner)
    assert deliver(job) is True
    [request] = receiver.requests
    assert signature_ok(new, request) and not signature_ok(old, request)


@pytest.mark.django_db
def test_the_result_url_in_the_body_is_absolute_from_site_url(receiver, settings):
    settings.SITE_URL = "https://prisma.example.com"
    job = finished_job(receiver.url())
    job.status, job.error = StyleJob.Status.SUCCEEDED, ""
    job.result_image.save("result.jpg", ContentFile(b"\xff\xd8"), save=False)
    job.save()
    assert deliver(job) is True
    body = json.loads(receiver.requests[0]["body"])
    assert body["result_url"] == f"https://prisma.example.com/api/v1/jobs/{job.pk}/result/"
    assert receiver.requests[0]["headers"]["X-Prisma-Event"] == "job.succeeded"


@pytest.mark.django_db
def test_the_openapi_schema_documents_the_webhook(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    create = schema["paths"]["/api/v1/jobs/"]["post"]
    assert "X-Prisma-Signature" in create["description"]
    assert "hmac.compare_digest" in create["description"]
    form = schema["components"]["schemas"]["JobCreateRequest"]["properties"]
    assert "https://" in form["callback_url"]["description"]
    job = schema["components"]["schemas"]["Job"]["properties"]
    assert {"callback_url", "callback_delivered_at", "callback_error"} <= set(job)
