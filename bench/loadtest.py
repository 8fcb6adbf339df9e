"""Load with faults: many API clients against the stack `make run` starts, while a
worker is killed, Redis restarts and the model server is down for a while.

    python -m bench.loadtest                      # make loadtest: 300 jobs, 20 clients
    python -m bench.loadtest --jobs 30 --clients 4 --outage 6   # the short run (tests)

It starts its own stack in a scratch folder, like `make run` but with every part
started here so it can be hurt: Redis (with its append-only file), two stylize workers
(one per queue of ``prisma_site.devstack.STYLIZE_WORKERS``), beat, the web server and,
as the model backend, ``tests/tfserving_server`` (a real gRPC server speaking TF
Serving's protocol) on the shipped SavedModels. Users (``--users``) each hold an API
token; ``--clients`` threads split the jobs between them, each creating jobs through
``POST /api/v1/jobs/`` (waiting and trying again on a 429, as a polite client does) and
polling them until they end.

Faults, while jobs run: one worker is SIGKILLed and restarted, Redis is stopped and
started again on its port, and the model server is stopped for ``--outage`` seconds.

Afterwards it checks, from the database, the private storage and the mail folder:

- every job ended ``succeeded`` or ``failed`` with a reason (nothing lost);
- every succeeded job has its result file (files no row names are counted apart as
  orphans, which the orphan sweep deletes: a worker killed between writing a result
  and committing its row leaves one);
- every owner got exactly one email per job (each names its job's page): a job that
  ran to success twice, or succeeded and failed, would have sent two.

and prints jobs/min, p50/p95 of queue wait (upload → start of the run that finished it)
and run time, and how long a small job of another user took while one user's big
jobs were waiting (the fairness figure). Exit status 0 only if every check held.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from prisma_site import devstack

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TERMINAL = {"succeeded", "failed"}


# --- The stack ---------------------------------------------------------------------------


class Stack:
    """Every part of the service as its own process, each one startable again."""

    def __init__(self, var_dir: Path, serving_dir: Path, *, max_in_flight: int):
        self.var_dir = var_dir
        self.group = devstack.ProcessGroup()
        self.redis_port = devstack.free_port()
        self.web_port = devstack.free_port()
        self.serving_port = devstack.free_port()
        self.serving_dir = serving_dir
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **devstack.dev_environ(),
            "PRISMA_VAR_DIR": str(var_dir),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "SITE_URL": self.base,
            "MODEL_BACKEND": "tfserving",
            "TFSERVING_ADDRESS": f"127.0.0.1:{self.serving_port}",
            "TFSERVING_TIMEOUT": "20",
            "SERVING_DIR": str(serving_dir),
            # The sweep looks often and re-enqueues what a lost message left behind.
            "JOB_SWEEP_INTERVAL": "2",
            "JOB_QUEUED_TIMEOUT": "20",
            "JOB_RUNNING_TIMEOUT": "60",
            # One user may hold the big jobs of the fairness figure in flight at once.
            "JOB_MAX_IN_FLIGHT_PER_USER": str(max_in_flight),
            "MODEL_THREADS": "1",
            "EMAIL_URL": "filemail://",
            # The test's clients are trusted: the rate limit is not what is measured.
            "API_JOB_CREATE_RATE": "100000/hour",
        }
        self.env.pop("DATABASE_URL", None)
        self.workers: dict[str, subprocess.Popen] = {}
        self.redis = self.serving = None

    # Each part -----------------------------------------------------------------------

    def start_redis(self):
        self.redis = self.group.start(
            "redis",
            [devstack.redis_server_binary(), "--port", str(self.redis_port), "--bind",
             "127.0.0.1", "--dir", str(self.var_dir / "redis"), "--appendonly", "yes"],
            stdout=subprocess.DEVNULL,
        )
        devstack.wait_until(lambda: devstack.redis_answers(self.env["REDIS_URL"]),
                            timeout=20, what="Redis", procs=[self.redis])

    def start_serving(self):
        self.serving = self.group.start(
            "tfserving",
            [PYTHON, "-m", "tests.tfserving_server", "--models",
             str(self.serving_dir / "models"), "--port", str(self.serving_port)],
            cwd=BASE_DIR, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def start_worker(self, name: str, args: list[str]):
        log = open(self.var_dir / f"worker-{name}.log", "ab")
        self.workers[name] = self.group.start(
            f"worker-{name}",
            [PYTHON, "-m", "celery", "-A", "prisma_site", "worker", "--loglevel", "INFO",
             "--hostname", f"load-{name}@%h", *args],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )

    def start(self):
        (self.var_dir / "redis").mkdir(parents=True, exist_ok=True)
        self.start_redis()
        for command in (["migrate", "--noinput", "-v", "0"], ["register_styles"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=BASE_DIR, env=self.env,
                           check=True, capture_output=True)
        self.start_serving()
        for name, args in devstack.STYLIZE_WORKERS.items():
            self.start_worker(name, args)
        self.group.start(
            "beat",
            [PYTHON, "-m", "celery", "-A", "prisma_site", "beat", "--loglevel", "WARNING",
             "--schedule", str(self.var_dir / "celerybeat-schedule")],
            cwd=BASE_DIR, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        web = self.group.start(
            "web",
            [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.web_port}"],
            cwd=BASE_DIR, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        devstack.wait_until(
            lambda: devstack.http_ok(self.base + "/"), timeout=90, what="Web server", procs=[web]
        )

    def stop(self):
        self.group.stop()

    # Faults --------------------------------------------------------------------------

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker (its whole process group, as the kernel's OOM killer would)
        and start it again."""
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.group.procs = [(n, p) for n, p in self.group.procs if p is not proc]
        time.sleep(2)
        self.start_worker(name, devstack.STYLIZE_WORKERS[name])

    def restart_redis(self) -> None:
        os.killpg(self.redis.pid, signal.SIGTERM)
        self.redis.wait()
        self.group.procs = [(n, p) for n, p in self.group.procs if p is not self.redis]
        time.sleep(1)
        self.start_redis()

    def stop_serving_for(self, seconds: float) -> None:
        os.killpg(self.serving.pid, signal.SIGKILL)
        self.serving.wait()
        self.group.procs = [(n, p) for n, p in self.group.procs if p is not self.serving]
        time.sleep(seconds)
        self.start_serving()

    # Users -----------------------------------------------------------------------------

    def make_users(self, count: int) -> list[tuple[str, str]]:
        """``count`` confirmed users (made as staff make them) with API tokens."""
        script = (
            "import json\n"
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            "users = []\n"
            f"for i in range({count}):\n"
            "    user, _ = get_user_model().objects.get_or_create(\n"
            "        username=f'load{i}', defaults={'email': f'load{i}@example.com'})\n"
            "    users.append((user.email, Token.objects.get_or_create(user=user)[0].key))\n"
            "print(json.dumps(users))\n"
        )
        done = subprocess.run([PYTHON, "manage.py", "shell", "-c", script], cwd=BASE_DIR,
                              env=self.env, check=True, capture_output=True, text=True)
        return [tuple(pair) for pair in json.loads(done.stdout.strip().splitlines()[-1])]

    def shipped_styles(self) -> list[str]:
        with urllib.request.urlopen(f"{self.base}/api/v1/styles/", timeout=10) as response:
            body = json.load(response)
        styles = body["results"] if isinstance(body, dict) else body
        return [style["slug"] for style in styles]


