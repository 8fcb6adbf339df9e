"""A signed-up address is confirmed by a mailed link before anything else is mailed to it;
sign-up does not tell whether an address is taken (its owner gets a mail instead)."""

import io
import re
import threading
import time
from datetime import timedelta

import pytest
from celery.signals import task_postrun
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stylize.models import Profile, StyleJob
from stylize.services import accounts, jobs
from stylize.services.job_emails import job_email_send
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import PASSWORD, gradient_upload, signup

LINK = re.compile(r"https://prisma\.example\.com(/accounts/confirm/[^/\s]+/[^/\s]+/)")


pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = "https://prisma.example.com"


def log_in(client, username="ada@example.com", password=PASSWORD) -> bool:
    """Through the log-in page, as a person does (its lockout needs the request)."""
    response = client.post(reverse("stylize:login"), {"username": username, "password": password})
    return response.status_code == 302 and "_auth_user_id" in client.session


def link_in(message) -> str:
    """The confirmation link's path; the mail is plain text with the full SITE_URL link."""
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(1)


def succeeded_job(owner):
    job = StyleJobFactory(owner=owner, status=StyleJob.Status.RUNNING)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 20, 30)).save(buffer, format="JPEG")
    job.result_image.save("result.jpg", ContentFile(buffer.getvalue()), save=False)
    job.status = StyleJob.Status.SUCCEEDED
    job.finished_at = timezone.now()
    job.save()
    return job


# --- Sign-up ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_signup_makes_an_unconfirmed_account_and_mails_only_its_link(client):
    response = signup(client, email="Ada@Example.com")

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    user = get_user_model().objects.get()
    assert Profile.objects.get(user=user).email_confirmed is False
    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    assert message.subject == "Confirm your email address for Prisma"
    assert not message.attachments and not getattr(message, "alternatives", None)
    assert link_in(message).startswith("/accounts/confirm/")


def same_page(response):
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "CSRF", response.content.decode())


@pytest.mark.django_db
def test_signup_with_a_taken_address_shows_the_same_page_and_mails_the_owner(client, settings):
    owner = UserFactory(username="ada", email="Ada@Example.com")
    new = signup(client, email="new@example.com")
    [confirmation] = mail.outbox
    mail.outbox.clear()
    client.cookies.clear()

    taken = signup(client, email="ada@EXAMPLE.com", password="another long passphrase")

    assert taken.status_code == new.status_code == 200
    def page(response):  # the mails sent meanwhile are templates too, and differ by design
        return [t.name for t in response.templates if not t.name.startswith("stylize/mail/")]

    assert page(taken) == page(new) and page(new)
    # The same page word for word, but for the address the visitor typed (and the
    # CSRF token, which is masked afresh on every response).
    assert same_page(taken).replace("ada@example.com", "ADDRESS") == (
        same_page(new).replace("new@example.com", "ADDRESS")
    )
    assert "_auth_user_id" not in client.session
    assert get_user_model().objects.filter(email__iexact="ada@example.com").count() == 1
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)  # untouched
    [notice] = mail.outbox
    assert notice.to == ["Ada@Example.com"]
    assert "tried to sign up" in notice.subject
    assert "https://prisma.example.com/accounts/login/" in notice.body
    assert "https://prisma.example.com/accounts/password_reset/" in notice.body
    assert not LINK.search(notice.body)  # nothing that confirms or logs in
    assert confirmation.to == ["new@example.com"]


@pytest.mark.django_db
def test_the_owner_of_a_taken_address_is_mailed_at_most_once_a_minute(client):
    UserFactory(username="ada", email="ada@example.com")
    for _ in range(3):
        assert signup(client).status_code == 200
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_signing_up_again_with_an_unconfirmed_address_mails_its_link_again(client):
    signup(client)
    cache.clear()  # a minute later
    signup(client, password="another long passphrase")

    first, second = mail.outbox
    assert link_in(second) and second.subject == first.subject  # only the link, again
    user = get_user_model().objects.get()
    assert user.check_password(PASSWORD)  # the second try changed nothing
    assert client.get(link_in(second)).status_code == 302
    assert Profile.objects.get(user=user).email_confirmed is True
    user.refresh_from_db()  # following the link set what this browser chose last
    assert user.check_password("another long passphrase") and not user.check_password(PASSWORD)


