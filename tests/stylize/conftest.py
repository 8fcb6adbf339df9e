"""Fixtures of the site's tests: accounts and clients, the job queue and throttles, the tiny
models' styles, the browser, and the training tests (train_style, train_bank, the admin's
Retrain)."""

from unittest import mock

import keras
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import BankStyleFactory, StyleFactory, UserFactory
from tests.helpers import RecordingBackend, TrainingCaptured, noise_photos, open_browser
from tests.model_fixtures import TINY_BANK_NAME


@pytest.fixture
def account():
    """Ada's account (ada@example.com), not signed in anywhere."""
    return UserFactory(email="ada@example.com")


@pytest.fixture
def user(client, account):
    """Ada, signed in on ``client`` (the pages)."""
    client.force_login(account)
    return account


@pytest.fixture
def auth_client(account):
    """The API as Ada (DRF's test client, authenticated)."""
    api = APIClient()
    api.force_authenticate(account)
    return api


@pytest.fixture
def staff_client(client):
    """``client`` signed in as a staff superuser (the admin)."""
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def recording_backend(monkeypatch):
    """A RecordingBackend for every photo that ``stylize.services.stylizing`` paints."""
    recorder = RecordingBackend()
    monkeypatch.setattr("stylize.services.stylizing.get_backend", lambda: recorder)
    return recorder


@pytest.fixture
def tiny_styles(transactional_db):
    """The tiny lone style's network and the tiny bank's two styles (tests.model_fixtures)."""
    return [StyleFactory(name="Tiny", slug="tiny", model_name="tiny"),
            BankStyleFactory(name="Tiny Bank One", slug="tiny-bank-1",
                             model_name=TINY_BANK_NAME, bank_index=1, bank_slots=3),
            BankStyleFactory(name="Tiny Bank Two", slug="tiny-bank-2",
                             model_name=TINY_BANK_NAME, bank_index=2, bank_slots=3)]


@pytest.fixture
def chromium(monkeypatch):
    """Debian's chromium for the test, closed after it: ``(browser, page, errors)`` of
    tests.helpers.open_browser. The test may use the ORM between browser steps."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser, page, errors = open_browser(playwright)
        try:
            yield browser, page, errors
        finally:
            browser.close()


@pytest.fixture
def queue():
    """``job_run.apply_async``, recorded instead of sent (for tests that only create
    jobs; the pipeline tests run them on a real worker)."""
    with mock.patch("stylize.tasks.job_run.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def empty_cache():
    """Throttle counts, lockouts and mail limits live in the cache: each test starts
    with none and leaves none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def vgg16_random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None).save_weights(path)
    return path


@pytest.fixture
def photos(tmp_path):
    return noise_photos(tmp_path / "photos", 6, size=(56, 48), grow=(0, 1))


@pytest.fixture
def serving_dir(settings, tmp_path):
    settings.SERVING_DIR = tmp_path / "serving"
    settings.VAR_DIR = tmp_path / "var"
    settings.TFSERVING_MODEL_BASE_PATH = "/models/models"
    return settings.SERVING_DIR


@pytest.fixture
def captured_configs(monkeypatch, serving_dir):
    """The TrainConfigs that style_train builds; each run stops there (and fails)."""
    configs = []

    def fake_train(config, **kwargs):
        configs.append(config)
        raise TrainingCaptured("stopped by the test")

    monkeypatch.setattr("ml.train.train", fake_train)
    return configs




#: The bank users' own styles are learnt on in these tests (tests.model_fixtures' tiny
#: bank: the identity and two shipped slots).
OWN_BANK = "ownbank"


@pytest.fixture
def own_bank(serving_dir, settings, photos, vgg16_random_weights):
    """``DEFAULT_BANK`` live: a tiny bank (version 1, exported with its ``style_params``
    signature) whose two slots are published styles, painted by the local backend; own
    styles learn on it with random VGG weights, 3 steps of 32 px crops. The test needs
    the database (``db`` or ``transactional_db``). Returns the two shipped styles."""
    from stylize.backends import get_backend
    from tests.factories import BankStyleFactory
    from tests.model_fixtures import export_tiny_bank

    settings.DEFAULT_BANK = OWN_BANK
    export_tiny_bank(serving_dir / "models", name=OWN_BANK,
                     slugs=[f"{OWN_BANK}-one", f"{OWN_BANK}-two"])
    settings.MODEL_BACKEND = "local"
    settings.TRAINING_OVERRIDES = {"data_dir": str(photos), "loss_network": "vgg16",
                                   "loss_weights": str(vgg16_random_weights)}
    settings.OWN_STYLE_OVERRIDES = {"steps": 3, "size": 32, "batch": 2}
    settings.OWN_STYLE_MIN_SIDE = 64
    get_backend.cache_clear()
    shipped = [BankStyleFactory(name=name, slug=f"{OWN_BANK}-{suffix}", model_name=OWN_BANK,
                                bank_index=slot, bank_slots=3)
               for slot, (name, suffix) in enumerate((("Bank One", "one"),
                                                     ("Bank Two", "two")), start=1)]
    yield shipped
    get_backend.cache_clear()


@pytest.fixture
def own_styles_worker(transactional_db):
    """A real Celery worker (a thread of this process) on the test broker, consuming the
    job queues, the previews' and the own styles' (``OWN_STYLE_QUEUE``)."""
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings

    from prisma_site.celery import app

    app.control.purge()
    queues = list(dict.fromkeys([*settings.JOB_QUEUES.values(), settings.PREVIEW_QUEUE,
                                 settings.OWN_STYLE_QUEUE]))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=60,
                      queues=queues) as worker:
        yield worker
