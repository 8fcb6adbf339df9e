"""The REST API under /api/v1/: every endpoint, with and without auth, own and others'."""

import re
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stylize.models import DEFAULT_STROKE, Style, StyleJob
from tests.factories import BankStyleFactory, StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import png_bytes

pytestmark = [
    pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")
]

JOB_FIELDS = {
    "id", "status", "error", "result_url", "style", "blend_with", "blend", "stroke", "strength",
    "preserve_colors", "max_side", "created_at", "started_at", "finished_at",
    "stage", "progress", "jobs_ahead", "share_url", "share_expires_at",
    "callback_url", "callback_delivered_at", "callback_error",
}


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def style():
    return StyleFactory(
        slug="starry-night",
        name="Starry Night",
        description="Swirls.",
        sample=ContentFile(png_bytes(), name="sample.png"),
    )


def upload(name="photo.png", data=None, content_type="image/png"):
    return SimpleUploadedFile(name, data if data is not None else png_bytes(), content_type)


RESULT = b"\xff\xd8 a JPEG result"


def succeeded(job):
    job.result_image.save("result.jpg", ContentFile(RESULT), save=False)
    job.status = StyleJob.Status.SUCCEEDED
    job.started_at = job.finished_at = timezone.now()
    job.save()
    return job


# --- Styles --------------------------------------------------------------------------


def test_styles_list_is_public_and_only_offered_styles(client, style):
    StyleFactory(slug="draft", status=Style.Status.DRAFT, live_version=None)
    StyleFactory(slug="private", is_public=False)
    StyleFactory(slug="failed", status=Style.Status.FAILED, live_version=None)

    response = client.get("/api/v1/styles/")

    assert response.status_code == 200
    assert [s["slug"] for s in response.json()] == ["starry-night"]
    body = response.json()[0]
    assert set(body) == {"slug", "name", "description", "painting", "sample", "bank",
                         "mixes_with", "own", "status", "progress", "error"}
    # A bank of its own (the identity and itself): nothing to mix with.
    assert body["bank"] == style.model_name and body["mixes_with"] == []
    assert (body["own"], body["status"], body["progress"], body["error"]) == (
        False, "ready", None, "")
    assert body["name"] == "Starry Night"
    assert body["description"] == "Swirls."
    assert body["painting"].startswith("http://testserver/media/styles/paintings/")
    assert body["sample"].startswith("http://testserver/media/styles/examples/")


def test_style_without_sample_has_null_sample(client):
    StyleFactory(slug="plain")
    assert client.get("/api/v1/styles/plain/").json()["sample"] is None


def test_style_detail_by_slug(client, auth_client, style):
    for c in (client, auth_client):
        response = c.get("/api/v1/styles/starry-night/")
        assert response.status_code == 200
        assert response.json()["slug"] == "starry-night"


@pytest.mark.parametrize("slug", ["draft", "private", "nope"])
def test_style_detail_of_a_style_not_offered_is_404(client, slug):
    StyleFactory(slug="draft", status=Style.Status.DRAFT, live_version=None)
    StyleFactory(slug="private", is_public=False)
    response = client.get(f"/api/v1/styles/{slug}/")
    assert response.status_code == 404
    assert response.json()["detail"]


def test_shipped_styles_are_read_only(auth_client, style):
    # POST makes one of your own styles from a painting (test_own_styles.py): nothing else.
    made = auth_client.post("/api/v1/styles/", {"slug": "x"})
    assert made.status_code == 400 and "painting" in made.json()
    assert auth_client.delete("/api/v1/styles/starry-night/").status_code == 404
    assert auth_client.put("/api/v1/styles/starry-night/", {"name": "x"}).status_code == 405
    assert Style.objects.filter(slug="starry-night").exists()


# --- Jobs: without auth ----------------------------------------------------------------


