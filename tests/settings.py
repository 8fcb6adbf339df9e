"""The test run's settings (pyproject.toml's DJANGO_SETTINGS_MODULE): the product's,
with a fast password hasher (the real one takes ~0.3 s an account or log-in) and job
webhooks allowed to reach the tests' receivers on loopback.

Processes a test starts against the test database (Celery workers, manage.py
commands) get this module too (``tests.helpers.worker_env``); those that run the
product's own stack or check its settings get ``prisma_site.settings``
(``tests.helpers.PRODUCT_SETTINGS``).
"""

import os
from urllib.parse import urlsplit, urlunsplit

# Under ``pytest -n`` (pytest-xdist) each test process has a Redis database of its own
# on the run's one Redis server (gw0 → 1, gw1 → 2, …), so one process's Celery workers
# never take another's messages and a flush empties only its own queues. Processes a
# test starts inherit the variable, and setting it again changes nothing.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST_WORKER.startswith("gw") and os.environ.get("REDIS_URL"):
    _url = urlsplit(os.environ["REDIS_URL"])
    os.environ["REDIS_URL"] = urlunsplit(
        _url._replace(path=f"/{1 + int(_XDIST_WORKER[2:]) % 15}"))

from prisma_site.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WEBHOOK_ALLOW_LOOPBACK = True
