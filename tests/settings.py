"""The test run's settings (pyproject.toml's DJANGO_SETTINGS_MODULE): the product's,
with a fast password hasher (the real one takes ~0.3 s an account or log-in) and job
webhooks allowed to reach the tests' receivers on loopback.

Processes a test starts against the test database (Celery workers, manage.py
commands) get this module too (``tests.helpers.worker_env``); those that run the
product's own stack or check its settings get ``prisma_site.settings``
(``tests.helpers.PRODUCT_SETTINGS``).
"""

from prisma_site.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WEBHOOK_ALLOW_LOOPBACK = True