def test_jobs_need_auth(client, style, account):
    job = StyleJobFactory(owner=account, style=style)
    for method, url in [
        ("get", "/api/v1/jobs/"),
        ("post", "/api/v1/jobs/"),
        ("get", f"/api/v1/jobs/{job.pk}/"),
        ("delete", f"/api/v1/jobs/{job.pk}/"),
        ("get", f"/api/v1/jobs/{job.pk}/result/"),
    ]:
        response = getattr(client, method)(url)
        assert response.status_code == 401, (method, url)
        assert response.json()["detail"]
    assert StyleJob.objects.filter(pk=job.pk).exists()


def test_a_bad_token_is_401(client, style):
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/v1/jobs/").status_code == 401
    # A public endpoint still refuses a wrong token rather than ignoring it.
    assert client.get("/api/v1/styles/").status_code == 401


# --- Jobs: create ----------------------------------------------------------------------


def test_create_job(auth_client, account, style):
    response = auth_client.post(
        "/api/v1/jobs/",
        {"image": upload(), "style": "starry-night", "strength": "0.5",
         "preserve_colors": "true", "max_side": "512"},
        format="multipart",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == JOB_FIELDS
    job = StyleJob.objects.get(pk=body["id"])
    assert job.owner == account
    assert job.style == style
    assert (job.strength, job.preserve_colors, job.max_side) == (0.5, True, 512)
    assert body["status"] == "queued"
    assert body["style"] == "starry-night"
    assert body["result_url"] is None
    assert body["started_at"] is None and body["finished_at"] is None
    assert response["Location"] == f"http://testserver/api/v1/jobs/{job.pk}/"
    assert job.input_image.read() == png_bytes()


def test_create_job_defaults(auth_client, style):
    response = auth_client.post(
        "/api/v1/jobs/", {"image": upload(), "style": "starry-night"}, format="multipart"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["strength"], body["preserve_colors"], body["max_side"]) == (1.0, False, 1024)
    assert (body["blend_with"], body["blend"], body["stroke"]) == (None, 0.0, DEFAULT_STROKE)


def test_create_job_enqueues_on_commit(auth_client, style, django_capture_on_commit_callbacks,
                                       monkeypatch):
    sent = []
    monkeypatch.setattr("stylize.tasks.job_run.apply_async",
                        lambda args, countdown=0, queue=None: sent.append((args, queue)))
    with django_capture_on_commit_callbacks(execute=True):
        response = auth_client.post(
            "/api/v1/jobs/", {"image": upload(), "style": "starry-night"}, format="multipart"
        )
    assert sent == [((response.json()["id"],), "celery")]  # a small job's queue


def test_create_job_with_a_token(client, account, style):
    token = Token.objects.create(user=account)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post(
        "/api/v1/jobs/", {"image": upload(), "style": "starry-night"}, format="multipart"
    )
    assert response.status_code == 201
    assert StyleJob.objects.get().owner == account


def test_session_auth_needs_csrf(account, style):
    """The pages use the session; an unsafe request from them must carry the CSRF token."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(account)
    response = client.post(
        "/api/v1/jobs/", {"image": upload(), "style": "starry-night"}, format="multipart"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert client.get("/api/v1/jobs/").status_code == 200


def bad_option(field, value, message):
    """A row of the test below: a photo and a style, and ``field``'s bad ``value``."""
    return {"image": True, "style": "starry-night", field: value}, field, message


@pytest.mark.parametrize(
    "data, field, message",
    [
        # No photo: an upload, or a preview's or an earlier job's (test_previews.py).
        ({"style": "starry-night"}, "image", "Send the photo as “image”, or name one of your"),
        ({"image": "not a file", "style": "starry-night"}, "image", "not a file"),
        ({"image": True}, "style", "Choose a style: GET /api/v1/styles/ lists them."),
        ({"image": True, "style": "nope"}, "style", "There is no style “nope” to use."),
        ({"image": True, "style": "draft"}, "style", "There is no style “draft” to use."),
        bad_option("strength", "1.5", "less than or equal to 1"),
        bad_option("strength", "-0.1", "greater than or equal to 0"),
        bad_option("strength", "strong", "A valid number is required."),
        bad_option("strength", "nan", "number"),
        bad_option("max_side", "63", "greater than or equal to 64"),
        bad_option("max_side", "4097", "less than or equal to 4096"),
        bad_option("max_side", "1e3", "A valid integer is required."),
        bad_option("preserve_colors", "perhaps", "Must be a valid boolean."),
    ],
)
def test_create_job_bad_input_is_400_with_a_message(auth_client, style, data, field, message):
    StyleFactory(slug="draft", status=Style.Status.DRAFT, live_version=None)
    if data.get("image") is True:
        data = {**data, "image": upload()}
    response = auth_client.post("/api/v1/jobs/", data, format="multipart")
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])
    assert not StyleJob.objects.exists()


