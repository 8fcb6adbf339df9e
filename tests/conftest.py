import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.helpers import png_bytes

pytest_plugins = ["tests.model_fixtures"]


@pytest.fixture(autouse=True)
def _media_in_tmp(request, tmp_path):
    """Uploaded and generated files go to a per-test folder, never into var/."""
    if request.config.pluginmanager.hasplugin("django"):
        settings = request.getfixturevalue("settings")
        settings.MEDIA_ROOT = tmp_path / "media"
        settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"


@pytest.fixture(autouse=True)
def _default_language(request):
    """Each test starts in LANGUAGE_CODE: a request's language (LocaleMiddleware) stays
    active in the thread that served it, which in tests is the test's own."""
    if request.config.pluginmanager.hasplugin("django"):
        from django.utils import translation

        translation.deactivate()
        yield
        translation.deactivate()
    else:
        yield


@pytest.fixture
def photo_upload():
    return SimpleUploadedFile("photo.png", png_bytes(), content_type="image/png")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix,
                                 tmp_path_factory):
    """PostgreSQL (`make test`): a test database per test process (test_prisma_gw0, …:
    pytest-django's suffix). SQLite: a file-backed test database, so worker processes
    started by tests share it."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        test_db = tmp_path_factory.mktemp("db") / "test.sqlite3"
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(test_db)


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real Celery worker (in a thread of this process) on the test Redis broker,
    consuming every job queue (small and large, ``JOB_QUEUES``) and the previews'
    (``PREVIEW_QUEUE``)."""
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings

    from prisma_site.celery import app

    app.control.purge()
    queues = list(dict.fromkeys([*settings.JOB_QUEUES.values(), settings.PREVIEW_QUEUE]))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30,
                      queues=queues) as worker:
        yield worker
