"""Fairness figure: how long another user's 1-megapixel job takes, from its upload to
``succeeded``, while one user has ten 16-megapixel jobs waiting (docs/design/fairness.md).

    python -m bench.fairness                    # starts its own stack (like `make run`)
    python -m bench.fairness --fifo             # the same with every job in one queue,
                                                # first in, first out (as before)
    python -m bench.fairness --url http://127.0.0.1:8000 --var-dir var   # a running stack

With no ``--url`` it starts ``python -m prisma_site.devstack run`` (what `make run`
starts: Redis, a worker per queue, beat, the web server) on free ports in a scratch
folder, with ``JOB_MAX_IN_FLIGHT_PER_USER=0`` so that one user may hold all the big
jobs, and stops it afterwards. A running stack must allow that too (start it with
``JOB_MAX_IN_FLIGHT_PER_USER=0``); the script says how many big uploads were refused.

The big jobs (the demo account) are ``--big`` JPEGs of 4896 × 3264 at ``max_side=4096``
with fine strokes (the costliest options); the small job (the admin account) is a
1224 × 816 JPEG with the defaults. Before the figure, one small and one large job warm
both workers up (model loaded). Everything goes through the API with the accounts in
``VAR_DIR/logins.json``. Exit status 0 when the figure is within ``--target`` seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

BASE_DIR = Path(__file__).resolve().parent.parent


def photo_jpeg(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG: smooth shapes (an upscaled random image) and some grain."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (24, 36, 3), dtype=np.uint8))
    pixels = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.int16)
    grain = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class Api:
    def __init__(self, base: str, username: str, password: str):
        self.base = base
        self.session = requests.Session()
        token = self.session.post(f"{base}/api/v1/auth/token/",
                                  data={"username": username, "password": password}, timeout=30)
        token.raise_for_status()
        self.session.headers["Authorization"] = f"Token {token.json()['token']}"

    def create(self, style: str, data: bytes, **fields) -> requests.Response:
        return self.session.post(f"{self.base}/api/v1/jobs/", data={"style": style, **fields},
                                 files={"image": ("photo.jpg", data, "image/jpeg")}, timeout=120)

    def job(self, job_id: str) -> dict:
        return self.session.get(f"{self.base}/api/v1/jobs/{job_id}/", timeout=30).json()

    def wait(self, job_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(0.2)
        raise SystemExit(f"job {job_id} not finished after {timeout:.0f} s")


def start_stack(var_dir: Path, fifo: bool) -> tuple[subprocess.Popen, str]:
    from prisma_site.devstack import free_port

    port = free_port()
    env = {**os.environ, "PRISMA_VAR_DIR": str(var_dir), "JOB_MAX_IN_FLIGHT_PER_USER": "0"}
    env.pop("REDIS_URL", None)
    if fifo:  # every job counts as small: one queue, one worker, first in first out
        env["JOB_SMALL_MAX_PIXELS"] = str(10**9)
    stack = subprocess.Popen(
        [sys.executable, "-m", "prisma_site.devstack", "run", "--port", str(port),
         "--redis-port", str(free_port())],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    log = open(var_dir / "stack.log", "w")
    for line in stack.stdout:
        log.write(line)
        if "Prisma is running at" in line:
            break
    else:
        raise SystemExit(f"the stack stopped before serving; see {var_dir / 'stack.log'}")
    # Keep reading its output (into the log) so the stack never blocks on a full pipe.
    subprocess.Popen(["cat"], stdin=stack.stdout, stdout=log, start_new_session=True)
    return stack, f"http://127.0.0.1:{port}"


def measure(base: str, var_dir: Path, args) -> dict:
    logins = json.loads((var_dir / "logins.json").read_text())
    big_user, small_user = Api(base, "demo", logins["demo"]), Api(base, "admin", logins["admin"])
    styles = big_user.session.get(f"{base}/api/v1/styles/", timeout=30).json()
    slugs = [style["slug"] for style in (styles.get("results", []) if isinstance(styles, dict)
                                          else styles)]
    style = "starry-night" if "starry-night" in slugs else slugs[0]
    big_photo, small_photo = photo_jpeg(4896, 3264, 1), photo_jpeg(1224, 816, 2)
    print(f"style {style}; big photo 4896×3264 ({len(big_photo) / 1e6:.1f} MB), small 1224×816",
          flush=True)

    for data, fields in ((small_photo, {}), (photo_jpeg(2400, 2000, 3), {"max_side": 4096})):
        warm = small_user.create(style, data, **fields)  # loads the model in each worker
        warm.raise_for_status()
        small_user.wait(warm.json()["id"], timeout=300)

    big_ids, refused, started = [], 0, time.monotonic()
    for _ in range(args.big):
        response = big_user.create(style, big_photo, max_side=4096, stroke="fine")
        if response.status_code == 201:
            big_ids.append(response.json()["id"])
        else:
            refused += 1
            print(f"a big upload was refused: {response.status_code} {response.text[:200]}")
    uploaded = time.monotonic()
    big_uploads_s = uploaded - started
    created = small_user.create(style, small_photo)
    created.raise_for_status()
    small = small_user.wait(created.json()["id"], timeout=args.timeout)
    seconds = time.monotonic() - uploaded
    states = [big_user.job(job_id)["status"] for job_id in big_ids]
    result = {"small_seconds": round(seconds, 2), "small_status": small["status"],
              "big_accepted": len(big_ids), "big_refused": refused,
              "big_uploads_s": round(big_uploads_s, 1),
              "big_queued_at_finish": states.count("queued"),
              "big_running_at_finish": states.count("running"),
              "big_done_at_finish": len(states) - states.count("queued") - states.count("running"),
              "load_average": os.getloadavg()[0]}
    if args.wait_all:  # from the first big upload to the last big job's end
        for job_id in big_ids:
            big_user.wait(job_id, timeout=args.timeout)
        result["big_all_done_s"] = round(time.monotonic() - started, 1)
    else:
        for job_id in big_ids:  # their messages then cost a worker one database lookup
            big_user.session.delete(f"{base}/api/v1/jobs/{job_id}/", timeout=30)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running stack (default: start one)")
    parser.add_argument("--var-dir", type=Path, default=BASE_DIR / "var",
                        help="that stack's PRISMA_VAR_DIR (for logins.json)")
    parser.add_argument("--fifo", action="store_true",
                        help="started stack only: one queue for every job (the old way)")
    parser.add_argument("--big", type=int, default=10, help="big jobs of the first user")
    parser.add_argument("--target", type=float, default=30.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--wait-all", action="store_true",
                        help="wait for the big jobs too (else they are deleted)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the started stack's folder (its database and stack.log)")
    args = parser.parse_args(argv)

    stack = None
    if args.url:
        base, var_dir = args.url.rstrip("/"), args.var_dir
    else:
        var_dir = Path(tempfile.mkdtemp(prefix="fairness-"))
        stack, base = start_stack(var_dir, args.fifo)
    try:
        result = measure(base, var_dir, args)
    finally:
        if stack is not None:
            os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C: the stack stops what it started
            stack.wait(timeout=60)
            if args.keep:
                print(f"The stack's folder: {var_dir}")
            else:
                shutil.rmtree(var_dir, ignore_errors=True)
    mode = "one FIFO queue" if args.fifo else "a queue per cost class"
    ok = result["small_status"] == "succeeded" and result["small_seconds"] <= args.target
    print(json.dumps(result))
    print(f"FAIRNESS ({mode}): the 1 MP job took {result['small_seconds']:.1f} s from upload "
          f"to {result['small_status']} while {result['big_accepted']} 16 MP jobs waited "
          f"(target ≤ {args.target:.0f} s): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