# --- The link --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_link_confirms_logs_in_and_works_once(client):
    signup(client)
    [message] = mail.outbox
    user = get_user_model().objects.get()

    response = client.get(link_in(message), follow=True)

    assert response.redirect_chain == [(reverse("stylize:upload"), 302)]
    assert "Your email address is confirmed" in response.content.decode()
    assert client.session["_auth_user_id"] == str(user.pk)
    assert Profile.objects.get(user=user).email_confirmed is True

    client.logout()
    again = client.get(link_in(message))  # used: says so kindly, logs nobody in
    page = again.content.decode()
    assert again.status_code == 200 and "_auth_user_id" not in client.session
    assert "Your address is confirmed" in page and "expired" not in page
    assert reverse("stylize:login") in page


@pytest.mark.django_db
def test_a_used_link_opened_again_in_another_browser_says_the_address_is_confirmed(client):
    signup(client)
    [message] = mail.outbox
    assert client.get(link_in(message)).status_code == 302  # confirmed, logged in

    elsewhere = Client()
    again = elsewhere.get(link_in(message))

    assert again.status_code == 200 and "_auth_user_id" not in elsewhere.session
    assert "Your address is confirmed" in again.content.decode()
    uid, token = link_in(message).rstrip("/").split("/")[-2:]
    tampered = elsewhere.get(reverse("stylize:email_confirm", args=[uid, token[:-1] + "x"]))
    assert tampered.status_code == 400 and "expired" in tampered.content.decode()


@pytest.mark.django_db
def test_a_link_opened_in_another_browser_confirms_but_logs_nobody_in(client):
    """Login CSRF: whoever signs up can send their link to someone else; following it
    must not log that person into the sender's account. And the browser that follows
    it chose no password: the one set at sign-up is gone, and it chooses one."""
    signup(client)
    assert log_in(client)  # an unconfirmed account can log in
    [message] = mail.outbox
    user = get_user_model().objects.get()
    elsewhere = Client()

    response = elsewhere.get(link_in(message), follow=True)

    (confirm_url, _), (set_password_url, _) = response.redirect_chain
    assert confirm_url.startswith("/accounts/confirm/") and set_password_url.endswith(
        "/password/set-password/")
    page = response.content.decode()
    assert "Your email address is confirmed. Choose a password" in page
    assert 'name="new_password1"' in page
    assert "the password of the account <strong>ada@example.com</strong>" in page
    assert "_auth_user_id" not in elsewhere.session
    assert Profile.objects.get(user=user).email_confirmed is True
    user.refresh_from_db()
    assert not user.check_password(PASSWORD)  # set before the address was confirmed
    assert client.get(reverse("stylize:profile")).status_code == 302  # logged out

    new = "the password chosen on confirming"
    done = elsewhere.post(set_password_url, {"new_password1": new, "new_password2": new},
                          follow=True)
    # Chosen knowingly, for the address shown: logged in, on to the upload page.
    assert done.redirect_chain == [(reverse("stylize:upload"), 302)]
    assert elsewhere.session["_auth_user_id"] == str(user.pk)
    assert "Your password is set" in done.content.decode()
    assert log_in(Client(), password=new) and not log_in(Client())


# --- Sign-up before the owner ----------------------------------------------------------

ATTACKERS_PASSWORD = "the attacker's own long passphrase"
TOKEN_URL = "/api/v1/auth/token/"


def api_client(key) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


@pytest.mark.django_db
def test_signing_up_with_an_address_before_its_owner_leaves_nothing_once_the_owner_confirms(
        queue):
    """The second attack: someone signs up with ada's address and password A and takes
    an API token (an unconfirmed account can log in); ada signs up later with password B
    and follows the link she is mailed, in her browser, and uploads a photo. The token,
    password A and the attacker's session must all be dead by then; password B works."""
    attacker = Client()
    signup(attacker, password=ATTACKERS_PASSWORD)
    assert log_in(attacker, password=ATTACKERS_PASSWORD)
    token = APIClient().post(TOKEN_URL, {"username": "ada@example.com",
                                         "password": ATTACKERS_PASSWORD})
    assert token.status_code == 200
    stolen = api_client(token.data["token"])
    assert stolen.get("/api/v1/jobs/").status_code == 200
    known_secret = accounts.profile_webhook_secret(user=get_user_model().objects.get())
    cache.clear()  # a few minutes later
    mail.outbox.clear()

    ada = Client()
    page = signup(ada, password=PASSWORD)
    assert page.status_code == 200 and "_auth_user_id" not in ada.session
    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    assert ada.get(link_in(message)).status_code == 302
    user = get_user_model().objects.get()
    assert ada.session["_auth_user_id"] == str(user.pk)
    style = StyleFactory(name="Tiny", slug="tiny", model_name="tiny", live_version=1)
    uploaded = ada.post(reverse("stylize:upload"), {
        "image": gradient_upload((96, 72)), "style": style.slug, "strength": "1",
        "max_side": "512"})
    assert uploaded.status_code == 302, uploaded.content.decode()[:2000]
    job = StyleJob.objects.get(owner=user)

    assert stolen.get("/api/v1/jobs/").status_code == 401
    assert stolen.get(f"/api/v1/jobs/{job.pk}/").status_code == 401
    assert not Token.objects.filter(user=user).exists()
    assert accounts.profile_webhook_secret(user=user) != known_secret
    photo = attacker.get(reverse("stylize:job_photo", args=[job.pk]))
    assert photo.status_code == 302 and "_auth_user_id" not in attacker.session
    assert APIClient().post(TOKEN_URL, {"username": "ada@example.com",
                                        "password": ATTACKERS_PASSWORD}).status_code == 400
    assert not log_in(Client(), password=ATTACKERS_PASSWORD)
    assert log_in(Client(), password=PASSWORD)
    assert ada.get(reverse("stylize:job_photo", args=[job.pk])).status_code == 200


