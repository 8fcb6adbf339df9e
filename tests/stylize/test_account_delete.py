"""A user deletes their account with everything in it, on the page or through the API:
the user, their profile and token, their jobs, and the jobs' photos and results."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stylize.models import Profile, StyleJob
from tests.factories import StyleJobFactory, UserFactory
from tests.helpers import PASSWORD

API_URL = "/api/v1/account/"


def job_with_result(owner) -> StyleJob:
    job = StyleJobFactory(owner=owner, status=StyleJob.Status.RUNNING)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 20, 30)).save(buffer, format="JPEG")
    job.result_image.save("result.jpg", ContentFile(buffer.getvalue()), save=False)
    job.status = StyleJob.Status.SUCCEEDED
    job.save()
    return job


def files_of(jobs) -> list:
    return [(f.storage, f.name) for job in jobs for f in (job.input_image, job.result_image) if f]


@pytest.fixture
def ada_with_jobs():
    """A user with a profile, a token, two jobs (one with a result) and their files;
    and someone else's job, which must stay."""
    user = UserFactory(username="ada", email="ada@example.com")
    Profile.for_user(user)
    token = Token.objects.create(user=user)
    jobs = [job_with_result(user), StyleJobFactory(owner=user)]
    theirs = job_with_result(UserFactory(username="bob"))
    files = files_of(jobs)
    assert len(files) == 3 and all(storage.exists(name) for storage, name in files)
    return {"user": user, "token": token, "jobs": jobs, "files": files, "theirs": theirs}


def assert_all_gone(ada_with_jobs):
    user = ada_with_jobs["user"]
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert not StyleJob.objects.filter(owner_id=user.pk).exists()
    assert not Profile.objects.filter(user_id=user.pk).exists()
    assert not Token.objects.filter(user_id=user.pk).exists()
    assert not [name for storage, name in ada_with_jobs["files"] if storage.exists(name)]
    theirs = ada_with_jobs["theirs"]
    assert StyleJob.objects.filter(pk=theirs.pk).exists()
    assert all(storage.exists(name) for storage, name in files_of([theirs]))


# --- The page --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # files go after the real commit
def test_the_page_asks_for_the_password_then_deletes_everything_and_logs_out(ada_with_jobs):
    client = Client()
    client.force_login(ada_with_jobs["user"])
    profile_page = client.get(reverse("stylize:profile")).content.decode()
    assert reverse("stylize:account_delete") in profile_page

    page = client.get(reverse("stylize:account_delete"))
    assert page.status_code == 200 and 'type="password"' in page.content.decode()

    wrong = client.post(reverse("stylize:account_delete"), {"password": "not it"})
    assert wrong.status_code == 400 and "That is not your password." in wrong.content.decode()
    assert get_user_model().objects.filter(pk=ada_with_jobs["user"].pk).exists()
    assert all(storage.exists(name) for storage, name in ada_with_jobs["files"])

    response = client.post(reverse("stylize:account_delete"), {"password": PASSWORD}, follow=True)

    assert response.redirect_chain == [(reverse("stylize:home"), 302)]
    assert "Your account, your jobs and their images are deleted." in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert_all_gone(ada_with_jobs)


@pytest.mark.django_db
def test_the_page_needs_login_post_and_the_csrf_token(ada_with_jobs):
    anonymous = Client()
    response = anonymous.post(reverse("stylize:account_delete"), {"password": PASSWORD})
    assert response.status_code == 302 and response.url.startswith(reverse("stylize:login"))

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(ada_with_jobs["user"])
    response = strict.post(reverse("stylize:account_delete"), {"password": PASSWORD})
    assert response.status_code == 403
    assert get_user_model().objects.filter(pk=ada_with_jobs["user"].pk).exists()
    assert StyleJob.objects.filter(owner=ada_with_jobs["user"]).count() == 2


# --- The API ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_api_deletes_the_account_of_the_token_and_the_token_stops_working(ada_with_jobs):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ada_with_jobs['token'].key}")

    response = client.delete(API_URL)

    assert response.status_code == 204 and not response.content
    assert_all_gone(ada_with_jobs)
    assert client.get("/api/v1/jobs/").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_api_deletes_the_account_of_the_session(ada_with_jobs):
    client = APIClient()
    response = client.post(reverse("stylize:login"), {"username": "ada", "password": PASSWORD})
    assert response.status_code == 302 and "_auth_user_id" in client.session
    assert client.delete(API_URL).status_code == 204
    assert_all_gone(ada_with_jobs)


@pytest.mark.django_db
def test_the_api_refuses_without_credentials_and_a_session_without_csrf(ada_with_jobs):
    assert APIClient().delete(API_URL).status_code == 401
    strict = APIClient(enforce_csrf_checks=True)
    strict.force_login(ada_with_jobs["user"])  # a session, as from the browser
    assert strict.delete(API_URL).status_code == 403
    assert get_user_model().objects.filter(pk=ada_with_jobs["user"].pk).exists()
    assert StyleJob.objects.filter(owner=ada_with_jobs["user"]).count() == 2


@pytest.mark.django_db
def test_the_schema_documents_the_account_endpoint(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/account/"]["delete"]
    assert "204" in operation["responses"] and "Delete your account" in operation["summary"]
