"""`make run` and `make test` go through prisma_site.devstack: start it for real."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
import redis

from prisma_site import devstack
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
    env.pop("DATABASE_URL", None)  # `make run`'s embedded SQLite, not the test run's database
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
        # This machine's settings for manage.py and the README's commands (test_readme.py).
        assert "SECRET_KEY=" in (tmp_path / "local.env").read_text()
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
            # Every worker: small jobs, large jobs (a queue of their own), previews,
            # training and users' own styles.
            workers = [f"prisma-{web_port}@", f"prisma-large-{web_port}@",
                       f"prisma-previews-{web_port}@", f"prisma-trainer-{web_port}@",
                       f"prisma-own-styles-{web_port}@"]
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


# --------------------------------------------------------------------------- PostgreSQL

POSTGRES_PROBE = """
import os, sys
from pathlib import Path
import psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as db:
    data_dir = db.execute("SHOW data_directory").fetchone()[0]
    db.execute("CREATE TABLE probe (n int)")
pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
print(os.environ["DATABASE_URL"], data_dir, uid, pid, flush=True)
"""


def with_postgres(*command: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "prisma_site.devstack", "with-redis", "--postgres", "--",
         *command],
        cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie does not: a killed devstack's server
    is reparented to PID 1, and where PID 1 never reaps (some CI containers) it stays
    in /proc as a zombie after it has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def probed(line: str):
    url, data_dir, uid, pid = line.split()
    return url, Path(data_dir), int(uid), int(pid)


def test_with_postgres_gives_the_command_a_throwaway_cluster_and_deletes_it():
    """`make test`'s database: started for the command, as an unprivileged user when
    this is root (PostgreSQL refuses root), stopped and deleted when it exits."""
    run = with_postgres(sys.executable, "-c", POSTGRES_PROBE + "sys.exit(3)")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    url, data_dir, uid, pid = probed(out.strip().splitlines()[-1])
    assert url.startswith("postgres://prisma@127.0.0.1:") and url.endswith("/prisma")
    assert data_dir.parent.parent in {devstack.TEST_POSTGRES_DIR, Path(tempfile.gettempdir())
                                      / f"prisma-test-postgres-{os.geteuid()}"}
    assert uid != 0
    assert not data_dir.parent.exists()
    assert not running(pid)
    assert not port_open(int(url.rsplit(":", 1)[1].split("/")[0]))


def test_a_killed_runs_cluster_is_stopped_and_deleted_by_the_next_run():
    killed = with_postgres(sys.executable, "-c", POSTGRES_PROBE + "import time; time.sleep(120)",
                           start_new_session=True)
    printed = []
    try:
        while len(printed) < 3:  # Redis, PostgreSQL, then the probe
            printed.append(killed.stdout.readline())
            assert printed[-1], killed.stderr.read()
        url, data_dir, _, server_pid = probed(printed[-1])
        os.killpg(killed.pid, signal.SIGKILL)  # the devstack and the command, not the servers
        killed.wait(timeout=30)
        assert running(server_pid) and data_dir.is_dir()

        run = with_postgres(sys.executable, "-c", POSTGRES_PROBE)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert not data_dir.parent.exists()
        assert not running(server_pid)
        assert probed(out.strip().splitlines()[-1])[1] != data_dir  # a cluster of its own
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait(timeout=30)
        # The killed run's Redis is left running: stop it.
        redis_url = next((line.split()[-1] for line in printed
                          if line.startswith("Throwaway Redis at ")), None)
        if redis_url:
            try:
                redis.Redis.from_url(redis_url).shutdown(nosave=True)
            except redis.exceptions.ConnectionError:
                pass


def test_a_port_taken_meanwhile_gets_the_server_another(tmp_path, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], devstack.free_port()])
        monkeypatch.setattr(devstack, "free_port", lambda: next(ports))
        group = devstack.ProcessGroup()
        run_dir = devstack.postgres_run_dir(tmp_path / "clusters")
        try:
            url = devstack.start_postgres(group, run_dir=run_dir)
            assert devstack.postgres_answers(url)
            assert [name for name, _ in group.procs] == ["postgres", "postgres"]
            assert group.procs[0][1].returncode not in (None, 0)  # could not bind
        finally:
            group.stop()
            shutil.rmtree(run_dir, ignore_errors=True)


def _make_run_plan(**variables) -> str:
    """What `make run` would run (``make -n``; recursive makes are planned, not run)."""
    args = [f"{name}={value}" for name, value in variables.items()]
    result = subprocess.run(["make", "-n", "run", *args], cwd=BASE_DIR, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_fetches_what_own_styles_learn_with_once(tmp_path):
    """A fresh clone's `make run` lets a new user learn their own painting (issue 27):
    it fetches the VGG16 weights and the training photos first, and not again once
    they are there. A failed download only warns: the site still starts."""
    weights, photos = tmp_path / "vgg16.weights.h5", tmp_path / "photos" / "train"
    plan = _make_run_plan(VGG16_WEIGHTS=weights, PHOTOS_DIR=tmp_path / "photos")
    assert "ml.weights vgg16-from-onnx" in plan and f"-o {weights}" in plan
    assert "tools.photos fetch" in plan and f"tools.photos collect {tmp_path / 'photos'}" in plan
    assert plan.index("tools.photos collect") < plan.index("prisma_site.devstack run")
    assert "warning: the training photos could not be fetched" in plan

    weights.write_bytes(b"weights")
    photos.mkdir(parents=True)
    plan = _make_run_plan(VGG16_WEIGHTS=weights, PHOTOS_DIR=tmp_path / "photos")
    assert "vgg16-from-onnx" not in plan and "tools.photos fetch" not in plan
    assert "prisma_site.devstack run" in plan