@pytest.mark.django_db
def test_the_owner_signing_up_first_keeps_her_password_whoever_signs_up_after(client):
    signup(client)
    cache.clear()
    attacker = Client()
    signup(attacker, password=ATTACKERS_PASSWORD)  # her link again, nothing else
    assert not log_in(attacker, password=ATTACKERS_PASSWORD)

    assert client.get(link_in(mail.outbox[-1])).status_code == 302
    assert "_auth_user_id" in client.session
    assert log_in(Client()) and not log_in(Client(), password=ATTACKERS_PASSWORD)


@pytest.mark.django_db
def test_signing_up_again_with_a_confirmed_address_changes_nothing(client):
    signup(client)
    assert client.get(link_in(mail.outbox[0])).status_code == 302
    user = get_user_model().objects.get()
    key = Token.objects.create(user=user).key
    cache.clear()
    mail.outbox.clear()
    someone = Client()

    signup(someone, password=ATTACKERS_PASSWORD)

    [notice] = mail.outbox
    assert "tried to sign up" in notice.subject and not LINK.search(notice.body)
    user.refresh_from_db()
    assert user.check_password(PASSWORD) and Token.objects.get(user=user).key == key
    assert client.get(reverse("stylize:upload")).status_code == 200  # still logged in
    assert not log_in(someone, password=ATTACKERS_PASSWORD)


@pytest.mark.django_db
def test_a_tampered_or_expired_link_does_nothing(client, settings):
    signup(client)
    [message] = mail.outbox
    path = link_in(message)
    user = get_user_model().objects.get()

    assert client.get(path[:-3] + "xx/").status_code == 400
    other = UserFactory()
    uid_of_other = accounts.confirmation_link(other).split("/")[-3]
    token = path.split("/")[-2]
    assert client.get(f"/accounts/confirm/{uid_of_other}/{token}/").status_code == 400
    settings.EMAIL_CONFIRMATION_TIMEOUT = -1  # every link has expired
    assert client.get(path).status_code == 400
    assert Profile.objects.get(user=user).email_confirmed is False
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_an_unconfirmed_user_can_log_in_and_resend_the_link_once_a_minute(client):
    signup(client)
    mail.outbox.clear()
    cache.clear()
    assert log_in(client)

    page = client.get(reverse("stylize:profile")).content.decode()
    assert "not confirmed" in page and reverse("stylize:email_confirm_resend") in page
    assert client.get(reverse("stylize:email_confirm_resend")).status_code == 405

    client.post(reverse("stylize:email_confirm_resend"))
    client.post(reverse("stylize:email_confirm_resend"))  # too soon: nothing

    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    assert client.get(link_in(message)).status_code == 302
    page = client.get(reverse("stylize:profile")).content.decode()
    assert "not confirmed" not in page and reverse("stylize:email_confirm_resend") not in page


@pytest.mark.django_db
def test_accounts_staff_make_count_as_confirmed(client):
    User = get_user_model()
    made = User.objects.create_user("shell", "shell@example.com", PASSWORD)
    admin = User.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    call_command("createsuperuser", "--noinput", username="cli", email="cli@example.com")
    for user in (made, admin, User.objects.get(username="cli")):
        assert Profile.for_user(user).email_confirmed is True
        job = StyleJobFactory(owner=user, status=StyleJob.Status.FAILED, error="Broken.")
        assert job_email_send(job_id=job.pk) is True
    assert sorted(m.to[0] for m in mail.outbox) == [
        "boss@example.com", "cli@example.com", "shell@example.com",
    ]


