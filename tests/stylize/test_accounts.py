"""Sign-up, log-in/out, password reset by email, the profile and its email switch."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from stylize.models import Profile, StyleJob
from stylize.services.job_emails import job_email_send
from tests.factories import StyleJobFactory, UserFactory
from tests.helpers import PASSWORD, signup

pytestmark = pytest.mark.django_db


def confirmation_link(message) -> str:
    return re.search(r"https?://[^/\s]+(/accounts/confirm/\S+/)", message.body).group(1)


def test_signup_creates_the_user_and_the_mailed_link_logs_them_in_and_they_can_log_in_again(
    client,
):
    response = signup(client, email="Ada@Example.com")

    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()
    assert "_auth_user_id" not in client.session  # not before the address is confirmed
    user = get_user_model().objects.get()
    assert user.email == "ada@example.com" and user.check_password(PASSWORD)
    profile = Profile.objects.get(user=user)
    assert profile.email_results is True and profile.email_confirmed is False

    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    response = client.get(confirmation_link(message))
    assert response.status_code == 302 and response.url == reverse("stylize:upload")
    assert Profile.objects.get(user=user).email_confirmed is True
    assert client.get(reverse("stylize:upload")).status_code == 200  # logged in

    client.logout()
    response = client.post(
        reverse("stylize:login"), {"username": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == reverse("stylize:upload")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_signup_makes_no_second_account_for_a_taken_email_whatever_its_case(client):
    UserFactory(username="ada", email="ada@example.com")

    response = signup(client, email="ADA@example.com")

    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()
    assert "already exists" not in response.content.decode()
    assert get_user_model().objects.count() == 1
    assert "_auth_user_id" not in client.session


def test_signup_refuses_mismatched_passwords(client):
    response = signup(client, confirm="something else entirely")
    assert response.status_code == 200 and not get_user_model().objects.exists()


def test_login_with_a_wrong_password_is_refused_and_logout_needs_post(client):
    UserFactory(username="bob", email="bob@example.com")

    response = client.post(reverse("stylize:login"), {"username": "bob", "password": "wrong"})
    assert response.status_code == 200 and "_auth_user_id" not in client.session

    response = client.post(reverse("stylize:login"), {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302 and "_auth_user_id" in client.session

    assert client.get(reverse("stylize:logout")).status_code == 405
    response = client.post(reverse("stylize:logout"))
    assert response.status_code == 302 and response.url == reverse("stylize:home")
    assert "_auth_user_id" not in client.session


def test_login_follows_next_to_the_page_that_asked(client):
    UserFactory(username="bob")
    jobs = reverse("stylize:job_list")
    response = client.get(jobs)
    assert response.status_code == 302
    assert response.url == f"{reverse('stylize:login')}?next={jobs}"

    response = client.post(
        response.url, {"username": "bob", "password": PASSWORD, "next": jobs}
    )
    assert response.status_code == 302 and response.url == jobs


def test_password_reset_mails_the_accounts_address_and_the_link_sets_a_new_password(client):
    user = UserFactory(username="carol", email="Carol@Example.com")

    response = client.post(reverse("stylize:password_reset"), {"email": "carol@example.com"})
    assert response.status_code == 302 and response.url == reverse("stylize:password_reset_done")

    [message] = mail.outbox
    assert message.to == ["Carol@Example.com"]  # the address stored on the account
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", message.body).group(1)

    response = client.get(link, follow=True)  # Django swaps the token for a session one
    assert response.status_code == 200 and response.context["validlink"]
    new_password = "a brand new long passphrase"
    response = client.post(
        response.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert response.status_code == 302
    assert response.url == reverse("stylize:password_reset_complete")
    user.refresh_from_db()
    assert user.check_password(new_password)


def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same(client):
    response = client.post(reverse("stylize:password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302 and response.url == reverse("stylize:password_reset_done")
    assert mail.outbox == []


def test_profile_needs_login_and_saves_the_email_switch(client):
    assert client.get(reverse("stylize:profile")).status_code == 302
    user = UserFactory(email="dan@example.com")
    client.force_login(user)

    page = client.get(reverse("stylize:profile")).content.decode()
    assert "dan@example.com" in page and 'name="email_results"' in page and "checked" in page

    response = client.post(reverse("stylize:profile"), {})  # checkbox off
    assert response.status_code == 302
    assert Profile.objects.get(user=user).email_results is False

    client.post(reverse("stylize:profile"), {"email_results": "on"})
    assert Profile.objects.get(user=user).email_results is True


def test_job_email_is_skipped_when_the_owner_turned_email_off(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    quiet = UserFactory(email="quiet@example.com")
    Profile.objects.create(user=quiet, email_results=False)
    loud = UserFactory(email="loud@example.com")
    Profile.for_user(loud)
    for owner in (quiet, loud):
        StyleJobFactory(owner=owner, status=StyleJob.Status.FAILED, error="Broken.")

    sent = {job.owner.email: job_email_send(job_id=job.pk) for job in StyleJob.objects.all()}

    assert sent == {"quiet@example.com": False, "loud@example.com": True}
    assert [m.to for m in mail.outbox] == [["loud@example.com"]]


def test_the_profile_page_makes_and_replaces_an_api_token_that_the_api_accepts(client):
    from rest_framework.authtoken.models import Token

    user = UserFactory()
    url = reverse("stylize:api_token")
    assert client.post(url).status_code == 302 and not Token.objects.exists()  # login first
    client.force_login(user)
    assert client.get(url).status_code == 405

    client.post(url)
    first = Token.objects.get(user=user).key
    assert first in client.get(reverse("stylize:profile")).content.decode()
    client.post(url)
    second = Token.objects.get(user=user).key
    assert second != first

    client.logout()
    api = "/api/v1/jobs/"
    assert client.get(api, HTTP_AUTHORIZATION=f"Token {second}").status_code == 200
    assert client.get(api, HTTP_AUTHORIZATION=f"Token {first}").status_code == 401

