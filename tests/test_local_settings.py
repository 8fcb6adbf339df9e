"""A development machine's settings file: `make run` writes ``var/local.env`` (DEBUG on,
a generated SECRET_KEY) and manage.py reads it, so the README's commands run without
variables; without the file, DEBUG stays off and SECRET_KEY is required (production).

Each check runs the product's settings (prisma_site.settings) in a fresh process."""

import json
import stat
import subprocess
import sys

from prisma_site import devstack
from tests.helpers import BASE_DIR, clean_env

PROBE = ("import json, django; django.setup(); from django.conf import settings; "
         "print(json.dumps({'DEBUG': settings.DEBUG, 'SECRET_KEY': settings.SECRET_KEY, "
         "'SECURE': settings.SESSION_COOKIE_SECURE}))")


def probe(env):
    return subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=BASE_DIR,
                          capture_output=True, text=True)


def secret_in(path) -> str:
    [line] = [line for line in path.read_text().splitlines() if line.startswith("SECRET_KEY=")]
    return line.split("=", 1)[1]


def test_make_run_writes_the_file_once_with_a_new_key_only_its_owner_reads(tmp_path):
    path = devstack.local_settings_path({"PRISMA_VAR_DIR": str(tmp_path)})
    assert path == tmp_path / "local.env"

    assert devstack.local_settings_ensure(path) is True
    key = secret_in(path)
    assert len(key) >= 60 and "DEBUG=1" in path.read_text().splitlines()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert devstack.local_settings_ensure(path) is False and secret_in(path) == key  # kept
    other = tmp_path / "other" / "local.env"
    devstack.local_settings_ensure(other)
    assert secret_in(other) != key
    assert devstack.local_settings_path({"PRISMA_LOCAL_SETTINGS": ""}) is None
    assert devstack.local_settings_path({"PRISMA_LOCAL_SETTINGS": str(other)}) == other


def test_manage_py_reads_the_file_without_any_variable(tmp_path):
    path = tmp_path / "local.env"
    devstack.local_settings_ensure(path)
    env = clean_env(DEBUG=None, PRISMA_VAR_DIR=str(tmp_path), PRISMA_LOCAL_SETTINGS=None)

    loaded = probe(env)

    assert loaded.returncode == 0, loaded.stderr
    settings = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert settings == {"DEBUG": True, "SECRET_KEY": secret_in(path), "SECURE": False}
    check = subprocess.run([sys.executable, "manage.py", "check"], env=env, cwd=BASE_DIR,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_environment_wins_over_the_file(tmp_path):
    path = tmp_path / "local.env"
    devstack.local_settings_ensure(path)
    env = clean_env(DEBUG="0", SECRET_KEY="k" * 60, PRISMA_LOCAL_SETTINGS=str(path))

    settings = json.loads(probe(env).stdout.strip().splitlines()[-1])

    assert settings == {"DEBUG": False, "SECRET_KEY": "k" * 60, "SECURE": True}


def test_without_the_file_debug_is_off_and_a_secret_key_is_required(tmp_path):
    """Production (docker-compose: the image has no var/, .dockerignore) still refuses."""
    env = clean_env(DEBUG=None, PRISMA_VAR_DIR=str(tmp_path), PRISMA_LOCAL_SETTINGS=None)

    refused = probe(env)

    assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr
    assert "var" in (BASE_DIR / ".dockerignore").read_text().split()
