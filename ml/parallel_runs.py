"""Several unrelated training runs at once on one machine (a GPU, usually), one process each.

    python -m ml.parallel_runs PLAN.json --out runs/ [--max-seconds 400] [--parallel 16]

``PLAN.json`` names the runs and their settings (any ``TrainConfig`` field)::

    {"defaults": {"data_dir": "photos/train", "loss_network": "vgg16", "width": 0.5},
     "runs": [{"name": "starry_night", "painting": "starry_night.jpg",
               "content_weight": 6.0}, ...]}

Each run trains in its own process into ``OUT/<name>/`` (the ``ml.train`` layout:
``transform_net.keras``, checkpoints, samples) and logs to ``OUT/<name>/train.log``.
Small networks leave a big GPU mostly idle, so several processes share it; on JAX
each process takes a fixed share (90% / ``--parallel``) of the card's memory.
``--max-seconds`` caps every run's training time (it stops with a checkpoint), so a
whole plan fits a fixed time budget. Prints one summary line per run and exits
non-zero if any run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULT_PREFIX = "TRAIN-RESULT "


def load_plan(path) -> list[dict]:
    """The runs of a plan file, each a complete ``TrainConfig`` dict plus its name."""
    from ml.config import FIELD_NAMES, TrainConfig
    from ml.model import TransformNet

    plan = json.loads(Path(path).read_text())
    defaults = plan.get("defaults", {})
    fields = FIELD_NAMES
    runs, names = [], set()
    for entry in plan["runs"]:
        run = {**defaults, **entry}
        name = run.pop("name", None)
        if not isinstance(name, str) or not name or "/" in name or name in names:
            raise ValueError(f"every run needs a unique name without '/': {entry}")
        names.add(name)
        unknown = set(run) - fields
        if unknown:
            raise ValueError(f"run {name}: unknown settings {sorted(unknown)}")
        if not run.get("painting") and not run.get("paintings"):
            raise ValueError(f"run {name}: painting (the painting) or paintings (a bank) "
                             "is required")
        run.setdefault("out_dir", "")  # filled in by main()
        config = TrainConfig.from_preset(**run)  # fail early, before any process starts
        TransformNet(width=config.width, num_residual_blocks=config.num_residual_blocks,
                     output_kernel_size=config.output_kernel_size)
        runs.append({"name": name, **run})
    return runs


def child_env(parallel: int) -> dict[str, str]:
    env = dict(os.environ)
    # JAX would otherwise preallocate 75% of the GPU in the first process; growing on
    # demand instead ran 16 processes out of an H200's memory (cuDNN autotuning takes
    # what it finds), so each process gets a fixed share of the card.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / max(1, parallel):.3f}")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def train_one(run: dict, log_every: int = 250) -> None:
    """Child process: one run, a progress line every ``log_every`` steps, a result line."""
    from ml.config import TrainConfig
    from ml.train import train

    config = TrainConfig.from_preset(**{key: value for key, value in run.items() if key != "name"})

    def report(progress):
        if progress.step % log_every == 0:
            print(f"step {progress.step} {progress.seconds:.0f}s {progress.losses}", flush=True)

    result = train(config, on_progress=report)
    print(RESULT_PREFIX + json.dumps({
        "name": run["name"], "steps": result.steps, "seconds": round(result.seconds, 1),
        "final_losses": result.final_losses, "mean_losses": result.mean_losses,
    }), flush=True)


def run_all(runs: list[dict], out: Path, parallel: int) -> list[dict]:
    """Start up to ``parallel`` runs at a time; the summary of each (ok or failed)."""
    out.mkdir(parents=True, exist_ok=True)
    pending = list(runs)
    active: list[tuple[dict, subprocess.Popen, Path, float]] = []
    summaries = []
    try:
        _run_loop(pending, active, summaries, out, parallel)
    finally:  # an interrupted plan leaves no training process behind on the GPU
        for _, process, _, _ in active:
            process.terminate()
        for _, process, _, _ in active:
            process.wait()
    return summaries


def _run_loop(pending, active, summaries, out: Path, parallel: int) -> None:
    while pending or active:
        while pending and len(active) < parallel:
            run = pending.pop(0)
            run_dir = out / run["name"]
            run_dir.mkdir(parents=True, exist_ok=True)
            run = {**run, "out_dir": str(run_dir), "verbose": 0}
            log = run_dir / "train.log"
            with open(log, "w") as stream:
                process = subprocess.Popen(
                    [sys.executable, "-m", "ml.parallel_runs", "--one", json.dumps(run)],
                    stdout=stream, stderr=subprocess.STDOUT, env=child_env(parallel),
                )
            active.append((run, process, log, time.monotonic()))
        time.sleep(1.0)
        for item in list(active):
            run, process, log, started = item
            if process.poll() is None:
                continue
            active.remove(item)
            elapsed = time.monotonic() - started
            summaries.append(_summary(run["name"], process.returncode, log, elapsed))
            print(json.dumps(summaries[-1]), flush=True)


def _summary(name: str, returncode: int, log: Path, wall: float) -> dict:
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith(RESULT_PREFIX):
            return {**json.loads(line[len(RESULT_PREFIX):]), "ok": returncode == 0,
                    "wall_seconds": round(wall, 1)}
    return {"name": name, "ok": False, "returncode": returncode, "wall_seconds": round(wall, 1),
            "log_tail": lines[-15:]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ml.parallel_runs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("plan", nargs="?", help="plan JSON file")
    parser.add_argument("--out", help="folder for the runs")
    parser.add_argument("--max-seconds", type=float, help="training time cap for every run")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args(argv)
    if args.one:
        train_one(json.loads(args.one))
        return
    if not args.plan or not args.out:
        parser.error("PLAN and --out are required")
    if args.max_seconds is not None and not args.max_seconds > 0:
        parser.error("--max-seconds must be > 0")
    runs = load_plan(args.plan)
    if args.max_seconds is not None:
        runs = [{**run, "max_seconds": args.max_seconds} for run in runs]
    summaries = run_all(runs, Path(args.out), max(1, args.parallel))
    failed = [summary["name"] for summary in summaries if not summary["ok"]]
    if failed:
        raise SystemExit(f"failed runs: {', '.join(failed)}")


if __name__ == "__main__":
    main()
