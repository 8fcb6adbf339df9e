"""Settings load from the environment: embedded defaults, and production switched on.

Each check loads the product's settings module (prisma_site.settings) in a fresh
process (``tests.helpers.clean_env``), not the test run's tests.settings."""

import json
import subprocess
import sys

import pytest

from tests.helpers import BASE_DIR, PRODUCTION_ENV, clean_env

PROBE = """
import json
from django.conf import settings
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "DB_ENGINE": settings.DATABASES["default"]["ENGINE"],
    "DB_NAME": str(settings.DATABASES["default"]["NAME"]),
    "DB_HOST": settings.DATABASES["default"].get("HOST", ""),
    "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    "EMAIL_BACKEND": settings.EMAIL_BACKEND,
    "EMAIL_FILE_PATH": str(getattr(settings, "EMAIL_FILE_PATH", "")),
    "EMAIL_HOST": getattr(settings, "EMAIL_HOST", ""),
    "EMAIL_USE_TLS": getattr(settings, "EMAIL_USE_TLS", False),
    "REDIS_URL": settings.REDIS_URL,
    "BROKER": settings.CELERY_BROKER_URL,
    "MODEL_BACKEND": settings.MODEL_BACKEND,
    "TFSERVING_ADDRESS": settings.TFSERVING_ADDRESS,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": settings.CSRF_COOKIE_SECURE,
    "HSTS": settings.SECURE_HSTS_SECONDS,
    "STORAGE": settings.STORAGES["default"]["BACKEND"],
    "TRAINING": settings.TRAINING_OVERRIDES,
    "NUM_PROXIES": settings.NUM_PROXIES,
    "DRF_NUM_PROXIES": settings.REST_FRAMEWORK["NUM_PROXIES"],
    "REQUEST_BODY_MAX_BYTES": settings.REQUEST_BODY_MAX_BYTES,
    "UPLOAD_MAX_BYTES": settings.UPLOAD_MAX_BYTES,
    "DATA_UPLOAD_MAX_MEMORY_SIZE": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
    "CSP": settings.CONTENT_SECURITY_POLICY["DIRECTIVES"],
    "MIDDLEWARE": settings.MIDDLEWARE,
    "AXES_FAILURE_LIMIT": settings.AXES_FAILURE_LIMIT,
    "AXES_COOLOFF_TIME": settings.AXES_COOLOFF_TIME,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
}))
"""


def load_settings(env):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + PROBE],
        env=env, cwd=BASE_DIR, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_debug_is_off_unless_the_environment_turns_it_on(tmp_path):
    secret = "s" * 30 + "-only-for-this-test-" + "k" * 30
    loaded = load_settings(clean_env(DEBUG=None, SECRET_KEY=secret, PRISMA_VAR_DIR=str(tmp_path)))
    assert loaded["DEBUG"] is False
    assert loaded["SESSION_COOKIE_SECURE"] and loaded["HSTS"] >= 31536000
    assert "*" not in loaded["ALLOWED_HOSTS"]
    # ... and then a SECRET_KEY is required.
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=clean_env(DEBUG=None), cwd=BASE_DIR, capture_output=True, text=True,
    )
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_safe_defaults_for_clients_bodies_and_pages(tmp_path):
    loaded = load_settings(clean_env(PRISMA_VAR_DIR=str(tmp_path)))
    # Client addresses from REMOTE_ADDR: X-Forwarded-For is believed from no one.
    assert loaded["NUM_PROXIES"] == loaded["DRF_NUM_PROXIES"] == 0
    assert loaded["REQUEST_BODY_MAX_BYTES"] == loaded["UPLOAD_MAX_BYTES"] + 256 * 1024
    assert loaded["DATA_UPLOAD_MAX_MEMORY_SIZE"] == 2_621_440
    assert loaded["CSP"]["script-src"] == ["'self'"] and loaded["CSP"]["style-src"] == ["'self'"]
    assert not any("unsafe" in source for sources in loaded["CSP"].values() for source in sources)
    middleware = loaded["MIDDLEWARE"]
    # The body limit comes before anything that may read a body: only these, which don't.
    before_the_limit = middleware[:middleware.index(
        "prisma_site.middleware.RequestBodyLimitMiddleware")]
    assert before_the_limit == ["prisma_site.middleware.SecurityHeadersMiddleware",
                                "django.middleware.security.SecurityMiddleware"]
    assert middleware[-1] == "axes.middleware.AxesMiddleware"
    assert loaded["AXES_FAILURE_LIMIT"] == 5 and loaded["AXES_COOLOFF_TIME"] == 0.25

    behind_proxy = load_settings(clean_env(PRISMA_VAR_DIR=str(tmp_path), NUM_PROXIES="1"))
    assert behind_proxy["NUM_PROXIES"] == behind_proxy["DRF_NUM_PROXIES"] == 1