# --- Jobs: mixing two styles of a bank, brush strokes ------------------------------------


@pytest.fixture
def bank():
    """Two offered slots of one bank, a draft and a private one, and a slot of another."""
    return {
        "alpha": BankStyleFactory(name="Alpha", slug="alpha", bank_index=1, bank_slots=5),
        "beta": BankStyleFactory(name="Beta", slug="beta", bank_index=2, bank_slots=5),
        "draft": BankStyleFactory(slug="draft-slot", bank_index=3, bank_slots=5,
                                  status=Style.Status.DRAFT, live_version=None),
        "private": BankStyleFactory(slug="private-slot", bank_index=4, bank_slots=5,
                                    is_public=False),
        "elsewhere": BankStyleFactory(name="Elsewhere", slug="elsewhere",
                                      model_name="other_bank", bank_index=1),
    }


def test_create_a_mixed_job(auth_client, bank):
    response = auth_client.post(
        "/api/v1/jobs/",
        {"image": upload(), "style": "alpha", "blend_with": "beta", "blend": "0.3",
         "stroke": "bold"},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["style"], body["blend_with"], body["blend"], body["stroke"]) == (
        "alpha", "beta", 0.3, "bold")
    job = StyleJob.objects.get(pk=body["id"])
    assert (job.blend_with, job.blend, job.stroke) == (bank["beta"], 0.3, "bold")
    assert auth_client.get(f"/api/v1/jobs/{job.pk}/").json()["blend_with"] == "beta"


