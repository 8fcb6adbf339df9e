"""Where and how the bench's processes run: paths, a child's environment, children
started in their own session and read through one result line, and readings from
``/proc`` (peak memory, CPU seconds, load)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
MODEL_NAME = "bench"  # the random-weights model, models/bench/1/ of a temporary serving dir
RESULT_PREFIX = "BENCH-RESULT "
SERVING_DIR = BASE_DIR / "serving"  # the shipped styles (read-only here)


def vm_hwm(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def emit(result: dict) -> None:
    """A child's result: one stdout line, ``RESULT_PREFIX`` + JSON."""
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
    return proc.returncode, result_line(out.decode(), prefix)


def result_line(out: str, prefix: str) -> dict | None:
    """The JSON after the last line of ``out`` starting with ``prefix``; None if none."""
    results = [line[len(prefix):] for line in out.splitlines() if line.startswith(prefix)]
    return json.loads(results[-1]) if results else None


def run_child(args: list[str], env: dict, timeout: float, log: Path) -> dict:
    """Run ``python -m bench.stylize_bench <args>`` in its own session; its result dict.
    Raises ``RuntimeError`` (naming the log) on a timeout, a failure or no result."""
    try:
        status, result = run_for_result([PYTHON, "-m", "bench.stylize_bench", *args], cwd=BASE_DIR,
                                        env=env, timeout=timeout, log=log, prefix=RESULT_PREFIX)
    except TimeoutError:
        raise RuntimeError(f"{args[0]} timed out after {timeout:.0f} s (log: {log})") from None
    if status != 0 or result is None:
        raise RuntimeError(f"{' '.join(args)} failed with status {status} (log: {log})")
    return result


def base_env(serving_dir: Path, var_dir: Path, **extra) -> dict:
    """A child's environment: this one, with Django's settings pointed at ``serving_dir``
    and at a scratch ``var_dir`` (SQLite, media), plus ``extra``; MODEL_THREADS unset
    unless given."""
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
    return ["--model", style.model, "--version", str(style.version),
            "--slot", str(style.slot), "--num-styles", str(style.num_styles)]


def load_avg() -> str:
    """The 1, 5 and 15 minute load averages, ``"0.52 0.61 0.70"``."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def group_cpu_seconds(pgids: list[int]) -> float:
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


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
