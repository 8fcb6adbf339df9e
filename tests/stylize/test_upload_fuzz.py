"""The short fuzz run (`make test`): a few hundred mutated JPEG, PNG, WebP, GIF and TIFF
files through the upload validator, the web side's metadata walk and the worker's
loader; a few dozen through the API. The long run (2,000 files, 300 through a live
server and worker) is `make fuzz` (bench/fuzz_uploads.py). Mutations and outcomes:
tests/stylize/upload_fuzz.py.
"""

import warnings

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from rest_framework.test import APIClient

from stylize.models import StyleJob
from tests.factories import StyleFactory, UserFactory
from tests.stylize.upload_fuzz import mutated_files, seed_files, upload_outcome

SEEDS = seed_files()
# Deterministic (the same files every run), nothing written to .hypothesis/.
FUZZ = settings(database=None, deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
FILES_RUN = settings(FUZZ, max_examples=300)
API_RUN = settings(FUZZ, max_examples=40)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_is_accepted_and_loads_or_is_refused_as_expected(name):
    outcome = upload_outcome(SEEDS[name])
    if name in ("photo.gif", "photo.tiff"):
        assert outcome.refused == "unsupported_format"
    elif name == "animated.png":
        assert outcome.refused == "animated"
    else:
        assert outcome.loaded and not outcome.bug, outcome


@FILES_RUN
@given(case=mutated_files(SEEDS))
def test_mutated_files_are_refused_or_load_or_fail_readably(case):
    name, data, done = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's "truncated"/"corrupt EXIF" notes
        outcome = upload_outcome(data)
    assert not outcome.unhandled, (name, done, outcome)
    assert not outcome.private_left, (name, done, "private metadata was stored")


@pytest.fixture
def api(db, settings):
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 0  # every accepted file makes a queued job
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "job_create": "100000/hour"},
    }
    cache.clear()
    StyleFactory(slug="starry-night")
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(UserFactory())
    return client


@API_RUN
@given(case=mutated_files(SEEDS))
def test_the_api_never_answers_5xx_to_a_mutated_photo(api, case, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    monkeypatch.setattr("stylize.tasks.job_run.apply_async", lambda *a, **k: None)
    name, data, done = case
    before = StyleJob.objects.count()
    response = api.post("/api/v1/jobs/", {
        "image": SimpleUploadedFile(name, data, "application/octet-stream"),
        "style": "starry-night",
    }, format="multipart")
    assert response.status_code in (201, 400), (name, done, response.status_code)
    if response.status_code == 400:
        assert response.json()["image"], (name, done)
        assert StyleJob.objects.count() == before
