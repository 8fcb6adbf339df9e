"""Helpers shared by test modules (fixtures live in conftest.py files).

Test modules import shared code from here (and tests.factories, tests.model_fixtures,
tests.tfserving_server, tests/stylize/hostile_files.py, tests/stylize/upload_fuzz.py),
never from another ``test_*.py``.
"""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorflow_serving.config import model_server_config_pb2

#: The repository's root.
BASE_DIR = Path(__file__).resolve().parent.parent

#: The password of every account the tests make (tests.factories.UserFactory's too).
PASSWORD = "correct horse battery staple"

#: The photo side (px) of the tiny training runs of tests/ml.
TRAIN_SIZE = 32

# --------------------------------------------------------------------------- images


def png_bytes(size=(32, 24), color=(200, 80, 40)) -> bytes:
    """A PNG of one flat colour."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(height=48, width=64) -> np.ndarray:
    """A smooth test photo (uint8 ``HxWx3``): red across, green down, blue diagonal."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)


def gradient_file(size=(160, 120), fmt="PNG") -> bytes:
    """:func:`gradient` of ``size`` (width, height), encoded as ``fmt``."""
    buffer = io.BytesIO()
    Image.fromarray(gradient(size[1], size[0])).save(buffer, format=fmt)
    return buffer.getvalue()


def gradient_upload(size=(160, 120), name="photo.png", fmt="PNG"):
    """:func:`gradient_file` as an uploaded file."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, gradient_file(size, fmt), content_type=f"image/{fmt.lower()}")


def gradient_photo(path: Path, size=(160, 120)) -> Path:
    """:func:`gradient_file` written as a PNG at ``path``."""
    path.write_bytes(gradient_file(size))
    return path


def noise_photos(folder: Path, count: int, *, size=(48, 40), grow=(0, 0), seed=0,
                 name="photo{}", suffix=".png") -> Path:
    """``count`` photos of random pixels written into ``folder`` (made if missing): the
    i-th is ``size + i * grow`` px (width, height) and named ``name.format(i) + suffix``.
    Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        width, height = size[0] + index * grow[0], size[1] + index * grow[1]
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{name.format(index)}{suffix}")
    return folder


def identity(batch: np.ndarray) -> np.ndarray:
    """A stylize ``run`` that gives the photos back."""
    return batch.copy()


# --------------------------------------------------------------------------- networks


def feature_maps(seed=0, shape=(3, 7, 9, 5)) -> np.ndarray:
    """Random feature maps (float32 ``NHWC``), to normalise."""
    return np.random.default_rng(seed).normal(2.0, 3.0, shape).astype("float32")


