"""`make run` and `make test` go through prisma_site.devstack: start it for real."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
import redis

from prisma_site.devstack import free_port
from tests.helpers import BASE_DIR, PRODUCT_SETTINGS, port_open


def admin_login_works(base: str, username: str, password: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(f"{base}/admin/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({
        "csrfmiddlewaretoken": token, "username": username, "password": password,
        "next": "/admin/",
    }).encode()
    request = urllib.request.Request(f"{base}/admin/login/", data=form,
                                     headers={"Referer": f"{base}/admin/login/"})
    landed = opener.open(request, timeout=10)
    return landed.url.endswith("/admin/") and "Site administration" in landed.read().decode()


def signup_mails_a_link_to_this_site(base: str, mail_dir: Path) -> bool:
    """Sign up as a newcomer does; the confirmation mail links the port the stack is on."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(f"{base}/accounts/signup/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    password = "a long pass phrase 42"
    form = urllib.parse.urlencode({
        "csrfmiddlewaretoken": token, "email": "newcomer@example.com",
        "password1": password, "password2": password,
    }).encode()
    request = urllib.request.Request(f"{base}/accounts/signup/", data=form,
                                     headers={"Referer": f"{base}/accounts/signup/"})
    opener.open(request, timeout=10).read()
    mails = "".join(path.read_text() for path in mail_dir.glob("*.log"))
    return f"{base}/accounts/confirm/" in mails


def http_get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@pytest.mark.slow
def test_run_starts_redis_worker_and_web_and_ctrl_c_stops_them(tmp_path):
    web_port, redis_port = free_port(), free_port()
    # The stack runs on its own database and settings, as `make run` does.
    env = {**os.environ, "PRISMA_VAR_DIR": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": PRODUCT_SETTINGS}
    env.pop("REDIS_URL", None)
    stack = subprocess.Popen(
        [sys.executable, "-m", "prisma_site.devstack", "run",
         "--port", str(web_port), "--redis-port", str(redis_port)],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    output = []
    try:
        for line in stack.stdout:
            output.append(line)
            if "Prisma is running at" in line:
                break
        else:
            pytest.fail("The stack stopped before serving:\n" + "".join(output))

        status, body = http_get(f"http://127.0.0.1:{web_port}/")
        assert status == 200 and b"Prisma" in body
        password = re.search(r"Staff login: admin / (\S+)", "".join(output)).group(1)
        assert admin_login_works(f"http://127.0.0.1:{web_port}", "admin", password)
        assert signup_mails_a_link_to_this_site(f"http://127.0.0.1:{web_port}", tmp_path / "mail")
        assert redis.Redis(port=redis_port).ping() is True
        assert (tmp_path / "db.sqlite3").is_file()
        printed = "".join(output)
        assert "Demo login:  demo / " in printed and "Staff login: admin / " in printed

        # The worker answers on the broker the stack started (it may still be booting).
        replies = ""
        for _ in range(6):
            inspect = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "prisma_site", "inspect", "ping",
                 "--timeout", "5"],
                cwd=BASE_DIR, capture_output=True, text=True, timeout=60,
                env={**env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"},
            )
            replies = inspect.stdout + inspect.stderr
            # Every worker: small jobs, large jobs (a queue of their own) and training.
            workers = [f"prisma-{web_port}@", f"prisma-large-{web_port}@",
                       f"prisma-trainer-{web_port}@"]
            if all(worker in inspect.stdout for worker in workers):
                break
        assert all(worker in replies for worker in workers) and "pong" in replies, replies
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        stack.wait(timeout=60)
    rest = stack.stdout.read()
    assert "Stopping" in rest
    deadline = time.monotonic() + 10
    while (port_open(web_port) or port_open(redis_port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_open(web_port) and not port_open(redis_port)


def test_with_redis_gives_the_command_a_throwaway_redis_and_its_exit_status():
    script = (
        "import os, sys, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']);"
        "assert r.ping(); print(os.environ['REDIS_URL']); sys.exit(3)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "prisma_site.devstack", "with-redis", "--",
         sys.executable, "-c", script],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 3, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert not port_open(port)


@pytest.mark.parametrize("debug, expected", [(None, "1"), ("0", "0")])
def test_with_redis_runs_in_development_mode_unless_told_otherwise(debug, expected):
    """The settings default to DEBUG off; `make test` (and `make run`) turn it on."""
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    if debug is not None:
        env["DEBUG"] = debug
    result = subprocess.run(
        [sys.executable, "-m", "prisma_site.devstack", "with-redis", "--",
         sys.executable, "-c", "import os; print(os.environ['DEBUG'])"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected
