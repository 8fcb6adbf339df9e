"""The long upload fuzz run and the hostile-upload costs (`make fuzz`; not part of `make test`).

    python -m bench.fuzz_uploads [--files 2000] [--api-sample 300] [--seed N] [--skip-api]

1. **Files** (``--files``, default 2,000): mutated JPEG, PNG, WebP, GIF and TIFF files
   from Hypothesis (``tests/stylize/upload_fuzz.py``: bit flips, truncations, byte runs,
   segment/chunk and header edits) through the upload validator, the web side's
   metadata walk and the worker's loader (``stylizing.stored_photo_load``). The checks
   run in a child process that reports file by file, so a crash (a signal in a
   decoder) is counted and the run goes on with the next file.
2. **Live API** (``--api-sample``, default 300 of those files, half of them ones the
   validator accepts when there are that many): a real stack on this machine (a
   throwaway Redis, ``manage.py runserver``, a prefork Celery worker consuming every
   stylize queue, SQLite and files in a temporary folder, the shipped Starry Night
   network) gets each file as ``POST /api/v1/jobs/``; every answer must be a 201 or a
   400, and every job made must end ``succeeded`` or ``failed`` with a reason, with
   no worker process lost.
3. **Hostile files** (with 2): the scan bomb, the 6300² RGBA PNG (once, then eight at
   once), 16-bit 6300² PNGs and a 20000² PNG bomb, each posted to the live server,
   whose CPU time (``/proc/<pid>/stat``) and peak RSS (``VmHWM``, reset before each)
   are measured per request; the jobs made are followed to their end.

Prints the counts and writes them to ``var/bench/fuzz_uploads.json``. Exits 1 if any
file found a bug (an unhandled exception, private metadata stored, a worker crash, a
5xx, a job left unfinished, an upload over 1 s CPU or 200 MB in the web process).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MAX_WEB_CPU_S = 1.0
MAX_WEB_BYTES = 200 * 2**20


def _django_setup(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prisma_site.settings")
    os.environ.setdefault("DEBUG", "1")
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()


# --- 1. Files ----------------------------------------------------------------------------------


def generate(count: int, seed: int | None, out: Path) -> list[dict]:
    """``count`` mutated files from Hypothesis, written to ``out``; their index."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.stylize.upload_fuzz import mutated_files, seed_files

    seeds = seed_files()
    cases: list[dict] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(mutated_files(seeds))
    def collect(case):
        name, data, done = case
        path = out / f"{len(cases):05d}.bin"
        path.write_bytes(data)
        cases.append({"index": len(cases), "seed": name, "mutations": done, "path": str(path),
                      "size": len(data)})

    if seed is not None:
        collect = hypothesis_seed(seed)(collect)
    collect()
    return cases


def check_child(paths_file: Path, start: int) -> int:
    """In the child: one JSON line per file from ``start``; ``begin`` before each."""
    import warnings

    from tests.stylize.upload_fuzz import upload_outcome

    paths = json.loads(paths_file.read_text())
    for index in range(start, len(paths)):
        print(json.dumps({"begin": index}), flush=True)
        data = Path(paths[index]).read_bytes()
        started = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = upload_outcome(data)
        print(json.dumps({"index": index, "cpu_s": time.process_time() - started,
                          "refused": outcome.refused, "loaded": outcome.loaded,
                          "unreadable": outcome.unreadable, "unhandled": outcome.unhandled,
                          "private_left": outcome.private_left}), flush=True)
    return 0