# --- Results wait on the page ----------------------------------------------------------


@pytest.mark.django_db
def test_no_result_email_and_no_sweep_resend_for_an_unconfirmed_address(
    client, django_capture_on_commit_callbacks
):
    signup(client)
    mail.outbox.clear()
    user = get_user_model().objects.get()
    job = succeeded_job(user)

    assert job_email_send(job_id=job.pk) is False
    later = job.finished_at + timedelta(hours=2)
    with django_capture_on_commit_callbacks() as callbacks:
        counts = jobs.jobs_requeue_stuck(now=later)
    assert counts["emails"] == 0 and callbacks == []
    assert mail.outbox == []
    job.refresh_from_db()
    assert job.emailed_at is None

    client.force_login(user)
    page = client.get(reverse("stylize:job", args=[job.pk])).content.decode()
    assert 'id="result-image"' in page  # the result is on the page
    assert client.get(reverse("stylize:job_result", args=[job.pk])).status_code == 200

    accounts.email_confirm(user=user)
    with django_capture_on_commit_callbacks() as callbacks:
        counts = jobs.jobs_requeue_stuck(now=later)
    assert counts["emails"] == 1 and len(callbacks) == 1
    assert job_email_send(job_id=job.pk) is True
    assert mail.outbox[0].to == ["ada@example.com"]


@pytest.fixture
def finished_email_tasks():
    """Ids of the jobs whose email task the worker has run, and what it returned."""
    done, lock = {}, threading.Lock()

    def record(sender=None, args=None, retval=None, **kwargs):
        if sender is not None and sender.name == "stylize.tasks.job_email_send":
            with lock:
                done[args[0]] = retval

    task_postrun.connect(record, weak=False)
    yield done
    task_postrun.disconnect(record)


def wait_for(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail("timed out")


@pytest.mark.slow
def test_results_stay_on_the_page_until_the_link_is_followed_then_they_are_mailed(
    client, use_local_backend, celery_worker_thread, finished_email_tasks
):
    style = StyleFactory(name="Tiny", slug="tiny", model_name="tiny", live_version=1)
    signup(client)
    [confirmation] = mail.outbox
    assert log_in(client)  # before confirming

    def upload():
        response = client.post(reverse("stylize:upload"), {
            "image": gradient_upload((96, 72)), "style": style.slug, "strength": "1",
            "max_side": "512",
        })
        assert response.status_code == 302, response.content.decode()[:2000]
        return StyleJob.objects.latest("created_at")

    first = upload()
    wait_for(lambda: str(first.pk) in finished_email_tasks)  # the worker ran its email task
    first.refresh_from_db()
    assert first.status == StyleJob.Status.SUCCEEDED, first.error
    assert first.emailed_at is None and mail.outbox == [confirmation]
    status = client.get(reverse("stylize:job_status", args=[first.pk])).json()
    assert status["result_url"] == reverse("stylize:job_result", args=[first.pk])
    assert client.get(status["result_url"]).status_code == 200

    assert client.get(link_in(confirmation)).status_code == 302
    second = upload()
    wait_for(lambda: str(second.pk) in finished_email_tasks)

    second.refresh_from_db()
    assert second.status == StyleJob.Status.SUCCEEDED and second.emailed_at is not None
    confirmation_again, result = mail.outbox
    assert confirmation_again is confirmation
    assert result.to == ["ada@example.com"] and result.subject == "Your photo as Tiny"
    [(name, content, mimetype)] = result.attachments
    assert mimetype == "image/jpeg" and Image.open(io.BytesIO(content)).size == (96, 72)


@pytest.mark.django_db
def test_a_password_reset_for_an_unconfirmed_address_sends_its_link_not_a_reset(client):
    """Nothing but the confirmation link goes to an address not yet confirmed: someone
    who signed up with a stranger's address cannot make us mail them a reset link."""
    signup(client)
    mail.outbox.clear()
    cache.clear()  # the sign-up's mail counted against the once-a-minute limit

    client.post(reverse("stylize:password_reset"), {"email": "ada@example.com"})

    [message] = mail.outbox
    assert link_in(message) and "reset" not in message.body.lower()

    confirmed = UserFactory(email="grace@example.com")
    mail.outbox.clear()
    client.post(reverse("stylize:password_reset"), {"email": "grace@example.com"})
    [reset] = mail.outbox
    assert reset.to == [confirmed.email] and "/accounts/reset/" in reset.body
