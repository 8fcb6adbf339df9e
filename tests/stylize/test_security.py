"""Safe defaults and throttles that hold (docs/design/security.md).

The debug page, the Server banner and the 413 are checked on a real ``runserver``
started with the default settings (no ``DEBUG`` in its environment); lockouts, throttles,
token replacement and headers through Django's test client on the real middleware,
backends and views; Swagger UI and the admin under the Content-Security-Policy in
headless chromium (skipped without it, as in test_browser.py).
"""

import http.client
import io
import os
import re
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core import mail
from django.db.models import F
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from prisma_site.devstack import free_port
from prisma_site.middleware import client_ip
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import (
    BASE_DIR,
    PASSWORD,
    PRODUCT_SETTINGS,
    admin_log_in,
    needs_chromium,
    open_browser,
    png_bytes,
    port_open,
)

NEW_PASSWORD = "a brand new long passphrase"
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
RESET = "/accounts/password_reset/"
TOKEN = "/api/v1/auth/token/"


pytestmark = pytest.mark.usefixtures("empty_cache")


def throttle_rates(settings, **rates):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


# --- A real server with the default settings ------------------------------------------


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """``manage.py runserver`` as a fresh checkout runs it: DEBUG not set anywhere."""
    var_dir = tmp_path_factory.mktemp("var")
    env = {k: v for k, v in os.environ.items()
           if k not in {"DEBUG", "DATABASE_URL", "ALLOWED_HOSTS", "PRISMA_VAR_DIR"}}
    env.update(SECRET_KEY="s" * 20 + "-a-long-secret-key-for-this-test-only-" + "k" * 20,
               PRISMA_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE=PRODUCT_SETTINGS)
    port = free_port()
    log = open(var_dir / "runserver.log", "w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not port_open(port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("runserver did not start:\n" + (var_dir / "runserver.log").read_text())
            time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def raw_request(port, method, path, headers, body=b"", *, send_body=True, timeout=20):
    """Send a request by hand (so the body can be left unsent); the response, read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        if send_body and body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


DEBUG_PAGE_MARKERS = ["DEBUG = True", "Traceback", "Request Method:", "Using the URLconf",
                      "settings.py", "DisallowedHost", "RequestDataTooBig"]


def assert_no_debug_page(body):
    for marker in DEBUG_PAGE_MARKERS:
        assert marker not in body, f"{marker!r} shown:\n{body[:500]}"


def test_the_default_settings_never_show_a_debug_page(default_server):
    # A Host that is not ours: a plain 400, not the debug page naming ALLOWED_HOSTS.
    status, _, body = raw_request(default_server, "GET", "/", {"Host": "evil.example"})
    assert status == 400
    assert_no_debug_page(body)

    # A 3 MB form field, over DATA_UPLOAD_MAX_MEMORY_SIZE, in a multipart body (which may
    # be 20 MB for the photo): Django refuses it with a plain 400 too.
    field = b"x" * (3 * 1024 * 1024)
    multipart = (b'--xyz\r\nContent-Disposition: form-data; name="username"\r\n\r\n'
                 + field + b"\r\n--xyz--\r\n")
    status, _, body = raw_request(default_server, "POST", TOKEN, {
        "Host": "localhost", "X-Forwarded-Proto": "https",
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(len(multipart)),
    }, multipart)
    assert status == 400
    assert_no_debug_page(body)

    # No page: a plain 404, not the list of URL patterns.
    status, _, body = raw_request(default_server, "GET", "/no-such-page/",
                                  {"Host": "localhost", "X-Forwarded-Proto": "https"})
    assert status == 404
    assert_no_debug_page(body)


def test_the_server_banner_names_no_software(default_server):
    _, headers, _ = raw_request(default_server, "GET", "/no-such-page/",
                                {"Host": "localhost", "X-Forwarded-Proto": "https"})
    assert headers["Server"] == "Prisma"
    assert "WSGIServer" not in str(headers) and "Python" not in str(headers)


@pytest.mark.parametrize("path, content_type", [
    ("/upload/", "text/plain; charset=utf-8"),
    ("/api/v1/jobs/", "application/json"),
])
def test_an_oversized_body_gets_413_before_it_is_sent(default_server, path, content_type):
    """Only the headers go out: the answer comes without the server waiting for 50 MB."""
    status, headers, body = raw_request(default_server, "POST", path, {
        "Host": "localhost", "X-Forwarded-Proto": "https",
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(50 * 1024 * 1024),
    }, send_body=False, timeout=10)
    assert status == 413
    assert headers["Content-Type"] == content_type
    assert "too large (50 MB)" in body and "at most 20 MB" in body


# --- The body limit, in-process --------------------------------------------------------


class Unreadable(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def readable(self):
        return True

    def read(self, *args):
        raise AssertionError("the request body was read")

    readline = readinto = read


@pytest.mark.django_db
def test_the_body_limit_is_the_upload_limit_plus_the_multipart_envelope(settings, client):
    limit = settings.REQUEST_BODY_MAX_BYTES
    assert limit == settings.UPLOAD_MAX_BYTES + 256 * 1024
    user = UserFactory()
    client.force_login(user)
    over = {"CONTENT_TYPE": "multipart/form-data; boundary=xyz",
            "CONTENT_LENGTH": str(limit + 1), "wsgi.input": Unreadable()}

    page = client.generic("POST", "/upload/", **over)
    assert page.status_code == 413 and page["Content-Type"].startswith("text/plain")
    assert "photos may be at most 20 MB" in page.content.decode()

    api = client.generic("POST", "/api/v1/jobs/", **{**over, "wsgi.input": Unreadable()})
    assert api.status_code == 413
    assert "photos may be at most 20 MB" in api.json()["detail"]

    # A body that is no multipart form can't carry a photo: DATA_UPLOAD_MAX_MEMORY_SIZE.
    small = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    for content_type in ["application/json", "application/x-www-form-urlencoded"]:
        refused = client.generic("POST", TOKEN, CONTENT_TYPE=content_type,
                                 CONTENT_LENGTH=str(small + 1), **{"wsgi.input": Unreadable()})
        assert refused.status_code == 413
        assert "without a photo, at most 2.5 MB" in refused.json()["detail"]

    # At the limit the request goes on (this page never reads a body).
    at_limit = client.generic("GET", "/", **{**over, "CONTENT_LENGTH": str(limit),
                                             "wsgi.input": Unreadable()})
    assert at_limit.status_code == 200
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= 2_621_440


# --- Client addresses -------------------------------------------------------------------


@pytest.mark.parametrize("num_proxies, forwarded, expected", [
    (0, None, "192.0.2.1"),
    (0, "203.0.113.9", "192.0.2.1"),  # no proxy of ours: X-Forwarded-For is the client's
    (1, None, "192.0.2.1"),
    (1, "203.0.113.9", "203.0.113.9"),
    (1, "10.9.9.9, 203.0.113.9", "203.0.113.9"),  # what the client wrote comes first
    (2, "10.9.9.9, 203.0.113.9, 198.51.100.2", "203.0.113.9"),
    (3, "203.0.113.9", "203.0.113.9"),
])
def test_client_ip_believes_only_our_proxies(settings, rf, num_proxies, forwarded, expected):
    settings.NUM_PROXIES = num_proxies
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    assert client_ip(rf.get("/", REMOTE_ADDR="192.0.2.1", **headers)) == expected


def test_drf_counts_clients_by_the_same_rule():
    from prisma_site import settings as loaded  # as loaded from the environment

    assert loaded.NUM_PROXIES == 0
    assert loaded.REST_FRAMEWORK["NUM_PROXIES"] == loaded.NUM_PROXIES


# --- Lockout after repeated bad passwords ------------------------------------------------


def fail_until_locked(client, url, username, limit):
    codes = [client.post(url, {"username": username, "password": "wrong"}).status_code
             for _ in range(limit)]
    assert codes == [200] * (limit - 1) + [429]


@pytest.mark.django_db
def test_the_login_page_locks_out_after_repeated_failures(settings):
    UserFactory(username="ada@example.com")
    UserFactory(username="bob@example.com")
    client = Client(REMOTE_ADDR="192.0.2.10")
    fail_until_locked(client, LOGIN, "ada@example.com", settings.AXES_FAILURE_LIMIT)

    right = {"username": "ada@example.com", "password": PASSWORD}
    refused = client.post(LOGIN, right)
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    assert "Too many tries" in refused.content.decode()
    assert "try again in 15 minutes" in refused.content.decode()
    # A made-up X-Forwarded-For is not another client.
    assert client.post(LOGIN, right, HTTP_X_FORWARDED_FOR="203.0.113.77").status_code == 429
    # The locked-out address can't log in to another account either...
    bob = {"username": "bob@example.com", "password": PASSWORD}
    assert client.post(LOGIN, bob).status_code == 429
    # ... and nobody can log in to the attacked account, from anywhere.
    elsewhere = Client(REMOTE_ADDR="198.51.100.20")
    assert elsewhere.post(LOGIN, right).status_code == 429
    assert elsewhere.post(LOGIN, bob).status_code == 302  # other accounts are fine

    # After the cool-off, the right password works again.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    response = client.post(LOGIN, right)
    assert response.status_code == 302 and "_auth_user_id" in client.session


@pytest.mark.django_db
def test_the_admin_login_locks_out_after_repeated_failures(settings):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="192.0.2.11")
    page = client.get(ADMIN_LOGIN)
    assert page.status_code == 200
    fail_until_locked(client, ADMIN_LOGIN, "root", settings.AXES_FAILURE_LIMIT)

    refused = client.post(ADMIN_LOGIN, {"username": "root", "password": PASSWORD,
                                        "next": "/admin/"})
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still asked to log in


@pytest.mark.django_db
def test_a_good_login_clears_the_count_and_shell_authenticate_still_works():
    from django.contrib.auth import authenticate

    user = UserFactory(username="carol")
    client = Client(REMOTE_ADDR="192.0.2.12")
    for _ in range(3):
        client.post(LOGIN, {"username": "carol", "password": "wrong"})
    assert client.post(LOGIN, {"username": "carol", "password": PASSWORD}).status_code == 302
    assert not AccessAttempt.objects.exists()
    assert authenticate(username="carol", password=PASSWORD) == user  # no request: a shell


@pytest.mark.django_db
def test_logging_in_to_ones_own_account_does_not_reset_the_count_for_another(settings):
    """The second attack: rounds of four wrong passwords for carol, each followed by a
    good log-in to the attacker's own account from the same address, guessed without
    end. A success forgets only its own username's failures."""
    assert settings.AXES_FAILURE_LIMIT == 5
    UserFactory(username="carol")
    UserFactory(username="mallory")
    attacker = Client(REMOTE_ADDR="192.0.2.13")
    wrong = {"username": "carol", "password": "wrong"}
    own = {"username": "mallory", "password": PASSWORD}

    right = {"username": "carol", "password": PASSWORD}

    codes = []
    for _ in range(3):
        codes += [attacker.post(LOGIN, wrong).status_code for _ in range(4)]
        codes.append(attacker.post(LOGIN, own).status_code)
        attacker.post(reverse("stylize:logout"))

    # The fifth guess from the address, after a success, is where the lockout begins,
    # for every account from that address and for carol from everywhere.
    assert codes == [200] * 4 + [302] + [429] * 10
    assert attacker.post(LOGIN, right).status_code == 429
    assert Client(REMOTE_ADDR="198.51.100.21").post(LOGIN, right).status_code == 429

    # carol's own success (after the cool-off) forgets carol's failures and nobody else's.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    UserFactory(username="dave")
    for _ in range(2):
        Client(REMOTE_ADDR="192.0.2.14").post(LOGIN, {"username": "dave", "password": "x"})
        Client(REMOTE_ADDR="192.0.2.14").post(LOGIN, wrong)
    assert Client(REMOTE_ADDR="192.0.2.14").post(LOGIN, right).status_code == 302
    assert list(AccessAttempt.objects.values_list("username", "failures_since_start")) == [
        ("dave", 2)]


# --- The API token throttle and X-Forwarded-For -------------------------------------------


@pytest.mark.django_db
def test_a_made_up_x_forwarded_for_does_not_reset_the_token_throttle(settings):
    throttle_rates(settings, auth_token="3/minute")
    UserFactory(username="ada")
    api = APIClient()
    codes = [api.post(TOKEN, {"username": "ada", "password": "x"},
                      HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(4)]
    assert codes == [400, 400, 400, 429]


@pytest.mark.django_db
def test_behind_our_proxy_the_token_throttle_counts_the_address_it_saw(settings):
    settings.NUM_PROXIES = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    throttle_rates(settings, auth_token="3/minute")
    UserFactory(username="ada")
    api = APIClient(REMOTE_ADDR="10.0.0.2")  # every request arrives from the proxy

    def attempt(forwarded):
        return api.post(TOKEN, {"username": "ada", "password": "x"},
                        HTTP_X_FORWARDED_FOR=forwarded).status_code

    # The client writes a new first entry each time; the proxy appends the real one.
    assert [attempt(f"203.0.113.{i}, 198.51.100.7") for i in range(4)] == [400, 400, 400, 429]
    assert attempt("198.51.100.8") == 400  # another client has its own count


# --- Password reset ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("email, mails", [("carol@example.com", 3), ("nobody@example.com", 0)])
def test_password_reset_is_throttled_per_address_asked_for(settings, email, mails):
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["password_reset_email"] == "3/hour"
    UserFactory(username="carol", email="carol@example.com")
    # From four different clients: the address's count is what stops the fourth.
    codes = [Client(REMOTE_ADDR=f"198.51.100.{i}").post(RESET, {"email": email}).status_code
             for i in range(4)]
    # Known or unknown address, the answers are the same: nothing about accounts leaks.
    assert codes == [302, 302, 302, 429]
    assert len(mail.outbox) == mails

    refused = Client(REMOTE_ADDR="198.51.100.9").post(RESET, {"email": email.upper()})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many password reset requests. Nothing was sent" in refused.content.decode()
    assert len(mail.outbox) == mails


@pytest.mark.django_db
def test_password_reset_is_throttled_per_client(settings):
    throttle_rates(settings, password_reset_client="3/hour")
    client = Client(REMOTE_ADDR="192.0.2.30")
    codes = [client.post(RESET, {"email": f"user{i}@example.com"},
                         HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(4)]
    assert codes == [302, 302, 302, 429]
    assert Client(REMOTE_ADDR="192.0.2.31").post(
        RESET, {"email": "user9@example.com"}).status_code == 302


@pytest.mark.django_db
def test_the_reset_link_comes_from_site_url_whatever_the_host_header(settings):
    settings.SITE_URL = "https://prisma.example.com"
    settings.ALLOWED_HOSTS = ["testserver", "other.example"]
    UserFactory(username="dan", email="dan@example.com")

    response = Client().post(RESET, {"email": "dan@example.com"}, HTTP_HOST="other.example")

    assert response.status_code == 302
    [message] = mail.outbox
    assert re.search(r"^https://prisma\.example\.com/accounts/reset/\S+/\S+/$", message.body,
                     re.MULTILINE)
    assert "other.example" not in message.body and "testserver" not in message.body


# --- API tokens and password changes ------------------------------------------------------


def token_works(key) -> bool:
    return APIClient().get("/api/v1/jobs/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


@pytest.fixture
def user_with_token(db):
    user = UserFactory(username="erin", email="erin@example.com")
    return user, Token.objects.create(user=user).key


def assert_replaced(user, old_key):
    new = Token.objects.get(user=user)
    assert new.key != old_key
    assert not token_works(old_key) and token_works(new.key)


def test_changing_the_password_on_the_page_replaces_the_token(user_with_token):
    user, old_key = user_with_token
    client = Client()
    client.force_login(user)
    response = client.post(reverse("stylize:password_change"), {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert_replaced(user, old_key)
    page = client.get(reverse("stylize:profile")).content.decode()  # still logged in
    assert Token.objects.get(user=user).key in page and old_key not in page


def test_resetting_the_password_by_email_replaces_the_token(user_with_token):
    user, old_key = user_with_token
    client = Client()
    client.post(RESET, {"email": "erin@example.com"})
    [message] = mail.outbox
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", message.body).group(1)
    form = client.get(link, follow=True)
    response = client.post(form.redirect_chain[-1][0],
                           {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert_replaced(user, old_key)


def test_set_password_and_save_in_a_shell_replaces_the_token(user_with_token):
    user, old_key = user_with_token
    user.set_password(NEW_PASSWORD)
    user.save()
    assert_replaced(user, old_key)


def test_the_admin_setting_a_password_replaces_the_token(user_with_token):
    user, old_key = user_with_token
    staff = Client()
    staff.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = staff.post(reverse("admin:auth_user_password_change", args=[user.pk]), {
        "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
    assert response.status_code == 302
    assert_replaced(user, old_key)


def test_no_token_is_made_for_a_user_without_one_and_other_saves_keep_it(db):
    user = UserFactory()
    user.set_password(NEW_PASSWORD)
    user.save()
    assert not Token.objects.filter(user=user).exists()

    key = Token.objects.create(user=user).key
    user.first_name = "Frances"
    user.save()
    user.save(update_fields=["first_name"])
    client = Client()
    assert client.post(LOGIN, {"username": user.username, "password": NEW_PASSWORD}
                       ).status_code == 302  # last_login is saved
    assert Token.objects.get(user=user).key == key
    user.set_password(NEW_PASSWORD)  # while a real change, even to the same password, does
    user.save()
    assert_replaced(user, key)


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1000


def test_a_hash_upgrade_at_login_is_not_a_password_change(db, settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.QuickPBKDF2PasswordHasher"]
    user = UserFactory()
    user.password = QuickPBKDF2PasswordHasher().encode(PASSWORD, "somesalt", iterations=10)
    user.save()
    key = Token.objects.create(user=user).key

    response = Client().post(LOGIN, {"username": user.username, "password": PASSWORD})

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$1000$")  # upgraded when it was checked
    assert Token.objects.get(user=user).key == key
    user.set_password(NEW_PASSWORD)  # a change saved the same way is one
    user.save(update_fields=["password"])
    assert_replaced(user, key)


def test_the_profile_page_that_shows_the_token_is_never_stored(user_with_token):
    user, key = user_with_token
    client = Client()
    client.force_login(user)
    response = client.get(reverse("stylize:profile"))
    assert key in response.content.decode()
    assert "no-store" in response["Cache-Control"]


# --- Headers and the Content-Security-Policy ----------------------------------------------


INLINE = [
    (re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
     "an inline <script>"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an inline event handler"),
    (re.compile(r"<style\b", re.I), "an inline <style>"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def assert_safe_page(response):
    assert response.status_code == 200, response.status_code
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]
    assert response["Server"] == "Prisma"
    html = response.content.decode()
    for pattern, what in INLINE:
        found = pattern.search(html)
        assert not found, f"{what} in {response.wsgi_request.path}: {found.group(0)}"


@pytest.mark.django_db
def test_every_page_has_the_policy_headers_and_nothing_inline_that_it_would_block():
    style = StyleFactory()
    user = UserFactory(is_staff=True, is_superuser=True)
    job = StyleJobFactory(owner=user, style=style)
    anonymous, client = Client(), Client()
    for path in ["/", LOGIN, "/accounts/signup/", RESET, ADMIN_LOGIN]:
        assert_safe_page(anonymous.get(path))
    client.force_login(user)
    for path in ["/upload/", "/jobs/", f"/jobs/{job.pk}/", "/accounts/profile/",
                 "/accounts/password_change/", "/admin/",
                 reverse("admin:stylize_style_change", args=[style.pk]),
                 reverse("admin:stylize_stylejob_change", args=[job.pk]),
                 reverse("admin:auth_user_change", args=[user.pk])]:
        assert_safe_page(client.get(path))


@pytest.mark.django_db
def test_swagger_ui_loads_its_start_up_script_from_a_file():
    page = Client().get("/api/docs/")
    assert_safe_page(page)
    html = page.content.decode()
    script = re.search(r'<script src="([^"]*\?script=?)"', html)
    assert script, html
    start_up = Client().get(script.group(1).replace("&amp;", "&"))
    assert start_up.status_code == 200
    assert start_up["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in start_up.content.decode()


@pytest.mark.django_db
def test_the_admin_works_under_the_policy_after_a_real_login():
    style = StyleFactory(name="Starry Night")
    UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    page = client.get(ADMIN_LOGIN)
    assert_safe_page(page)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                      page.content.decode()).group(1)
    response = client.post(ADMIN_LOGIN, {"csrfmiddlewaretoken": token, "username": "root",
                                         "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302 and response.url == "/admin/"
    change = client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert_safe_page(change)
    assert "Starry Night" in change.content.decode()


# --- In a real browser --------------------------------------------------------------------


@pytest.mark.slow
@needs_chromium
def test_swagger_ui_and_the_admin_work_in_a_browser_under_the_policy(
    live_server, transactional_db, monkeypatch
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    style = StyleFactory(name="Starry Night", slug="starry-night")
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    job = StyleJobFactory(owner=root, style=style)  # queued: its page polls with job.js

    with sync_playwright() as playwright:
        browser, page, errors = open_browser(playwright)
        try:
            page.goto(f"{live_server.url}/api/docs/")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Prisma API")
            expect(page.locator(".opblock-summary-path",
                                has_text="/api/v1/styles/").first).to_be_visible()
            page.locator(".opblock-summary", has_text="/api/v1/styles/").first.click()
            page.get_by_role("button", name="Try it out").click()
            page.get_by_role("button", name="Execute").click()
            expect(page.locator(".live-responses-table tbody .response-col_status").first
                   ).to_contain_text("200")  # it called the API, under connect-src 'self'
            assert page.evaluate("window.__cspViolations") == []

            admin_log_in(page, live_server.url, "root")
            page.goto(f"{live_server.url}/admin/stylize/style/{style.pk}/change/")
            expect(page.locator("#id_name")).to_have_value("Starry Night")
            assert page.evaluate("typeof django !== 'undefined' && !!django.jQuery")
            assert page.evaluate("window.__cspViolations") == []

            # Our own pages, with their scripts, signed in as the same user.
            for path in ["/", "/upload/", "/jobs/", f"/jobs/{job.pk}/", "/accounts/profile/"]:
                page.goto(f"{live_server.url}{path}")
                page.wait_for_load_state("load")
                assert page.evaluate("window.__cspViolations") == [], path
            page.goto(f"{live_server.url}/upload/")
            page.locator("input[type=file]").set_input_files(
                {"name": "photo.png", "mimeType": "image/png", "buffer": png_bytes()})
            expect(page.locator("#image-check")).to_contain_text("photo.png")  # upload.js ran
            assert page.evaluate("window.__cspViolations") == []  # the blob: preview too
            assert errors == []
        finally:
            browser.close()