def test_a_second_style_without_a_share_is_an_even_mix(auth_client, bank):
    response = auth_client.post(
        "/api/v1/jobs/", {"image": upload(), "style": "beta", "blend_with": "alpha"},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert (response.json()["blend_with"], response.json()["blend"]) == ("alpha", 0.5)


@pytest.mark.parametrize("stroke", ["fine", "medium", "bold"])
def test_every_stroke_can_be_chosen(auth_client, style, stroke):
    response = auth_client.post(
        "/api/v1/jobs/", {"image": upload(), "style": "starry-night", "stroke": stroke},
        format="multipart",
    )
    assert response.status_code == 201 and response.json()["stroke"] == stroke


MIXABLE = "Alpha can be mixed with: Beta (beta)."


@pytest.mark.parametrize(
    "data, field, messages",
    [
        ({"blend_with": "nope"}, "blend_with",
         ["There is no style “nope” to mix in.", MIXABLE]),
        ({"blend_with": "draft-slot"}, "blend_with", ["no style “draft-slot” to mix in"]),
        ({"blend_with": "private-slot"}, "blend_with", ["no style “private-slot” to mix in"]),
        ({"blend": "0.5"}, "blend", ["A mix needs a second style"]),
        ({"blend_with": "", "blend": "1"}, "blend", ["A mix needs a second style"]),
        ({"blend_with": "alpha"}, "blend_with", ["other than Alpha", MIXABLE]),
        ({"blend_with": "elsewhere"}, "blend_with",
         ["Alpha and Elsewhere cannot be mixed", MIXABLE]),
        ({"style": "starry-night", "blend_with": "alpha"}, "blend_with",
         ["Starry Night and Alpha cannot be mixed",
          "Starry Night cannot be mixed with any other style."]),
        ({"blend_with": "beta", "blend": "1.5"}, "blend", ["a number from 0 to 1"]),
        ({"blend_with": "beta", "blend": "-0.1"}, "blend", ["a number from 0 to 1"]),
        ({"blend_with": "beta", "blend": "nan"}, "blend", ["number"]),
        ({"blend_with": "beta", "blend": "inf"}, "blend", ["number"]),
        ({"blend_with": "beta", "blend": "lots"}, "blend", ["A valid number is required."]),
        ({"stroke": "huge"}, "stroke", ["Brush strokes must be one of fine, medium, bold"]),
    ],
)
def test_a_bad_mix_or_stroke_is_400_with_a_message(auth_client, style, bank, data, field,
                                                   messages):
    data = {"image": upload(), "style": "alpha", **data}
    response = auth_client.post("/api/v1/jobs/", data, format="multipart")
    assert response.status_code == 400, response.json()
    errors = response.json()[field]
    assert isinstance(errors, list) and all(isinstance(error, str) for error in errors)
    for message in messages:
        assert message in " ".join(errors)
    assert not StyleJob.objects.exists()


def test_the_styles_say_which_can_be_mixed(client, style, bank):
    styles = {s["slug"]: s for s in client.get("/api/v1/styles/").json()}
    assert set(styles) == {"starry-night", "alpha", "beta", "elsewhere"}
    assert (styles["alpha"]["bank"], styles["alpha"]["mixes_with"]) == ("bank", ["beta"])
    assert (styles["beta"]["bank"], styles["beta"]["mixes_with"]) == ("bank", ["alpha"])
    assert (styles["elsewhere"]["bank"], styles["elsewhere"]["mixes_with"]) == ("other_bank", [])
    assert (styles["starry-night"]["bank"], styles["starry-night"]["mixes_with"]) == (
        style.model_name, [])  # a bank of its own


def test_create_job_with_json_is_415(auth_client, style):
    response = auth_client.post(
        "/api/v1/jobs/", {"style": "starry-night"}, format="json"
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_create_job_with_a_broken_body_is_400(auth_client, style):
    response = auth_client.generic(
        "POST", "/api/v1/jobs/", b"--xyz\r\nnot really multipart",
        content_type="multipart/form-data; boundary=xyz",
    )
    assert 400 <= response.status_code < 500
    response = auth_client.generic(
        "POST", "/api/v1/jobs/", b"garbage", content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert response.json()["detail"]


def test_broken_json_to_the_token_endpoint_is_400(client):
    response = client.generic(
        "POST", "/api/v1/auth/token/", b"{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


# --- Jobs: list, detail, delete --------------------------------------------------------


def test_list_shows_only_own_jobs_newest_first(auth_client, account, style):
    older = StyleJobFactory(owner=account, style=style)
    newer = StyleJobFactory(owner=account, style=style)
    StyleJobFactory(style=style)  # someone else's
    StyleJob.objects.filter(pk=older.pk).update(created_at=timezone.now() - timezone.timedelta(1))

    response = auth_client.get("/api/v1/jobs/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [j["id"] for j in body["results"]] == [str(newer.pk), str(older.pk)]
    assert set(body["results"][0]) == JOB_FIELDS


def test_list_is_paginated_by_20(auth_client, account, style):
    for _ in range(23):
        StyleJobFactory(owner=account, style=style)

    first = auth_client.get("/api/v1/jobs/").json()
    second = auth_client.get(first["next"]).json()

    assert first["count"] == 23
    assert len(first["results"]) == 20
    assert first["previous"] is None
    assert first["next"] == "http://testserver/api/v1/jobs/?page=2"
    assert len(second["results"]) == 3 and second["next"] is None
    ids = {j["id"] for j in first["results"]} | {j["id"] for j in second["results"]}
    assert len(ids) == 23
    assert auth_client.get("/api/v1/jobs/?page=9").status_code == 404


def test_detail_of_own_job(auth_client, account, style):
    job = StyleJobFactory(owner=account, style=style, strength=0.25, max_side=2048)

    body = auth_client.get(f"/api/v1/jobs/{job.pk}/").json()

    assert set(body) == JOB_FIELDS
    assert body["id"] == str(job.pk)
    assert body["status"] == "queued"
    assert body["style"] == "starry-night"
    assert (body["strength"], body["max_side"]) == (0.25, 2048)
    assert body["result_url"] is None
    assert body["error"] == ""


def test_detail_of_a_succeeded_job_has_an_absolute_result_url(auth_client, account, style):
    job = succeeded(StyleJobFactory(owner=account, style=style))
    body = auth_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["status"] == "succeeded"
    assert body["result_url"] == f"http://testserver/api/v1/jobs/{job.pk}/result/"
    assert body["finished_at"] is not None


@pytest.mark.parametrize("accept", [None, "image/jpeg", "*/*", "application/json"])
def test_result_download_for_the_owner(client, account, style, accept):
    job = succeeded(StyleJobFactory(owner=account, style=style))
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=account).key}")
    url = client.get(f"/api/v1/jobs/{job.pk}/").json()["result_url"]
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = client.get(url, **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == RESULT
    assert f'filename="prisma-starry-night-{str(job.pk)[:8]}.jpg"' in (
        response["Content-Disposition"])
    assert response["Cache-Control"] == "private, no-store"


def test_result_download_refused_to_others_and_before_success(client, auth_client, account, style):
    other = succeeded(StyleJobFactory(style=style))
    unfinished = StyleJobFactory(owner=account, style=style)
    assert client.get(f"/api/v1/jobs/{other.pk}/result/").status_code == 401
    for job in (other, unfinished):
        response = auth_client.get(f"/api/v1/jobs/{job.pk}/result/", HTTP_ACCEPT="image/jpeg")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["detail"]


def test_detail_of_a_failed_job_has_its_error(auth_client, account, style):
    job = StyleJobFactory(owner=account, style=style, status=StyleJob.Status.FAILED,
                          error="The photo could not be read.", finished_at=timezone.now())
    body = auth_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert (body["status"], body["error"], body["result_url"]) == (
        "failed", "The photo could not be read.", None)


def test_another_users_job_is_404(auth_client, style):
    other = succeeded(StyleJobFactory(style=style))
    assert auth_client.get(f"/api/v1/jobs/{other.pk}/").status_code == 404
    response = auth_client.delete(f"/api/v1/jobs/{other.pk}/")
    assert response.status_code == 404
    assert response.json()["detail"]
    assert StyleJob.objects.filter(pk=other.pk).exists()
    assert other.result_image.storage.exists(other.result_image.name)


@pytest.mark.parametrize("job_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_unknown_job_is_404(auth_client, job_id):
    assert auth_client.get(f"/api/v1/jobs/{job_id}/").status_code == 404


def test_delete_own_job_deletes_its_files(auth_client, account, style,
                                          django_capture_on_commit_callbacks):
    job = succeeded(StyleJobFactory(owner=account, style=style))
    storage = job.input_image.storage
    names = [job.input_image.name, job.result_image.name]
    assert all(storage.exists(n) for n in names)

    with django_capture_on_commit_callbacks(execute=True):
        response = auth_client.delete(f"/api/v1/jobs/{job.pk}/")

    assert response.status_code == 204
    assert not StyleJob.objects.filter(pk=job.pk).exists()
    assert not any(storage.exists(n) for n in names)


def test_jobs_cannot_be_edited(auth_client, account, style):
    job = StyleJobFactory(owner=account, style=style)
    assert auth_client.patch(f"/api/v1/jobs/{job.pk}/", {"strength": 0}).status_code == 405
    assert auth_client.put(f"/api/v1/jobs/{job.pk}/", {}).status_code == 405


# --- Throttling ------------------------------------------------------------------------


def test_job_creation_is_throttled_per_user(settings, style):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "job_create": "2/hour"},
    }
    alice, bob = APIClient(), APIClient()
    alice.force_authenticate(UserFactory())
    bob.force_authenticate(UserFactory())

    def create(c):
        return c.post("/api/v1/jobs/", {"image": upload(), "style": "starry-night"},
                      format="multipart")

    assert [create(alice).status_code for _ in range(2)] == [201, 201]
    refused = create(alice)
    assert refused.status_code == 429
    assert "throttled" in refused.json()["detail"]
    assert int(refused["Retry-After"]) > 0
    assert StyleJob.objects.count() == 2
    # Reading is not throttled, and another user has a counter of their own.
    assert alice.get("/api/v1/jobs/").status_code == 200
    assert create(bob).status_code == 201


def test_default_job_create_rate_is_set():
    from django.conf import settings

    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["job_create"] == "30/hour"


# --- Tokens ----------------------------------------------------------------------------


def test_token_for_username_and_password(client):
    account = UserFactory(username="ada")
    response = client.post("/api/v1/auth/token/",
                           {"username": "ada", "password": "correct horse battery staple"})
    assert response.status_code == 200
    token = response.json()["token"]
    assert token == Token.objects.get(user=account).key
    # JSON works too, and gives the same token.
    again = client.post("/api/v1/auth/token/",
                        {"username": "ada", "password": "correct horse battery staple"},
                        format="json")
    assert again.json() == {"token": token}

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/jobs/").status_code == 200


@pytest.mark.parametrize("data", [
    {"username": "ada", "password": "wrong"},
    {"username": "nobody", "password": "correct horse battery staple"},
    {"username": "ada"},
    {},
])
def test_token_refused_without_the_right_password(client, data):
    UserFactory(username="ada")
    response = client.post("/api/v1/auth/token/", data)
    assert response.status_code == 400
    assert response.json()  # a message per field or non_field_errors
    assert not Token.objects.exists()


def test_token_endpoint_is_throttled(settings, client):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth_token": "3/minute"},
    }
    UserFactory(username="ada")
    codes = [client.post("/api/v1/auth/token/", {"username": "ada", "password": "x"}).status_code
             for _ in range(4)]
    assert codes == [400, 400, 400, 429]


def test_drf_create_token_command_keeps_working(client):
    account = UserFactory(username="grace")
    out = StringIO()
    call_command("drf_create_token", "grace", stdout=out)
    key = Token.objects.get(user=account).key
    assert key in out.getvalue()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/jobs/").status_code == 200


# --- Schema and docs -------------------------------------------------------------------


def test_schema_validates_without_warnings(tmp_path):
    schema = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema))
    text = schema.read_text()
    for path in ["/api/v1/styles/", "/api/v1/styles/{slug}/", "/api/v1/jobs/",
                 "/api/v1/jobs/{id}/", "/api/v1/jobs/{id}/result/", "/api/v1/auth/token/"]:
        assert f"  {path}:" in text
    assert "multipart/form-data" in text
    assert "result_url" in text