def test_embedded_defaults_run_on_one_machine(tmp_path):
    loaded = load_settings(clean_env(PRISMA_VAR_DIR=str(tmp_path)))
    assert loaded["DEBUG"] is True  # DEV_ENV, as `make run` sets it
    assert loaded["DB_ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["DB_NAME"] == str(tmp_path / "db.sqlite3")
    assert loaded["MEDIA_ROOT"] == str(tmp_path / "media")
    assert loaded["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert loaded["EMAIL_FILE_PATH"] == str(tmp_path / "mail")
    assert loaded["REDIS_URL"] == loaded["BROKER"] == "redis://127.0.0.1:6379/0"
    assert loaded["MODEL_BACKEND"] == "local"
    assert loaded["STORAGE"] == "django.core.files.storage.FileSystemStorage"


def test_production_environment_switches_on_the_real_parts():
    loaded = load_settings(clean_env(**PRODUCTION_ENV))
    assert loaded["DEBUG"] is False
    assert loaded["DB_ENGINE"] == "django.db.backends.postgresql"
    assert loaded["DB_HOST"] == "db.internal"
    assert loaded["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert loaded["EMAIL_HOST"] == "smtp.example.com" and loaded["EMAIL_USE_TLS"] is True
    assert loaded["MODEL_BACKEND"] == "tfserving"
    assert loaded["TFSERVING_ADDRESS"] == "tfserving:8500"
    assert loaded["SESSION_COOKIE_SECURE"] and loaded["CSRF_COOKIE_SECURE"]
    assert loaded["HSTS"] >= 31536000
    assert loaded["STORAGE"] == "storages.backends.s3.S3Storage"


def test_training_overrides_come_only_from_the_environment(tmp_path):
    env = {k: v for k, v in clean_env(PRISMA_VAR_DIR=str(tmp_path)).items()
           if not k.startswith("TRAINING_")}
    training = load_settings(env)["TRAINING"]
    # Unset variables leave the preset's values (ml.config.TrainConfig) alone.
    assert training == {"data_dir": str(tmp_path / "photos" / "train")}

    # ...but for the VGG16 weights `make run` fetched (`make vgg16-weights`): a machine
    # that cannot reach Keras's ImageNet download learns own styles with them.
    (tmp_path / "vgg16_imagenet_notop.weights.h5").write_bytes(b"weights")
    training = load_settings(env)["TRAINING"]
    assert training["loss_weights"] == str(tmp_path / "vgg16_imagenet_notop.weights.h5")
    env["TRAINING_LOSS_WEIGHTS"] = "imagenet"
    assert load_settings(env)["TRAINING"]["loss_weights"] == "imagenet"
    del env["TRAINING_LOSS_WEIGHTS"]

    env.update(TRAINING_PRESET="balanced", TRAINING_WIDTH="0.25", TRAINING_RESIDUAL_BLOCKS="5",
               TRAINING_OUTPUT_KERNEL="9", TRAINING_STEPS="300")
    training = load_settings(env)["TRAINING"]
    assert training["preset"] == "balanced" and training["width"] == 0.25
    assert training["num_residual_blocks"] == 5 and type(training["num_residual_blocks"]) is int
    assert training["output_kernel_size"] == 9 and training["steps"] == 300


@pytest.mark.parametrize("env", [
    PRODUCTION_ENV,
    # Nothing but what the settings require once DEBUG is left unset.
    {"DEBUG": None, "SECRET_KEY": PRODUCTION_ENV["SECRET_KEY"],
     "ALLOWED_HOSTS": "prisma.example.com"},
], ids=["production", "minimal"])
def test_check_deploy_passes_under_the_production_environment(env):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=clean_env(**env), cwd=BASE_DIR, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DEBUG": "False"}, "SECRET_KEY must be set"),
        ({"DEBUG": None}, "SECRET_KEY must be set"),
        ({"MODEL_BACKEND": "magic"}, "MODEL_BACKEND must be"),
    ],
)
def test_unsafe_or_wrong_settings_refuse_to_start(env, message):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=clean_env(**env), cwd=BASE_DIR, capture_output=True, text=True,
    )
    assert result.returncode != 0 and message in result.stderr


def test_no_pending_model_changes():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        env=clean_env(), cwd=BASE_DIR, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_test_process_has_a_redis_database_of_its_own(settings):
    # make test runs the suite in pytest-xdist processes on one Redis server
    # (tests/settings.py): gw0 on database 1, gw1 on 2, so no worker takes the other's jobs.
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        pytest.skip("not under pytest -n")
    assert settings.CELERY_BROKER_URL.endswith(f"/{1 + int(worker[2:])}")
    assert os.environ["REDIS_URL"] == settings.REDIS_URL  # what its subprocesses inherit