# --- Clients -----------------------------------------------------------------------------


def photo_jpeg(side: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    pixels = np.stack([x * 255 // side, y * 255 // side, (x * y) % 256], axis=-1)
    pixels = (pixels + rng.integers(0, 40, pixels.shape)).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for key, value in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    for key, (name, data, content_type) in files.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"; "
                 f"filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
        body += data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One API client: creates its jobs one after another, politely, then polls them."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token
        self.job_ids: list[str] = []
        self.server_errors = 0
        self.refusals = Counter()

    def _request(self, method: str, path: str, body=None, content_type=None):
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}"), response.headers
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                payload = json.loads(payload)
            except ValueError:
                payload = {"raw": payload[:200].decode(errors="replace")}
            return error.code, payload, error.headers
        except OSError as error:  # the web server itself is never hurt, but be safe
            return 0, {"error": str(error)}, {}

    def create(self, style: str, photo: bytes, *, max_side=512, stroke="bold") -> str | None:
        body, content_type = _multipart(
            {"style": style, "max_side": str(max_side), "stroke": stroke},
            {"image": ("photo.jpg", photo, "image/jpeg")},
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status, payload, headers = self._request("POST", "/api/v1/jobs/", body, content_type)
            if status == 201:
                self.job_ids.append(payload["id"])
                return payload["id"]
            if status >= 500 or status == 0:
                self.server_errors += 1
            self.refusals[status] += 1
            if status in (429, 503) or status == 0:
                wait = float((headers or {}).get("Retry-After") or 1.0)
                time.sleep(min(wait, 5.0))
                continue
            raise RuntimeError(f"job creation refused with {status}: {payload}")
        raise RuntimeError("job creation kept being refused for 10 minutes")

    def wait_all(self, timeout: float) -> dict[str, dict]:
        finished: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while len(finished) < len(self.job_ids) and time.monotonic() < deadline:
            for job_id in self.job_ids:
                if job_id in finished:
                    continue
                status, payload, _ = self._request("GET", f"/api/v1/jobs/{job_id}/")
                if status >= 500:
                    self.server_errors += 1
                if status == 200 and payload.get("status") in TERMINAL:
                    finished[job_id] = payload
            time.sleep(0.5)
        return finished


# --- The run -----------------------------------------------------------------------------


def run(args) -> int:
    work = Path(tempfile.mkdtemp(prefix="prisma-load-"))
    stack = Stack(work, Path(args.serving_dir), max_in_flight=max(args.big_jobs, 3))
    print(f"Stack in {work}: starting…", flush=True)
    stack.start()
    try:
        return _load(stack, args)
    finally:
        stack.stop()


def _load(stack: Stack, args) -> int:
    users = stack.make_users(args.users + 2)  # two more for the fairness figure
    load_users, (big_user, small_user) = users[:args.users], users[args.users:]
    styles = stack.shipped_styles()
    if not styles:
        print("No shipped styles are registered: nothing to stylize.")
        return 2
    photos = [photo_jpeg(args.side, seed) for seed in range(8)]
    clients = [Client(stack.base, load_users[i % len(load_users)][1]) for i in range(args.clients)]
    shares = [
        args.jobs // args.clients + (i < args.jobs % args.clients) for i in range(args.clients)
    ]
    rng = random.Random(0)
    plans = [[(rng.choice(styles), rng.choice(photos)) for _ in range(share)] for share in shares]

    started = time.monotonic()
    threads = [threading.Thread(target=lambda c=c, p=p: [c.create(s, ph) for s, ph in p])
               for c, p in zip(clients, plans)]
    for thread in threads:
        thread.start()
    faults = threading.Thread(target=_faults, args=(stack, args), daemon=True)
    faults.start()
    for thread in threads:
        thread.join()
    finished: dict[str, dict] = {}
    for client in clients:
        finished.update(client.wait_all(timeout=args.timeout))
    elapsed = time.monotonic() - started
    faults.join(timeout=args.outage + 60)
    # Then, on the quiet stack: one user's big jobs waiting, another's small one.
    fairness = _fairness(stack, styles[0], big_user[1], small_user[1], args)

    all_ids = [job_id for client in clients for job_id in client.job_ids]
    _wait_for_emails(stack, timeout=120)
    report = _check(stack, all_ids, fairness_ids=fairness["ids"])
    server_errors = sum(client.server_errors for client in clients)
    refusals = sum((client.refusals for client in clients), Counter())

    print()
    print(f"{len(all_ids)} jobs from {args.clients} clients of {args.users} users, "
          f"{len(finished)} seen finished by their clients, in {elapsed:.0f} s "
          f"({len(all_ids) / elapsed * 60:.1f} jobs/min)")
    print(f"faults: {', '.join(FAULTS_DONE) or 'none'}")
    print(f"ended: {report['succeeded']} succeeded, {report['failed']} failed "
          f"(reasons: {dict(report['reasons'])}); lost: {report['lost']}")
    print(f"queue wait p50 {report['wait_p50']:.1f} s, p95 {report['wait_p95']:.1f} s; "
          f"run time p50 {report['run_p50']:.2f} s, p95 {report['run_p95']:.2f} s")
    print(f"results: {report['result_files']} files; successes without their file: "
          f"{report['without_file']}; orphans (files no job names, which the orphan "
          f"sweep deletes): {report['orphans']}")
    print(f"emails: {report['emails']} for {report['jobs_in_database']} jobs; "
          f"jobs without exactly one: {report['email_mismatches']}")
    print(f"API: {server_errors} × 5xx or no answer; refusals by status {dict(refusals)}")
    print(f"fairness: a {fairness['small_mp']:.1f} MP job of another user finished "
          f"{fairness['small_seconds']:.1f} s after its upload while "
          f"{fairness['big_waiting']} of one user's {fairness['big_mp']:.0f} MP jobs "
          "(uploaded first) were unfinished")
    ok = (not report["lost"] and not report["without_file"] and not report["email_mismatches"]
          and server_errors == 0 and report["unexplained_failures"] == 0)
    print("OK: nothing lost, nothing done twice, one email per job." if ok else "FAILED")
    if args.json:
        summary = {"ok": ok, "jobs": len(all_ids), "faults": list(FAULTS_DONE),
                   "server_errors": server_errors,
                   **{key: report[key] for key in ("succeeded", "failed", "lost",
                                                   "without_file", "email_mismatches",
                                                   "unexplained_failures")},
                   "fairness": {key: fairness[key] for key in (
                       "small_mp", "small_seconds", "big_mp", "big_waiting")}}
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0 if ok else 1


FAULTS_DONE: list[str] = []


def _faults(stack: Stack, args) -> None:
    time.sleep(args.fault_delay)
    victim = "small"  # the load is small jobs: kill the worker that runs them
    stack.kill_worker(victim)
    FAULTS_DONE.append(f"worker {victim} SIGKILLed and restarted")
    time.sleep(args.fault_delay)
    stack.restart_redis()
    FAULTS_DONE.append("Redis restarted")
    time.sleep(args.fault_delay)
    stack.stop_serving_for(args.outage)
    FAULTS_DONE.append(f"model server down for {args.outage:.0f} s")


def _fairness(stack: Stack, style: str, big_token: str, small_token: str, args) -> dict:
    """One user queues big jobs; another's small job is timed from upload to its end,
    with how many of the big ones (uploaded first) had not finished by then: queued or
    running (a 9 MP job at the default bold stroke is painted at 512 px and takes
    seconds, so with the 1 MP job upload it may already be running, not queued)."""
    big, small = Client(stack.base, big_token), Client(stack.base, small_token)
    big_photo = photo_jpeg(args.big_side, 1)
    for _ in range(args.big_jobs):
        big.create(style, big_photo, max_side=args.big_side)
    uploaded = time.monotonic()
    small.create(style, photo_jpeg(1024, 2), max_side=1024)
    small.wait_all(timeout=args.timeout)
    small_seconds = time.monotonic() - uploaded
    waiting = sum(
        1 for job_id in big.job_ids
        if big._request("GET", f"/api/v1/jobs/{job_id}/")[1].get("status")
        not in ("succeeded", "failed")
    )
    big.wait_all(timeout=args.timeout)
    return {"ids": big.job_ids + small.job_ids, "small_seconds": small_seconds,
            "small_mp": 1024 * 1024 / 1e6, "big_mp": args.big_side ** 2 / 1e6,
            "big_waiting": waiting}


def _database(stack: Stack) -> sqlite3.Connection:
    return sqlite3.connect(stack.var_dir / "db.sqlite3", timeout=30)


def _wait_for_emails(stack: Stack, timeout: float) -> None:
    """Finished jobs get their email from the task, or from the sweep after a fault."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _database(stack) as db:
            (unsent,) = db.execute(
                "SELECT COUNT(*) FROM stylize_stylejob WHERE emailed_at IS NULL "
                "AND status IN ('succeeded', 'failed')").fetchone()
            (running,) = db.execute(
                "SELECT COUNT(*) FROM stylize_stylejob WHERE status NOT IN "
                "('succeeded', 'failed')").fetchone()
        if not unsent and not running:
            return
        time.sleep(1)


def _seconds(later: str | None, earlier: str | None) -> float | None:
    if not later or not earlier:
        return None
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _check(stack: Stack, job_ids: list[str], *, fairness_ids: list[str]) -> dict:
    every_id = set(job_ids) | set(fairness_ids)
    with _database(stack) as db:
        rows = db.execute(
            "SELECT id, status, error, created_at, started_at, finished_at, result_image "
            "FROM stylize_stylejob").fetchall()
    by_id = {str(uuid.UUID(str(row[0]))): row for row in rows}
    # Every job the database holds counts, also one whose creation a client never saw
    # acknowledged: none may be left waiting, and each owner is told once.
    every_id |= set(by_id)
    lost = sorted(job_id for job_id in every_id
                  if job_id not in by_id or by_id[job_id][1] not in TERMINAL)
    ours = [by_id[job_id] for job_id in job_ids if job_id in by_id]
    succeeded = [row for row in ours if row[1] == "succeeded"]
    failed = [row for row in ours if row[1] == "failed"]
    waits = [w for row in ours if (w := _seconds(row[4], row[3])) is not None]
    runs = [r for row in ours if (r := _seconds(row[5], row[4])) is not None]
    # Every success has its result file. A file no row names is an orphan (a worker
    # killed between writing the file and committing the row leaves one), which the
    # orphan sweep deletes. (A job that ran to success twice would show as two
    # emails: each success and failure is one guarded transition with one email.)
    results_dir = stack.var_dir / "private" / "results"
    files = {f"results/{path.name}" for path in results_dir.iterdir()} if (
        results_dir.is_dir()) else set()
    named = {row[6] for row in rows if row[6]}
    without_file = sorted(str(uuid.UUID(str(row[0]))) for row in rows
                          if row[1] == "succeeded" and row[6] not in files)
    emails = Counter()
    for path in (stack.var_dir / "mail").glob("*.log"):
        text = path.read_text(errors="replace")
        for job_id in re.findall(r"/jobs/([0-9a-f-]{36})/", text):
            emails[job_id] += 1
    mismatches = sorted(job_id for job_id in every_id if emails[job_id] != 1)
    reasons = Counter(row[2].split(" (gave up")[0][:60] for row in failed)
    unexplained = sum(1 for row in failed if not row[2])
    return {
        "succeeded": len(succeeded), "failed": len(failed), "lost": lost,
        "reasons": reasons, "unexplained_failures": unexplained,
        "wait_p50": statistics.median(waits) if waits else float("nan"),
        "wait_p95": _percentile(waits, 0.95),
        "run_p50": statistics.median(runs) if runs else float("nan"),
        "run_p95": _percentile(runs, 0.95),
        "result_files": len(files), "without_file": without_file,
        "orphans": len(files - named),
        "emails": sum(emails.values()), "email_mismatches": mismatches,
        "jobs_in_database": len(by_id),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--side", type=int, default=384, help="photo side, pixels")
    parser.add_argument("--big-jobs", type=int, default=10)
    parser.add_argument("--big-side", type=int, default=4096,
                        help="the big jobs' side (4096: 16 MP)")
    parser.add_argument("--outage", type=float, default=30.0,
                        help="seconds the model server is down")
    parser.add_argument("--fault-delay", type=float, default=10.0,
                        help="seconds before each fault")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--serving-dir", default=str(BASE_DIR / "serving"))
    parser.add_argument("--json", default=None,
                        help="also write the outcome here as JSON (what the test reads)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