def test_schema_documents_the_mix_and_the_stroke(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    create = schema["paths"]["/api/v1/jobs/"]["post"]["requestBody"]["content"]
    request = create["multipart/form-data"]["schema"]
    request = components[request["$ref"].rsplit("/", 1)[-1]]["properties"]
    [stroke_enum] = request["stroke"]["allOf"]
    assert components[stroke_enum["$ref"].rsplit("/", 1)[-1]]["enum"] == ["fine", "medium", "bold"]
    assert request["stroke"]["default"] == DEFAULT_STROKE
    assert "bold (512 px)" in request["stroke"]["description"]
    assert "0.5" in request["blend"]["description"]
    assert "even mix" in request["blend"]["description"]
    assert "mixes_with" in request["blend_with"]["description"]
    job = components["Job"]["properties"]
    assert {"blend_with", "blend", "stroke"} <= set(job)
    style = components["Style"]["properties"]
    assert style["mixes_with"]["type"] == "array" and style["bank"]["nullable"] is True


def test_schema_is_served(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/v1/jobs/" in response.json()["paths"]


def test_swagger_ui_renders_without_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html.lower()
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert any("swagger-ui" in a for a in assets), assets
    external = [a for a in assets if re.match(r"(?:https?:)?//", a)]
    assert external == []
    assert not re.search(r"https?://(?!testserver)", html), "an external URL in the page"
    # The split view (no inline script, for the CSP) names the schema in its script.
    assert "/api/schema/" in client.get("/api/docs/?script=").content.decode()
    # The assets it names are really served from our static files.
    from django.contrib.staticfiles import finders

    local = [a for a in assets if a.startswith("/static/")]
    assert local
    for asset in local:
        assert finders.find(asset.removeprefix("/static/").split("?")[0]), asset