def check_all(cases: list[dict], workdir: Path, env: dict) -> dict[int, dict]:
    """Every case through ``check_child`` processes, restarted after a crash."""
    paths_file = workdir / "paths.json"
    paths_file.write_text(json.dumps([case["path"] for case in cases]))
    results: dict[int, dict] = {}
    start = 0
    while start < len(cases):
        child = subprocess.Popen(
            [PYTHON, "-m", "bench.fuzz_uploads", "--check-child", str(paths_file), str(start)],
            cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        begun = None
        for line in child.stdout:
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if "begin" in record:
                begun = record["begin"]
            else:
                results[record["index"]] = record
                begun = None
        child.wait()
        if begun is None:
            break
        results[begun] = {"index": begun, "crash": f"exit status {child.returncode}"}
        print(f"  file {begun} ({cases[begun]['seed']}: {cases[begun]['mutations']}) "
              f"crashed the checker: exit {child.returncode}", flush=True)
        start = begun + 1
    return results


# --- 2. Live API -------------------------------------------------------------------------------


def _multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes):
    boundary = uuid.uuid4().hex
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class LiveStack:
    """Redis, a migrated SQLite database, a user with a token, a style on the shipped
    Starry Night network, a Celery worker and ``runserver``, in a temporary folder."""

    def __init__(self, workdir: Path, env: dict):
        from prisma_site.devstack import ProcessGroup, free_port, start_redis

        self.group = ProcessGroup()
        self.workdir = workdir
        redis_url = start_redis(self.group, port=free_port(), data_dir=None)
        self.port = free_port()
        self.env = {**env, "REDIS_URL": redis_url, "PRISMA_VAR_DIR": str(workdir / "var"),
                    "SITE_URL": f"http://127.0.0.1:{self.port}",
                    "API_JOB_CREATE_RATE": "1000000/hour", "JOB_MAX_IN_FLIGHT_PER_USER": "0",
                    "MODEL_BACKEND": "local", "SERVING_DIR": str(BASE_DIR / "serving"),
                    "CELERY_TASK_SOFT_TIME_LIMIT": "120", "CELERY_TASK_TIME_LIMIT": "150"}
        manage = [PYTHON, str(BASE_DIR / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=self.env, check=True,
                       cwd=BASE_DIR)
        self.token = json.loads(subprocess.run(
            [*manage, "shell", "-c", _SETUP], env=self.env, check=True, cwd=BASE_DIR,
            capture_output=True, text=True).stdout.strip().splitlines()[-1])["token"]
        from django.conf import settings

        queues = sorted(set(getattr(settings, "JOB_QUEUES", {}).values()) | {"celery"})
        self.worker_log = workdir / "worker.log"
        with open(self.worker_log, "w") as log:
            self.worker = self.group.start("worker", [
                PYTHON, "-m", "celery", "-A", "prisma_site", "worker", "--loglevel", "INFO",
                "--pool", "prefork", "--concurrency", "1", "--queues", ",".join(queues),
                "--hostname", f"fuzz-{self.port}@%h"], env=self.env, cwd=BASE_DIR,
                stdout=log, stderr=subprocess.STDOUT)
        self.web = self.group.start(
            "web", [*manage, "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            env=self.env, cwd=BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/styles/", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the web server did not answer in 60 s")
        self.web_pid = self.web.pid  # runserver --noreload serves in this process

    def stop(self):
        self.group.stop()

    def post(self, data: bytes, name: str = "photo.jpg") -> tuple[int, dict]:
        body, content_type = _multipart({"style": "fuzz", "max_side": "256"}, "image", name,
                                        data)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/jobs/", data=body, method="POST",
            headers={"Authorization": f"Token {self.token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"body": text[:300].decode("latin-1")}

    def job(self, job_id: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1/jobs/{job_id}/",
                                         headers={"Authorization": f"Token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_for_jobs(self, job_ids: list[str], timeout: float) -> dict[str, dict]:
        finished: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while len(finished) < len(job_ids) and time.monotonic() < deadline:
            for job_id in job_ids:
                if job_id not in finished:
                    job = self.job(job_id)
                    if job["status"] in ("succeeded", "failed"):
                        finished[job_id] = job
            time.sleep(1)
        return finished

    def worker_peaks_mb(self) -> list[float]:
        """VmHWM of the worker's pool processes (its children)."""
        peaks = []
        for task in Path(f"/proc/{self.worker.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    peaks.append(_status_kb(int(child), "VmHWM") / 1024)
                except OSError:
                    pass
        return peaks

    def worker_troubles(self) -> list[str]:
        words = ("WorkerLostError", "exited with 'signal", "Process '", "Traceback",
                 "MemoryError", "Segmentation")
        return [line.strip() for line in self.worker_log.read_text(errors="replace").splitlines()
                if any(word in line for word in words)]


_SETUP = """
import json
from rest_framework.authtoken.models import Token
from ml.shipped import shipped_styles
from django.conf import settings
from tests.factories import StyleFactory, UserFactory
shipped = shipped_styles(settings.SERVING_DIR)
chosen = next((s for s in shipped if s.name == "The Starry Night"), shipped[0])
StyleFactory(slug="fuzz", name="Fuzz", model_name=chosen.model, live_version=chosen.version,
             bank_index=chosen.slot, bank_slots=chosen.num_styles)
user = UserFactory(username="fuzzer")
print(json.dumps({"token": Token.objects.create(user=user).key}))
"""


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def measured_posts(stack: LiveStack, files: list[tuple[str, bytes]]) -> dict:
    """Post ``files`` at once; the web process' CPU and peak RSS growth over them."""
    pid = stack.web_pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    rss_before = _status_kb(pid, "VmRSS")
    cpu_before = _cpu_s(pid)
    answers: list = [None] * len(files)

    def send(i, name, data):
        answers[i] = stack.post(data, name)

    threads = [threading.Thread(target=send, args=(i, name, data))
               for i, (name, data) in enumerate(files)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests": len(files), "cpu_s": _cpu_s(pid) - cpu_before,
            "peak_rss_growth_mb": (_status_kb(pid, "VmHWM") - rss_before) / 1024,
            "rss_before_mb": rss_before / 1024,
            "statuses": [status for status, _ in answers],
            "answers": [body for _, body in answers]}


def hostile_files() -> list[tuple[str, str, bytes]]:
    from tests.stylize import hostile_files as h

    return [
        ("scan bomb (6000², 3,000 scans)", "bomb.jpg", h.scan_bomb_jpeg(6000, 3000)),
        ("RGBA PNG 6300²", "rgba.png", h.rgba_png(6300)),
        ("16-bit RGB PNG 6300²", "rgb16.png", h.sixteen_bit_png(6300, colour_type=2)),
        ("16-bit grey PNG 6300²", "grey16.png", h.sixteen_bit_png(6300, colour_type=0)),
        ("16-bit RGBA PNG 6300²", "rgba16.png", h.sixteen_bit_png(6300, colour_type=6)),
        ("PNG bomb 20000²", "bomb.png", h.png_bomb(20_000)),
    ]


# --- Main ---------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_uploads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--api-sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis' seed")
    parser.add_argument("--skip-api", action="store_true", help="only part 1")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", default=str(BASE_DIR / "var" / "bench" / "fuzz_uploads.json"))
    parser.add_argument("--check-child", nargs=2, metavar=("PATHS", "START"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1"),
           "DJANGO_SETTINGS_MODULE": "prisma_site.settings",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(BASE_DIR),
                                                      os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    if args.check_child:
        _django_setup(env)
        return check_child(Path(args.check_child[0]), int(args.check_child[1]))

    workdir = Path(tempfile.mkdtemp(prefix="fuzz-uploads-"))
    env["PRISMA_VAR_DIR"] = str(workdir / "var")
    _django_setup(env)
    report: dict = {"files": args.files, "seed": args.seed}
    bugs = 0
    try:
        started = time.monotonic()
        (workdir / "cases").mkdir()
        cases = generate(args.files, args.seed, workdir / "cases")
        results = check_all(cases, workdir, env)
        report["files_seconds"] = round(time.monotonic() - started, 1)
        counts = collections.Counter()
        refusals = collections.Counter()
        for case in cases:
            result = results.get(case["index"], {"crash": "no result"})
            case["result"] = result
            if result.get("crash"):
                counts["checker crashes"] += 1
            elif result["unhandled"]:
                counts["unhandled exceptions"] += 1
                print(f"  UNHANDLED {case['seed']} ({case['mutations']}): {result['unhandled']}")
            elif result["refused"]:
                counts["refused by the validator"] += 1
                refusals[result["refused"]] += 1
            elif result["loaded"]:
                counts["accepted, decoded by the worker's loader"] += 1
            else:
                counts["accepted, unreadable in the worker (job fails readably)"] += 1
            if result.get("private_left"):
                counts["private metadata stored"] += 1
                print(f"  PRIVATE {case['seed']} ({case['mutations']})")
        slowest = max((r.get("cpu_s", 0) for r in results.values()), default=0)
        report["files_counts"] = dict(counts)
        report["refusals"] = dict(refusals)
        report["seeds"] = dict(collections.Counter(case["seed"] for case in cases))
        report["slowest_file_cpu_s"] = round(slowest, 3)
        bugs += counts["checker crashes"] + counts["unhandled exceptions"] + counts[
            "private metadata stored"]
        print(f"\n1. {len(cases)} mutated files through the validator, the metadata walk and "
              f"the worker's loader ({report['files_seconds']} s)")
        for key in ("refused by the validator", "accepted, decoded by the worker's loader",
                    "accepted, unreadable in the worker (job fails readably)",
                    "unhandled exceptions", "checker crashes", "private metadata stored"):
            print(f"   {key:58s} {counts[key]:5d}")
        print("   refusals: " + ", ".join(f"{code} {n}" for code, n in refusals.most_common()))
        print(f"   slowest file, validator + walk + loader: {slowest * 1000:.0f} ms CPU")

        if not args.skip_api:
            bugs += live_api(cases, args, workdir, env, report)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{'No bugs found' if not bugs else f'{bugs} bug(s) found'}; written to {out}")
    return 1 if bugs else 0


def live_api(cases, args, workdir: Path, env: dict, report: dict) -> int:
    bugs = 0
    rng = random.Random(args.seed or 0)
    accepted = [c for c in cases if c["result"].get("refused") is None
                and not c["result"].get("crash")]
    refused = [c for c in cases if c["result"].get("refused") is not None]
    take = min(len(accepted), args.api_sample // 2)
    sample = rng.sample(accepted, take) + rng.sample(refused, min(len(refused),
                                                                 args.api_sample - take))
    rng.shuffle(sample)
    print(f"\n2. {len(sample)} of them through the live API ({take} the validator accepts); "
          "starting Redis, a worker and runserver …", flush=True)
    stack = LiveStack(workdir, env)
    try:
        started = time.monotonic()
        statuses = collections.Counter()
        job_ids = []
        worst = {"cpu_s": 0.0}
        for case in sample:
            cpu = _cpu_s(stack.web_pid)
            status, body = stack.post(Path(case["path"]).read_bytes(),
                                      f"fuzz-{case['index']}.{case['seed'].rsplit('.', 1)[1]}")
            worst["cpu_s"] = max(worst["cpu_s"], _cpu_s(stack.web_pid) - cpu)
            statuses[status] += 1
            if status >= 500:
                print(f"  5xx {status} for {case['seed']} ({case['mutations']}): {body}")
            if status == 201:
                job_ids.append(body["id"])
        finished = stack.wait_for_jobs(job_ids, timeout=600)
        outcomes = collections.Counter(job["status"] for job in finished.values())
        reasons = collections.Counter(job["error"] for job in finished.values() if job["error"])
        troubles = stack.worker_troubles()
        unfinished = len(job_ids) - len(finished)
        five_xx = sum(n for status, n in statuses.items() if status >= 500)
        report["api"] = {
            "sample": len(sample), "statuses": dict(statuses), "jobs": len(job_ids),
            "job_outcomes": dict(outcomes), "failure_reasons": dict(reasons),
            "unfinished_jobs": unfinished, "worker_troubles": len(troubles),
            "worker_trouble_lines": troubles[:20],
            "worst_request_cpu_s": round(worst["cpu_s"], 3),
            "seconds": round(time.monotonic() - started, 1),
        }
        bugs += five_xx + unfinished + len(troubles)
        print(f"   answers: {dict(sorted(statuses.items()))}; 5xx: {five_xx}")
        print(f"   jobs made {len(job_ids)}: {dict(outcomes)}; unfinished {unfinished}; worker "
              f"lost/crashed: {len(troubles)}")
        for reason, n in reasons.most_common():
            print(f"     {n:4d} × {reason}")
        print(f"   most CPU one request took in the web process: {worst['cpu_s'] * 1000:.0f} ms")

        print("\n3. Hostile files through the live API (web process: CPU, peak RSS growth)")
        report["hostile"] = {}
        hostile_jobs = {}
        for label, name, data in hostile_files():
            measured = measured_posts(stack, [(name, data)])
            report["hostile"][label] = {k: v for k, v in measured.items() if k != "answers"}
            status, body = measured["statuses"][0], measured["answers"][0]
            if status == 201:
                hostile_jobs[body["id"]] = label
            what = body.get("image", [body.get("id", "")])[0] if isinstance(body, dict) else ""
            print(f"   {label:32s} {len(data) / 1024:7.0f} KB → {status}: "
                  f"{measured['cpu_s'] * 1000:5.0f} ms CPU, "
                  f"+{measured['peak_rss_growth_mb']:.0f} MB"
                  f"  {what if status != 201 else 'job ' + body['status']}")
            bugs += measured["cpu_s"] > MAX_WEB_CPU_S
            bugs += measured["peak_rss_growth_mb"] * 2**20 > MAX_WEB_BYTES
        _, name, data = hostile_files()[1]
        measured = measured_posts(stack, [(name, data)] * 8)
        report["hostile"]["8 × RGBA PNG 6300² at once"] = {
            k: v for k, v in measured.items() if k != "answers"}
        for status, body in zip(measured["statuses"], measured["answers"]):
            if status == 201:
                hostile_jobs[body["id"]] = "RGBA PNG 6300² (8 at once)"
        print(f"   {'8 × RGBA PNG 6300² at once':32s} {8 * len(data) / 1024:7.0f} KB → "
              f"{collections.Counter(measured['statuses'])}: {measured['cpu_s'] * 1000:5.0f} ms "
              f"CPU in all, +{measured['peak_rss_growth_mb']:.0f} MB (from "
              f"{measured['rss_before_mb']:.0f} MB)")
        bugs += measured["cpu_s"] > 8 * MAX_WEB_CPU_S
        bugs += measured["peak_rss_growth_mb"] * 2**20 > MAX_WEB_BYTES
        done = stack.wait_for_jobs(list(hostile_jobs), timeout=900)
        print("   their jobs in the worker:")
        for job_id, label in hostile_jobs.items():
            job = done.get(job_id)
            print(f"     {label:32s} {job['status'] if job else 'UNFINISHED'}"
                  f"{': ' + job['error'] if job and job['error'] else ''}")
            bugs += job is None
        report["hostile_jobs"] = {label: (done[j]["status"] if j in done else "unfinished")
                                  for j, label in hostile_jobs.items()}
        troubles = stack.worker_troubles()
        bugs += len(troubles) - report["api"]["worker_troubles"]
        peaks = stack.worker_peaks_mb()
        report["worker_pool_peak_rss_mb"] = peaks
        print(f"   worker lost/crashed: {len(troubles)}; the pool process' peak RSS (the "
              f"network loaded, all jobs above): {', '.join(f'{p:.0f} MB' for p in peaks)}")
    finally:
        stack.stop()
    return bugs


if __name__ == "__main__":
    sys.exit(main())
