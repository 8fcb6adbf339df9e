"""Stylize benchmark: latency of the shipped styles and of the stroke options at 1024²,
latency and peak memory per photo size, end-to-end job latency, and jobs per minute with
one and two Celery worker processes.

    python -m bench.stylize_bench [--sizes 256,512,1024,2048,4096] [--width 0.5,1.0]
                                  [--blocks 3] [--output-kernel 3] [--quick]
                                  [--skip-shipped | --shipped-only | --stroke-only]
                                  [--every-slot] [--skip-stroke] [--skip-jobs]
                                  [--out var/bench/results.md]

Everything runs on this machine.

0. Shipped styles at 1024² (first, also in --quick): every shipped style as
   ``ml.shipped.shipped_styles`` lists them from the repository's ``serving/`` (read-only;
   the latest version of each model, a numbered folder with a ``saved_model.pb``), a 1024²
   photo through the local backend with ``photo_stylize`` in a fresh subprocess (warm-up,
   median of --runs) plus the bare SavedModel call; pass/fail against
   TARGET_SHIPPED_1024_S per style. A bank is timed through its first painted slot (its
   one-hot ``style_weights``; every slot runs the same network), or through every slot
   with --every-slot.
0b. Stroke size at 1024² (with the shipped styles, or alone with --stroke-only): one
   shipped style (``STROKE_STYLE``, by model name or slug, if shipped, else the first; a
   bank slot with its weights) through ``photo_stylize``
   with each ``stroke`` (fine / medium / bold, ``stylize.imaging.STROKE_WORKING_SIDES``)
   in one fresh subprocess, local backend, a warm-up per stroke, then the strokes taken
   in turn (so they share the machine's load) and the median of max(5, --runs) each;
   pass/fail on bold / fine against TARGET_STROKE_BOLD_RATIO.

The other sections use a TransformNet exported with random weights
(``keras.utils.set_random_seed(0)``) into a temporary serving dir (models/bench/1/), by
default the shipped architecture: ``TransformNet(width=0.5, num_residual_blocks=3,
output_kernel_size=3)`` (--width, --blocks, --output-kernel):

1. per size, (a) the local backend in a fresh subprocess through ``photo_stylize``
   (stylize_tiled + backend + postprocess, what a job runs), (b) the same through
   ``MODEL_BACKEND=tfserving`` over real gRPC to ``tests.tfserving_server`` in its own
   process. Latency is the median of a few runs after a warm-up; memory is VmHWM (the
   whole process's peak RSS) of each fresh process. Plus the bare model: the
   SavedModel signature called directly on a 1×1024×1024×3 batch.
2. end-to-end job latency at 1024² (``services.job_create`` → succeeded) with real
   Redis, a real prefork Celery worker and a temp SQLite DB, against the bare model.
3. jobs per minute, one worker process vs two, on N jobs at 512².

Every process started here is in its own session and is stopped in ``finally``.
Internal subcommands (``_export``, ``_photo``, ``_profile``, ``_jobs``) run in child
processes so the parent never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MODEL_NAME = "bench"
RESULT_PREFIX = "BENCH-RESULT "
SERVING_DIR = BASE_DIR / "serving"  # the shipped styles (read-only here)

TARGET_SHIPPED_1024_S = 0.6  # a shipped style, 1024² photo, local backend, median
TARGET_STROKE_BOLD_RATIO = 0.5  # bold / fine at 1024², local backend, medians
# The shipped style the stroke section times: a single-style model's name or a slug.
STROKE_STYLE = ("starry_night", "starry-night")

TARGET_PEAK_BYTES = 4 * 1000**3  # "under 4 GB"
TARGET_E2E_RATIO = 1.2
TARGET_SCALING = 1.8


# --------------------------------------------------------------------------- helpers


def vm_hwm(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def make_photo(size: int, seed: int = 0):
    """A deterministic photo-like ``size``×``size`` RGB uint8 image (smooth + texture)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    base = np.stack([
        128 + 90 * np.sin(6.0 * x + 1.0) * np.cos(4.0 * y),
        128 + 90 * np.cos(5.0 * x * y + 0.5),
        128 + 90 * np.sin(3.0 * (x + y)),
    ], axis=-1)
    noise = rng.normal(0, 12, size=(size, size, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def photo_jpeg(size: int, seed: int = 0) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(make_photo(size, seed)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def emit(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_for_result(command: list[str], *, cwd, env: dict, timeout: float, log: Path,
                   prefix: str, log_mode: str = "ab") -> tuple[int, dict | None]:
    """Run ``command`` in its own session (stderr to ``log``) and read its result line.

    Returns the exit status and the JSON after the last stdout line starting with
    ``prefix`` (None if there is none). On a timeout the whole process group is
    killed and ``TimeoutError`` raised.
    """
    with open(log, log_mode) as log_file:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=log_file, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise TimeoutError(f"{command[0]} timed out after {timeout:.0f} s") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    results = [line[len(prefix):] for line in out.decode().splitlines() if line.startswith(prefix)]
    return proc.returncode, (json.loads(results[-1]) if results else None)


def run_child(args: list[str], env: dict, timeout: float, log: Path) -> dict:
    """Run ``python -m bench.stylize_bench <args>`` in its own session; its result dict."""
    try:
        status, result = run_for_result([PYTHON, "-m", "bench.stylize_bench", *args], cwd=BASE_DIR,
                                        env=env, timeout=timeout, log=log, prefix=RESULT_PREFIX)
    except TimeoutError:
        raise RuntimeError(f"{args[0]} timed out after {timeout:.0f} s (log: {log})") from None
    if status != 0 or result is None:
        raise RuntimeError(f"{' '.join(args)} failed with status {status} (log: {log})")
    return result


def base_env(serving_dir: Path, var_dir: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="prisma_site.settings",
        PYTHONPATH=str(BASE_DIR),
        SERVING_DIR=str(serving_dir),
        PRISMA_VAR_DIR=str(var_dir),
        MEDIA_ROOT=str(var_dir / "media"),
        DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
        EMAIL_URL="consolemail://",
        TF_CPP_MIN_LOG_LEVEL="2",
        TFSERVING_TIMEOUT="900",
        JOB_MAX_IN_FLIGHT_PER_USER="0",  # the throughput runs queue many jobs of one user
    )
    env.pop("MODEL_THREADS", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def style_args(style) -> list[str]:
    """The child options (``--model`` …) that name an ``ml.shipped.ShippedStyle``."""
    args = ["--model", style.model, "--version", str(style.version)]
    if style.in_bank:
        args += ["--slot", str(style.slot), "--num-styles", str(style.num_styles)]
    return args


def load_avg() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def fmt_s(seconds) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_mb(num_bytes) -> str:
    return "–" if num_bytes is None else f"{num_bytes / 1e6:,.0f} MB"


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- children


def child_export(args) -> None:
    import keras
    import numpy as np

    from ml.export import export_savedmodel
    from ml.model import TransformNet

    keras.utils.set_random_seed(0)
    model = TransformNet(width=args.width, num_residual_blocks=args.blocks,
                         output_kernel_size=args.output_kernel)
    model(np.zeros((1, 16, 16, 3), "float32"))
    version, path = export_savedmodel(model, Path(args.models_dir) / MODEL_NAME)
    emit({"version": version, "path": str(path)})


def _django():
    import django

    django.setup()


def bench_style(*, model: str, version: int, slot: int | None, num_styles: int,
                name: str, slug: str):
    """The unsaved Style row photo_stylize paints with, as registered: a single-style
    model, or a bank slot (``bank_index``, ``bank_slots``: photo_stylize passes weights)."""
    from stylize.models import Style

    return Style(name=name, slug=slug, model_name=model, live_version=version,
                 bank_index=slot, bank_slots=num_styles if slot is not None else None)


def _child_style(args):
    """``bench_style`` of ``--model``/``--version`` and, for a bank, ``--slot``/``--num-styles``."""
    return bench_style(model=args.model, version=args.version, slot=args.slot,
                       num_styles=args.num_styles, name=args.model, slug="bench")


def child_photo(args) -> None:
    """One size through photo_stylize (local or tfserving backend), in a fresh process.

    The model is ``SERVING_DIR/models/<--model>/<--version>/`` (default: the random-weights
    ``bench/1`` export; the shipped-styles section points SERVING_DIR at serving/), for a
    bank its slot ``--slot`` of ``--num-styles``.
    """
    _django()
    import numpy as np

    from stylize.stylizing import photo_stylize

    style = _child_style(args)
    photo = make_photo(args.size)
    # Warm-up: one pass at (at most) tile size loads the model and allocates.
    warm = photo if args.size <= 1024 else make_photo(1024)
    start = time.perf_counter()
    photo_stylize(photo=warm, style=style)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        out = photo_stylize(photo=photo, style=style)
        times.append(time.perf_counter() - start)
        del out
    result = {"size": args.size, "first_s": first, "times": times,
              "median_s": statistics.median(times), "peak_bytes": vm_hwm()}
    if args.bare:
        import tensorflow as tf

        from ml.export import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME, WEIGHTS_INPUT_NAME

        signature = tf.saved_model.load(
            str(Path(os.environ["SERVING_DIR"]) / "models" / args.model / str(args.version))
        ).signatures[SIGNATURE_NAME]
        inputs = {INPUT_NAME: tf.constant(make_photo(1024)[None])}
        if args.slot is not None:
            from ml.bank import mix_weights

            inputs[WEIGHTS_INPUT_NAME] = tf.constant(
                mix_weights(args.num_styles, args.slot)[None].astype(np.float32))
        signature(**inputs)[OUTPUT_NAME].numpy()  # warm-up
        bare = []
        for _ in range(max(3, args.runs)):
            start = time.perf_counter()
            signature(**inputs)[OUTPUT_NAME].numpy()
            bare.append(time.perf_counter() - start)
        result["bare_times"] = bare
        result["bare_median_s"] = statistics.median(bare)
    emit(result)


def child_stroke(args) -> None:
    """A 1024² photo through photo_stylize at every stroke option, in one fresh process."""
    _django()
    from stylize.imaging import STROKE_WORKING_SIDES
    from stylize.stylizing import photo_stylize

    style = _child_style(args)
    photo = make_photo(args.size)
    times: dict[str, list[float]] = {stroke: [] for stroke in STROKE_WORKING_SIDES}
    for stroke in times:  # warm-up: loads the model and meets each working size once
        photo_stylize(photo=photo, style=style, stroke=stroke)
    for _ in range(args.runs):
        for stroke in times:  # in turn, so that every stroke sees the same load
            start = time.perf_counter()
            photo_stylize(photo=photo, style=style, stroke=stroke)
            times[stroke].append(time.perf_counter() - start)
    emit({"size": args.size, "working_sides": STROKE_WORKING_SIDES, "times": times,
          "median_s": {stroke: statistics.median(t) for stroke, t in times.items()},
          "peak_bytes": vm_hwm()})


def child_profile(args) -> None:
    """job_run's stages on a 1024² JPEG, in-process, no Celery/DB: where the time goes."""
    _django()
    from stylize.backends import get_backend
    from stylize.imaging import encode_image, load_photo, postprocess, stylize_tiled
    from django.conf import settings

    data = photo_jpeg(args.size)
    backend = get_backend()

    def run(batch):
        return backend.stylize(model_name=args.model, version=args.version, images=batch)

    stages: dict[str, list[float]] = {}

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        stages.setdefault(name, []).append(time.perf_counter() - start)
        return value

    for i in range(args.runs + 1):
        photo = timed("load_photo (JPEG decode)", lambda: load_photo(io.BytesIO(data), max_side=args.size))
        result = timed("stylize_tiled (model)", lambda: stylize_tiled(photo, run, tile=settings.STYLIZE_TILE_SIZE))
        final = timed("postprocess (strength 1.0)", lambda: postprocess(photo, result, strength=1.0, preserve_colors=False))
        timed("encode_image (JPEG q92 optimize progressive)", lambda: encode_image(final, format="JPEG"))
        timed("encode_image alt: JPEG q92 no optimize/progressive", lambda: _plain_jpeg(final))
        if i == 0:  # warm-up
            stages = {}
    emit({"size": args.size, "stages": {k: statistics.median(v) for k, v in stages.items()}})


def _plain_jpeg(array) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def child_jobs(args) -> None:
    """Create jobs through services.job_create and wait until they all succeed."""
    _django()
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.db import transaction

    from stylize import services
    from stylize.models import Style, StyleJob

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"email": "bench@example.com"}
    )
    style, _ = Style.objects.get_or_create(
        slug="bench",
        defaults=dict(name="Bench", model_name=MODEL_NAME, live_version=1,
                      status=Style.Status.READY),
    )
    data = photo_jpeg(args.size)

    def submit(count):
        ids = []
        for i in range(count):
            with transaction.atomic():
                job = services.job_create(
                    owner=user, style=style, input_image=ContentFile(data, name=f"p{i}.jpg"),
                    max_side=max(64, args.size),
                )
            ids.append(job.pk)
        return ids

    def wait(ids):
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            jobs = list(StyleJob.objects.filter(pk__in=ids))
            if all(job.status in StyleJob.FINISHED for job in jobs):
                failed = [job.error for job in jobs if job.status != StyleJob.Status.SUCCEEDED]
                if failed:
                    raise RuntimeError(f"jobs failed: {failed[:3]}")
                return jobs
            time.sleep(0.05)
        raise RuntimeError(f"jobs not finished after {args.timeout} s")

    wait(submit(args.warmup))  # loads the model in every worker child
    result = {"size": args.size}
    if args.mode == "sequential":
        # The bare model is timed here too, between the jobs, with the workers' thread
        # setting, so both see the same machine load (other work shares this machine).
        bare_model = _BareModel(args.size)
        e2e, run_s, queue_s, bare = [], [], [], []
        for _ in range(args.count):
            bare += bare_model.times(2)
            (job,) = wait(submit(1))
            e2e.append((job.finished_at - job.enqueued_at).total_seconds())
            run_s.append((job.finished_at - job.started_at).total_seconds())
            queue_s.append((job.started_at - job.enqueued_at).total_seconds())
        bare += bare_model.times(2)
        result.update(e2e=e2e, e2e_median_s=statistics.median(e2e),
                      run_median_s=statistics.median(run_s),
                      queue_median_s=statistics.median(queue_s),
                      bare=bare, bare_median_s=statistics.median(bare))
    else:
        pgids = [int(x) for x in os.environ.get("BENCH_WORKER_PGIDS", "").split(",") if x]
        cpu_before, machine_before = _group_cpu_seconds(pgids), _machine_cpu()
        start = time.perf_counter()
        jobs = wait(submit(args.count))
        cpu_used = _group_cpu_seconds(pgids) - cpu_before
        machine_after = _machine_cpu()
        busy = machine_after[0] - machine_before[0]
        total = machine_after[1] - machine_before[1]
        result.update(worker_cpu_s_per_job=cpu_used / args.count,
                      machine_busy=busy / total if total else None)
        first = min(job.enqueued_at for job in jobs)
        last = max(job.finished_at for job in jobs)
        makespan = (last - first).total_seconds()
        result.update(count=args.count, makespan_s=makespan, wall_s=time.perf_counter() - start,
                      jobs_per_min=60 * args.count / makespan,
                      run_median_s=statistics.median(
                          (j.finished_at - j.started_at).total_seconds() for j in jobs))
    emit(result)


class _BareModel:
    """The SavedModel signature on a 1×size×size×3 batch, nothing else."""

    def __init__(self, size: int):
        import tensorflow as tf

        from ml.export import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME
        from stylize.backends.local import limit_tf_threads

        limit_tf_threads()  # MODEL_THREADS, as the worker applies it
        path = Path(os.environ["SERVING_DIR"]) / "models" / MODEL_NAME / "1"
        signature = tf.saved_model.load(str(path)).signatures[SIGNATURE_NAME]
        batch = tf.constant(make_photo(size)[None])
        self.call = lambda: signature(**{INPUT_NAME: batch})[OUTPUT_NAME].numpy()
        self.call()  # warm-up

    def times(self, runs: int) -> list[float]:
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            self.call()
            out.append(time.perf_counter() - start)
        return out


def _group_cpu_seconds(pgids: list[int]) -> float:
    """user+system CPU seconds of every live process in these process groups."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:  # field 5 (pgrp), counted after the comm field
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------- parent


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="prisma-bench-"))
        self.log = self.tmp / "bench.log"
        self.sections: list[str] = []
        self.verdicts: list[tuple[str, str, str]] = []

    def say(self, text: str) -> None:
        print(text, flush=True)

    def export(self, width: float) -> Path:
        serving_dir = self.tmp / f"serving-w{width}"
        env = base_env(serving_dir, self.tmp / "var")
        run_child(["_export", "--models-dir", str(serving_dir / "models"), "--width", str(width),
                   "--blocks", str(self.args.blocks),
                   "--output-kernel", str(self.args.output_kernel)],
                  env, timeout=300, log=self.log)
        return serving_dir

    def arch(self, width: float) -> str:
        return (f"width {width}, {self.args.blocks} residual blocks, "
                f"{self.args.output_kernel}×{self.args.output_kernel} output conv")

    # ---- 0. shipped styles
    def shipped(self) -> None:
        """Every shipped style's latest version at 1024², local backend and bare model."""
        from ml.shipped import shipped_styles  # no TensorFlow, no Django

        args = self.args
        serving_dir = Path(args.serving_dir).resolve()
        styles = shipped_styles(serving_dir)
        title = f"### Shipped styles at 1024² ({serving_dir / 'models'})\n\n"
        if not styles:
            text = title + "No shipped styles (no `<name>/<version>/saved_model.pb`).\n"
            self.sections.append(text)
            self.say(text)
            self.verdicts.append((f"shipped styles ≤ {TARGET_SHIPPED_1024_S} s at 1024² "
                                  "(local backend)", "no shipped styles", "–"))
            return
        timed, banks = [], {}
        for style in styles:
            if style.in_bank:
                banks.setdefault((style.model, style.version), []).append(style)
                if not args.every_slot and len(banks[style.model, style.version]) > 1:
                    continue  # one slot stands for the bank: the same network, other weights
            timed.append(style)
        rows = []
        for style in timed:
            load = load_avg()
            env = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="local")
            child = ["_photo", "--size", "1024", "--runs", str(args.runs), "--bare",
                     *style_args(style)]
            label = style.label
            if style.in_bank and not args.every_slot:
                label += f", for its {len(banks[style.model, style.version])} styles"
            verdict = f"{label}: 1024² local ≤ {TARGET_SHIPPED_1024_S} s"
            try:
                res = run_child(child, env, 900, self.log)
            except RuntimeError as error:
                self.say(f"  shipped {label}: {error}")
                rows.append([label, "error", "–", "–", "–", load])
                self.verdicts.append((verdict, f"error: {error}", "FAIL"))
                continue
            ok = res["median_s"] <= TARGET_SHIPPED_1024_S
            self.say(f"  shipped {label} 1024² local: {fmt_s(res['median_s'])}, bare "
                     f"{fmt_s(res['bare_median_s'])}, peak {fmt_mb(res['peak_bytes'])} "
                     f"(load {load})")
            rows.append([label, f"{res['median_s']:.3f}", f"{res['bare_median_s']:.3f}",
                         f"{res['peak_bytes'] / 1e6:,.0f}", "PASS" if ok else "FAIL", load])
            self.verdicts.append((verdict, fmt_s(res["median_s"]), "PASS" if ok else "FAIL"))
        text = (title + md_table(
            ["style", "local median (s)", "bare median (s)", "peak MB (VmHWM, local)",
             f"≤ {TARGET_SHIPPED_1024_S} s", "load avg 1/5/15 min before"], rows)
            + f"\n\nA 1024×1024 photo through `photo_stylize` with the local backend (tiling, "
              f"backend, postprocess) in a fresh process per style: one warm-up, then the "
              f"median of {args.runs} runs; bare = the SavedModel signature called directly on "
              f"a 1×1024×1024×3 batch (median of {max(3, args.runs)}). Peak is the process's "
              f"VmHWM before the bare model is loaded. Target: local median ≤ "
              f"{TARGET_SHIPPED_1024_S} s."
            + (f" A bank is timed through "
               f"{'every painted slot' if args.every_slot else 'its first painted slot'} "
               f"(`style_weights` one-hot on the slot, `ml.bank.mix_weights`, in "
               f"`photo_stylize` and in the bare call); every slot runs the same network"
               f"{'' if args.every_slot else ' (--every-slot times each)'}."
               if banks else "") + "\n")
        self.sections.append(text)
        self.say(text)

    # ---- 0b. stroke size
    def strokes(self) -> None:
        """photo_stylize at 1024² with each stroke option, one shipped style, local backend."""
        from ml.shipped import select_styles, shipped_styles

        args = self.args
        serving_dir = Path(args.serving_dir).resolve()
        styles = shipped_styles(serving_dir)
        title = "### Stroke size at 1024² (local backend)\n\n"
        verdict = f"bold ≤ {TARGET_STROKE_BOLD_RATIO}× fine at 1024² (local backend)"
        if not styles:
            text = title + "No shipped styles to time.\n"
            self.sections.append(text)
            self.say(text)
            self.verdicts.append((verdict, "no shipped styles", "–"))
            return
        style = styles[0]
        for wanted in STROKE_STYLE:
            try:
                style = select_styles(styles, [wanted])[0]
                break
            except KeyError:
                continue
        name = style.label
        runs = max(5, args.runs)
        load = load_avg()
        env = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="local")
        try:
            res = run_child(["_stroke", "--size", "1024", "--runs", str(runs),
                             *style_args(style)], env, 900, self.log)
        except RuntimeError as error:
            self.say(f"  stroke {name}: {error}")
            self.sections.append(title + f"Failed: {error}\n")
            self.verdicts.append((verdict, f"error: {error}", "FAIL"))
            return
        medians = res["median_s"]
        fine = medians["fine"]
        rows = [[stroke, f"{side} px", f"{medians[stroke]:.3f}",
                 ", ".join(f"{t:.3f}" for t in res["times"][stroke]),
                 f"{medians[stroke] / fine:.2f}"]
                for stroke, side in res["working_sides"].items()]
        ratio = medians["bold"] / fine
        fastest = min(res["times"]["bold"]) / min(res["times"]["fine"])
        text = (title + md_table(["stroke", "working side", "median (s)", "runs (s)",
                                  "/ fine"], rows)
                + f"\n\n{name}, a 1024×1024 photo through `photo_stylize(..., "
                  f"stroke=...)` (working size, tiling, backend, guided upsampling, "
                  f"postprocess) in one fresh process: a warm-up per stroke, then the strokes "
                  f"in turn, median of {runs} each. Peak {fmt_mb(res['peak_bytes'])} "
                  f"(VmHWM); load avg before {load}. Bold / fine: **{ratio:.2f}×** (target ≤ "
                  f"{TARGET_STROKE_BOLD_RATIO}×); fastest of each {fastest:.2f}×, the least "
                  f"disturbed by other work.\n")
        self.sections.append(text)
        self.say(text)
        self.verdicts.append((verdict, f"{ratio:.2f}× ({fmt_s(medians['bold'])} / {fmt_s(fine)})",
                              "PASS" if ratio <= TARGET_STROKE_BOLD_RATIO else "FAIL"))

    # ---- 1. per size
    def sizes(self, width: float, serving_dir: Path) -> None:
        from prisma_site.devstack import ProcessGroup, free_port, wait_until

        args = self.args
        rows = []
        bare = None
        peak_4096 = {}
        for size in args.sizes:
            runs = args.runs if size <= 1024 else (2 if size <= 2048 and not args.quick else 1)
            load = load_avg()
            env = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="local")
            child = ["_photo", "--size", str(size), "--runs", str(runs)]
            local = run_child(child + (["--bare"] if size == 1024 else []), env, 900, self.log)
            if "bare_median_s" in local:
                bare = local["bare_median_s"]
            self.say(f"  w{width} {size}² local: {fmt_s(local['median_s'])}, "
                     f"peak {fmt_mb(local['peak_bytes'])} (load {load})")
            grpc_res, server_peak = None, None
            if not args.skip_grpc and not (args.quick and size > 1024):
                group = ProcessGroup()
                try:
                    port = free_port()
                    with open(self.log, "ab") as log_file:
                        server = group.start(
                            "tfserving",
                            [PYTHON, "-m", "tests.tfserving_server", "--models",
                             str(serving_dir / "models"), "--port", str(port)],
                            cwd=BASE_DIR, env=env, stdout=log_file, stderr=log_file,
                        )
                    wait_until(lambda: _port_open(port), timeout=120, what="TF Serving stand-in",
                               procs=[server])
                    genv = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="tfserving",
                                    TFSERVING_ADDRESS=f"127.0.0.1:{port}")
                    grpc_res = run_child(child, genv, 900, self.log)
                    server_peak = vm_hwm(server.pid)
                finally:
                    group.stop()
                self.say(f"  w{width} {size}² gRPC: {fmt_s(grpc_res['median_s'])}, client peak "
                         f"{fmt_mb(grpc_res['peak_bytes'])}, server peak {fmt_mb(server_peak)}")
            if size == 4096:
                peak_4096 = {"local": local["peak_bytes"]}
                if grpc_res:
                    peak_4096["gRPC client"] = grpc_res["peak_bytes"]
                    peak_4096["gRPC server"] = server_peak
            rows.append([
                f"{size}²", runs, fmt_s(local["median_s"]), fmt_mb(local["peak_bytes"]),
                fmt_s(grpc_res["median_s"]) if grpc_res else "–",
                fmt_mb(grpc_res["peak_bytes"]) if grpc_res else "–", fmt_mb(server_peak),
                fmt_s(local["first_s"]), load,
            ])
        if bare is None and not args.skip_bare:
            env = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="local")
            bare = run_child(["_photo", "--size", "256", "--runs", "1", "--bare"], env, 900,
                             self.log)["bare_median_s"]
        self.bare[width] = bare
        table = md_table(
            ["photo", "runs", "local median", "local peak (VmHWM)", "gRPC median",
             "gRPC client peak", "gRPC server peak", "local warm-up (1st call, ≤1024²)",
             "load avg 1/5/15 min before"], rows)
        text = (f"### Per-image latency and peak memory, random weights, {self.arch(width)}"
                f"\n\n{table}\n\n"
                f"Bare model (SavedModel signature on a 1×1024×1024×3 batch, no tiling/pre/post): "
                f"**{fmt_s(bare)}** median.\n")
        self.sections.append(text)
        self.say(text)
        for where, peak in peak_4096.items():
            ok = peak < TARGET_PEAK_BYTES
            self.verdicts.append((f"4096² peak < 4 GB, w{width}, {where}",
                                  f"{fmt_mb(peak)}", "PASS" if ok else "FAIL"))

    # ---- 2 & 3. jobs through Celery
    def jobs(self, width: float, serving_dir: Path) -> None:
        args = self.args
        cores = os.cpu_count() or 1
        seq = self.job_stack(width, serving_dir, workers=1, threads=cores, mode="sequential",
                             size=1024, count=args.e2e_jobs, warmup=1)
        bare = seq["bare_median_s"]
        ratio = seq["e2e_median_s"] / bare
        ratio_min = min(seq["e2e"]) / min(seq["bare"])
        text = (f"### End-to-end job latency at 1024², random weights, {self.arch(width)}\n\n" + md_table(
            ["e2e median (enqueued→finished)", "of which queue wait", "of which task run",
             "bare model (same window)", "e2e / bare (medians)", "e2e / bare (fastest of each)",
             "bare model (section 1)", "jobs",
             "load avg before"],
            [[fmt_s(seq["e2e_median_s"]), fmt_s(seq["queue_median_s"]),
              fmt_s(seq["run_median_s"]), fmt_s(bare), f"{ratio:.2f}", f"{ratio_min:.2f}",
              fmt_s(self.bare.get(width)), args.e2e_jobs, seq["load"]]])
            + "\n\nThe bare model is timed in the driver between the jobs (MODEL_THREADS as "
              "the worker's), so both see the same load; the fastest-of-each ratio is the "
              f"least disturbed by other work. e2e samples: "
              f"{', '.join(fmt_s(x) for x in seq['e2e'])}; bare samples: "
              f"{', '.join(fmt_s(x) for x in seq['bare'])}.\n")
        self.sections.append(text)
        self.say(text)
        self.verdicts.append((f"e2e ≤ {TARGET_E2E_RATIO}× bare at 1024², w{width}",
                              f"{ratio:.2f}× (medians; fastest of each {ratio_min:.2f}×)",
                              "PASS" if ratio <= TARGET_E2E_RATIO else "FAIL"))
        if args.profile or ratio > TARGET_E2E_RATIO:
            env = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="local")
            prof = run_child(["_profile", "--size", "1024", "--runs", "3"], env, 600, self.log)
            rows = [[name, fmt_s(seconds)] for name, seconds in prof["stages"].items()]
            text = (f"### Where a 1024² job's time goes (in-process, width {width}, "
                    f"median of 3, load {load_avg()})\n\n" + md_table(["stage", "median"], rows)
                    + "\n")
            self.sections.append(text)
            self.say(text)

        half = max(1, cores // 2)
        # A B C A: the one-worker baseline is run twice to show drift; C (one worker,
        # MODEL_THREADS=cores/2) separates process scaling from TensorFlow's own threading.
        plan = [(1, cores), (2, half), (1, half)] + ([] if args.quick else [(1, cores)])
        runs = [(workers, threads, self.job_stack(
                    width, serving_dir, workers=workers, threads=threads, mode="batch",
                    size=512, count=args.jobs, warmup=2 * workers))
                for workers, threads in plan]
        one = statistics.mean(r["jobs_per_min"] for w, t, r in runs if w == 1 and t == cores)
        one_half = statistics.mean(r["jobs_per_min"] for w, t, r in runs if w == 1 and t == half)
        two = statistics.mean(r["jobs_per_min"] for w, _, r in runs if w == 2)
        scaling = two / one
        rows = [[f"{w} worker process{'es' if w > 1 else ''} (--concurrency 1 each), "
                 f"MODEL_THREADS={t}", r["count"], fmt_s(r["makespan_s"]),
                 f"{r['jobs_per_min']:.1f}", fmt_s(r["run_median_s"]),
                 f"{r['worker_cpu_s_per_job']:.2f} s",
                 f"{100 * r['machine_busy']:.0f} %" if r["machine_busy"] is not None else "–",
                 r["load"]] for w, t, r in runs]
        text = (f"### Throughput at 512², random weights, {self.arch(width)} ({cores} CPU cores)\n\n" + md_table(
            ["workers", "jobs", "makespan", "jobs/min", "task run median",
             "worker CPU per job", "machine CPU busy during run", "load avg before"], rows)
            + f"\n\nTwo workers / one (MODEL_THREADS={cores}): **{scaling:.2f}×** (one-worker "
              f"rate averaged over its runs); two workers / one at the same MODEL_THREADS={half}: "
              f"{two / one_half:.2f}×; one worker, {cores} threads / {half}: "
              f"{one / one_half:.2f}× (TensorFlow's own speed-up from more threads, which "
              f"bounds the first ratio by {cores}/that). Worker CPU per job counts every process of the workers (pool children "
              f"included); machine busy is all CPUs, other work included.\n")
        self.sections.append(text)
        self.say(text)
        self.verdicts.append((f"2 workers ≥ {TARGET_SCALING}× 1 worker, w{width}",
                              f"{scaling:.2f}×", "PASS" if scaling >= TARGET_SCALING else "FAIL"))

    def job_stack(self, width, serving_dir, *, workers, threads, mode, size, count, warmup):
        from prisma_site.devstack import ProcessGroup, free_port, start_redis

        var_dir = Path(tempfile.mkdtemp(
            prefix=f"jobs-{mode}-{workers}w-{threads}t-w{width}-", dir=self.tmp))
        env = base_env(serving_dir, var_dir, MODEL_BACKEND="local", MODEL_THREADS=threads)
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR,
                       env=env, check=True)
        group = ProcessGroup()
        try:
            env["REDIS_URL"] = start_redis(group, port=free_port(), data_dir=None)
            for i in range(workers):
                log = open(var_dir / f"worker{i}.log", "wb")
                group.start(
                    f"worker{i}",
                    [PYTHON, "-m", "celery", "-A", "prisma_site", "worker", "--pool", "prefork",
                     "--concurrency", "1", "-Q", "celery", "--loglevel", "INFO",
                     "--hostname", f"bench{i}-{os.getpid()}@%h", "--without-heartbeat",
                     "--without-gossip", "--without-mingle"],
                    cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                )
                log.close()
            env["BENCH_WORKER_PGIDS"] = ",".join(str(proc.pid) for name, proc in group.procs
                                                 if name.startswith("worker"))
            load = load_avg()
            result = run_child(
                ["_jobs", "--mode", mode, "--size", str(size), "--count", str(count),
                 "--warmup", str(warmup), "--timeout", "600"],
                env, 900, self.log)
            exited = group.first_exited()
            if exited:
                raise RuntimeError(f"{exited[0]} exited with {exited[1]}")
        finally:
            group.stop()
        result["load"] = load
        logs = "".join((var_dir / f"worker{i}.log").read_text(errors="replace")
                       for i in range(workers))
        if "MODEL_THREADS" in logs and "ignored" in logs:
            self.say("  WARNING: a worker logged that MODEL_THREADS was ignored")
        self.say(f"  jobs {mode} {workers}w threads={threads}: {json.dumps(result)}")
        return result

    def run(self) -> int:
        args = self.args
        self.bare: dict[float, float] = {}
        started = time.monotonic()
        header = (f"# Stylize benchmark\n\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
                  f"{os.cpu_count()} CPU cores, load average at start {load_avg()} "
                  f"(other work on this machine inflates and jitters the numbers). "
                  + ("" if args.skip_shipped or args.stroke_only else
                     f"Shipped styles: the latest version of each model in "
                     f"{Path(args.serving_dir).resolve() / 'models'}. ")
                  + ("" if args.shipped_only or args.stroke_only else
                     f"Other sections: TransformNet with random weights (seed 0), "
                     f"{args.blocks} residual blocks, {args.output_kernel}×{args.output_kernel} "
                     f"output conv, width {','.join(str(w) for w in args.widths)}. ")
                  + f"STYLIZE_TILE_SIZE "
                  f"{os.environ.get('STYLIZE_TILE_SIZE', 'from settings (default 1088)')}. Options: {' '.join(sys.argv[1:]) or '(defaults)'}\n")
        self.say(header)
        try:
            if not (args.skip_shipped or args.stroke_only):
                self.shipped()
            if not (args.skip_shipped or args.skip_stroke):
                self.strokes()
            for width in ([] if args.shipped_only or args.stroke_only else args.widths):
                serving_dir = self.export(width)
                if args.sizes:
                    self.sizes(width, serving_dir)
                if not args.skip_jobs and width in args.job_widths:
                    self.jobs(width, serving_dir)
        finally:
            elapsed = time.monotonic() - started
            verdicts = md_table(["target", "measured", "result"],
                                [list(v) for v in self.verdicts]) if self.verdicts else "(none)"
            report = "\n".join([header, *self.sections, "### Targets\n", verdicts,
                                f"\nLoad average at end {load_avg()}; bench took "
                                f"{elapsed:.0f} s.\n"])
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(report)
            self.say("### Targets\n\n" + verdicts)
            self.say(f"\nWrote {out} ({elapsed:.0f} s). Logs: {self.log}")
            if not args.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
        return 0


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("_"):
        sub = argparse.ArgumentParser()
        sub.add_argument("command")
        sub.add_argument("--models-dir")
        sub.add_argument("--width", type=float)
        sub.add_argument("--blocks", type=int, default=3)
        sub.add_argument("--output-kernel", type=int, default=3)
        sub.add_argument("--model", default=MODEL_NAME)
        sub.add_argument("--version", type=int, default=1)
        sub.add_argument("--slot", type=int, default=None)
        sub.add_argument("--num-styles", type=int, default=None)
        sub.add_argument("--size", type=int)
        sub.add_argument("--runs", type=int, default=3)
        sub.add_argument("--bare", action="store_true")
        sub.add_argument("--mode")
        sub.add_argument("--count", type=int)
        sub.add_argument("--warmup", type=int, default=1)
        sub.add_argument("--timeout", type=float, default=600)
        child = sub.parse_args(argv)
        {"_export": child_export, "_photo": child_photo, "_profile": child_profile,
         "_jobs": child_jobs, "_stroke": child_stroke}[child.command](child)
        return 0

    parser = argparse.ArgumentParser(prog="python -m bench.stylize_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=_ints, default=None,
                        help="photo sides, default 256,512,1024,2048,4096 (--quick: 1024,4096, gRPC only ≤1024²)")
    parser.add_argument("--width", dest="widths", type=_floats, default=None,
                        help="TransformNet widths of the random-weights model, comma-separated "
                             "(default 0.5; 0.5,1.0 takes ~3x longer)")
    parser.add_argument("--blocks", type=int, default=3,
                        help="residual blocks of the random-weights model (default 3, as shipped)")
    parser.add_argument("--output-kernel", type=int, default=3,
                        help="output conv kernel of the random-weights model (default 3, as shipped)")
    shipped = parser.add_mutually_exclusive_group()
    shipped.add_argument("--skip-shipped", action="store_true",
                         help="skip the shipped-styles-at-1024² section")
    shipped.add_argument("--shipped-only", action="store_true",
                         help="run only the shipped-styles-at-1024² section (and stroke size)")
    shipped.add_argument("--stroke-only", action="store_true",
                         help="run only the stroke-size-at-1024² section")
    parser.add_argument("--skip-stroke", action="store_true",
                        help="skip the stroke-size section")
    parser.add_argument("--every-slot", action="store_true",
                        help="time every slot of a shipped bank (default: its first slot)")
    parser.add_argument("--serving-dir", default=str(SERVING_DIR),
                        help="where the shipped styles are (default: the repository's serving/)")
    parser.add_argument("--job-width", dest="job_widths", type=_floats, default=None,
                        help="widths to run the Celery job benchmarks for (default: the first)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs per size ≤1024² and per shipped style")
    parser.add_argument("--jobs", type=int, default=None, help="jobs for the throughput test")
    parser.add_argument("--e2e-jobs", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer sizes, widths and runs")
    parser.add_argument("--skip-jobs", action="store_true")
    parser.add_argument("--skip-grpc", action="store_true")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="always profile a job's stages (default: only when e2e misses)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    parser.add_argument("--out", default=str(BASE_DIR / "var" / "bench" / "results.md"))
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [1024, 4096] if args.quick else [256, 512, 1024, 2048, 4096]
    if args.widths is None:
        args.widths = [0.5]
    if args.job_widths is None:
        args.job_widths = args.widths[:1]
    if args.runs is None:
        args.runs = 2 if args.quick else 3
    if args.jobs is None:
        args.jobs = 6 if args.quick else 12
    if args.e2e_jobs is None:
        args.e2e_jobs = 3 if args.quick else 5
    # SIGTERM (and SIGINT, which background jobs ignore) unwind through the finally
    # blocks, so every process started here is stopped.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, interrupt)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