def randomised(layer, seed=1, loc=0.0, scale=1.0):
    """``layer`` with every weight drawn from a normal distribution of ``loc`` and ``scale``."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(loc, scale, w.shape).astype("float32")
                       for w in layer.get_weights()])
    return layer


def tiny_bank(num_styles=3, seed=0, blocks=1):
    """A small bank (``TransformNet(num_styles=...)``), built, whose slots' norm maps are
    distinct, as after training."""
    import keras

    from ml import bank
    from ml.model import TransformNet

    keras.utils.set_random_seed(seed)
    net = TransformNet(width=0.125, num_residual_blocks=blocks, num_styles=num_styles)
    net.build((None, None, None, 3))
    rng = np.random.default_rng(seed)
    for layer in bank.style_norms(net):
        layer.set_weights([rng.normal(1, 0.5, w.shape).astype("float32")
                           for w in layer.get_weights()])
    return net


def noise_batch(n=2, size=20, seed=3) -> np.ndarray:
    """``n`` photos of random pixels (float32 ``n x size x size x 3``, 0 to 255)."""
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


class RecordingBackend:
    """A model backend that paints the negative of the photo and remembers every call
    (the ``recording_backend`` fixture puts one in place)."""

    def __init__(self):
        self.calls = []

    def stylize(self, *, model_name, version, images, **kwargs):
        self.calls.append({"model_name": model_name, "version": version,
                           "shape": images.shape, **kwargs})
        return 255 - images


# --------------------------------------------------------------------------- accounts


def signup(client, email="ada@example.com", password=PASSWORD, confirm=None):
    """The sign-up form, posted (``confirm``: a different second password)."""
    from django.urls import reverse

    return client.post(
        reverse("stylize:signup"),
        {"email": email, "password1": password, "password2": confirm or password},
    )


# --------------------------------------------------------------------------- jobs


def race_job_creations(owner, style, count, photo) -> list[str]:
    """``count`` threads that create a job of ``style`` for ``owner`` at the same moment,
    each with a new ``photo()``; their outcomes, sorted: ``"created"``, ``"refused"``
    (over the in-flight limit) or the repr of whatever else one raised."""
    import threading

    from django.db import connection

    from stylize.services import jobs

    outcomes, start = [], threading.Barrier(count)

    def create():
        try:
            start.wait()
            jobs.job_create(owner=owner, style=style, input_image=photo())
            outcomes.append("created")
        except jobs.JobLimitExceeded:
            outcomes.append("refused")
        except Exception as exc:
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(outcomes)


# --------------------------------------------------------------------------- processes

#: The settings module of the product (what manage.py, Celery and WSGI default to).
#: Processes that run their own stack, or check the product's settings, use it; the
#: test run itself uses tests.settings (pyproject.toml).
PRODUCT_SETTINGS = "prisma_site.settings"

#: What `make run` and `make test` add (prisma_site/devstack.py): development mode.
DEV_ENV = {"DEBUG": "1"}

PRODUCTION_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": "x" * 60 + "production-secret-for-the-test-only",
    "ALLOWED_HOSTS": "prisma.example.com",
    "DATABASE_URL": "postgres://prisma:pw@db.internal:5432/prisma",
    "EMAIL_URL": "smtp+tls://mailer:pw@smtp.example.com:587",
    "MODEL_BACKEND": "tfserving",
    "TFSERVING_ADDRESS": "tfserving:8500",
    "S3_BUCKET": "prisma-media",
    "S3_ENDPOINT_URL": "https://s3.example.com",
}


def clean_env(**extra):
    """This process's environment without the settings' variables, on the product's
    settings module, in development mode unless ``extra`` says otherwise
    (``DEBUG=None`` leaves DEBUG unset). No development machine's settings file
    (``var/local.env``, which `make run` writes) is read unless ``extra`` names one in
    ``PRISMA_LOCAL_SETTINGS``: what is checked is what the environment alone gives."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and k not in {"REDIS_URL", "PRISMA_VAR_DIR", "NUM_PROXIES"}
    }
    env["DJANGO_SETTINGS_MODULE"] = PRODUCT_SETTINGS
    env["PRISMA_LOCAL_SETTINGS"] = ""
    env.update(DEV_ENV)
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def database_url(database: dict) -> str:
    """The DATABASE_URL of a ``DATABASES`` entry: the test database, once set up."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    from urllib.parse import quote

    password = f":{quote(database['PASSWORD'], safe='')}" if database.get("PASSWORD") else ""
    return (f"postgres://{quote(database['USER'], safe='')}{password}@{database['HOST']}:"
            f"{database['PORT']}/{quote(database['NAME'], safe='')}")


def worker_env(settings, **extra) -> dict:
    """The environment of a process (a Celery worker, a manage.py command) that works on
    this test's database and media: this run's settings module (tests.settings), the
    test database (this process's PostgreSQL one, or SQLite's file: tests/conftest.py),
    the test's media folders and, from this process's environment, the broker
    (REDIS_URL) and DEBUG."""
    database = settings.DATABASES["default"]
    return {
        **os.environ,
        # What pytest-django set up this process with (pyproject.toml); the settings
        # object cannot tell once a test has overridden any setting.
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        "DATABASE_URL": database_url(database),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PRIVATE_MEDIA_ROOT": str(settings.PRIVATE_MEDIA_ROOT),
        **extra,
    }


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- browser

#: Debian's chromium, driven by Playwright (its own browser download is not needed).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is missing: `apt-get install chromium` for the browser test",
)


def logged_in_context(browser, client, live_server, **options):
    """A Playwright browser context carrying ``client``'s (logged-in) session cookie."""
    context = browser.new_context(**options)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "url": live_server.url}])
    return context


def logged_in_page(browser, client, live_server, errors, *, timeout=30_000, **options):
    """A page of :func:`logged_in_context` (``options``: the context's) that waits at most
    ``timeout`` ms and adds every console error and script failure to ``errors``."""
    page = logged_in_context(browser, client, live_server, **options).new_page()
    page.set_default_timeout(timeout)
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""


def open_browser(playwright):
    """Chromium with one page that records Content-Security-Policy violations
    (``window.__cspViolations``); ``errors`` collects what the policy refused and
    scripts that broke (not the admin's 404 for /favicon.ico)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(30_000)
    page.add_init_script(COLLECT_VIOLATIONS)
    errors = []
    page.on("console", lambda m: m.type == "error" and (
        "Refused to" in m.text or "Content Security Policy" in m.text) and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page, errors


def admin_log_in(page, base_url, username, password=PASSWORD):
    """Log ``page`` in through the admin's login form; it lands on the admin index."""
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/admin/")

# --------------------------------------------------------------------------- training


class TrainingCaptured(Exception):
    """Raised by the fake ml.train.train once it holds the TrainConfig."""


def read_models_config(serving_dir):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((serving_dir / "models.config").read_text(), config)
    return config.model_config_list.config


# --------------------------------------------------------------------------- waiting


def wait_until(check, timeout=60.0, what="it", interval=0.1):
    """``check()``'s first truthy value, asked every ``interval`` s; the test fails after
    ``timeout`` seconds naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what}: not done after {timeout:.0f} s")


# --------------------------------------------------------------------------- own styles


def painting_file(size=(96, 80), seed=11, fmt="PNG") -> bytes:
    """A colourful painting (blocks of colour and noise): something a style can be learnt
    from, unlike a flat picture."""
    rng = np.random.default_rng(seed)
    width, height = size
    blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    noise = rng.integers(-20, 21, pixels.shape)
    pixels = np.clip(pixels.astype(int) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def painting_upload(name="painting.png", **kwargs):
    """:func:`painting_file` as an uploaded file."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, painting_file(**kwargs), content_type="image/png")
