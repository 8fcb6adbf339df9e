import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run_ensure_accounts():
    out = io.StringIO()
    call_command("ensure_accounts", stdout=out)
    return dict(re.findall(r"(\w+) / (\S+)", out.getvalue()))


def test_ensure_accounts_prints_logins_that_work(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    logins = run_ensure_accounts()
    assert set(logins) == {"demo", "admin"}
    admin = authenticate(username="admin", password=logins["admin"])
    demo = authenticate(username="demo", password=logins["demo"])
    assert admin is not None and admin.is_staff and admin.is_superuser
    assert demo is not None and not demo.is_staff

    assert run_ensure_accounts() == logins  # a second run reuses the accounts
    assert get_user_model().objects.count() == 2
    assert (tmp_path / "logins.json").stat().st_mode & 0o077 == 0
