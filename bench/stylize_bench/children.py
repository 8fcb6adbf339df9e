"""The measurements themselves, each run as ``python -m bench.stylize_bench _<name>`` in
a fresh child process (the only code here that imports Django or TensorFlow), each
printing one result line (``processes.emit``). They call the product: the job
pipeline's stages (``stylize.services.stylizing``), ``stylize.services.jobs.job_create``
and ``ml.export.load_savedmodel_fn`` for the bare model."""

from __future__ import annotations

import argparse
import inspect
import io
import os
import statistics
import time
from pathlib import Path

from .processes import MODEL_NAME, emit, group_cpu_seconds, machine_cpu, vm_hwm


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
    """``make_photo`` as an upload would come: JPEG, quality 90."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(make_photo(size, seed)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bench_style(*, model: str, version: int, slot: int, num_styles: int,
                name: str, slug: str):
    """The unsaved Style row photo_stylize paints with, as registered: slot ``slot`` of
    the network's ``num_styles`` (``bank_index``, ``bank_slots``)."""
    from stylize.models import Style

    return Style(name=name, slug=slug, model_name=model, live_version=version,
                 bank_index=slot, bank_slots=num_styles)


def _django():
    import django

    django.setup()


def _child_style(args):
    """``bench_style`` of ``--model``/``--version``, ``--slot``/``--num-styles``."""
    return bench_style(model=args.model, version=args.version, slot=args.slot,
                       num_styles=args.num_styles, name=args.model, slug="bench")


def _bare_model(model: str, version: int):
    """``ml.export.load_savedmodel_fn`` of ``SERVING_DIR/models/<model>/<version>/``."""
    from ml.export import load_savedmodel_fn

    return load_savedmodel_fn(Path(os.environ["SERVING_DIR"]) / "models" / model / str(version))


def child_export(args) -> None:
    """A lone style's network (the identity and one style) with random weights (seed 0)
    exported as ``<--models-dir>/bench/``."""
    from ml.export import export_savedmodel

    version, path = export_savedmodel(_random_bank(args, 2), Path(args.models_dir) / MODEL_NAME,
                                      slots=_slots(["bench"]))
    emit({"version": version, "path": str(path)})


def child_photo(args) -> None:
    """One size through photo_stylize (local or tfserving backend), in a fresh process.

    The model is ``SERVING_DIR/models/<--model>/<--version>/`` (default: the random-weights
    ``bench/1`` export; the shipped-styles section points SERVING_DIR at serving/), its
    slot ``--slot`` of ``--num-styles``; the stroke is photo_stylize's default
    (``stylize.strokes.DEFAULT_STROKE``, in the result). ``--bare`` also times the loaded
    SavedModel alone on a 1×1024×1024×3 batch.
    """
    _django()
    from stylize.services.stylizing import photo_stylize
    from stylize.strokes import DEFAULT_STROKE

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
    result = {"size": args.size, "stroke": DEFAULT_STROKE, "first_s": first, "times": times,
              "median_s": statistics.median(times), "peak_bytes": vm_hwm()}
    if args.bare:
        stylize = _bare_model(args.model, args.version)
        batch = make_photo(1024)[None]
        from ml.bank import mix_weights

        weights = mix_weights(args.num_styles, args.slot)
        call = lambda: stylize(batch, weights)  # noqa: E731
        call()  # warm-up
        bare = []
        for _ in range(max(3, args.runs)):
            start = time.perf_counter()
            call()
            bare.append(time.perf_counter() - start)
        result["bare_times"] = bare
        result["bare_median_s"] = statistics.median(bare)
    emit(result)


def child_stroke(args) -> None:
    """A 1024² photo through photo_stylize at every stroke option, in one fresh process."""
    _django()
    from stylize.services.stylizing import photo_stylize
    from stylize.strokes import STROKE_WORKING_SIDES

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
    """job_run's stages on a JPEG of ``--size``², in-process, no Celery/DB: the worker's
    loader, ``photo_stylize`` with the job's defaults, the result's encoding."""
    _django()
    from django.conf import settings

    from stylize.imaging.encoding import encode_image
    from stylize.services.stylizing import photo_stylize, stored_photo_load
    from stylize.strokes import DEFAULT_STROKE

    data = photo_jpeg(args.size)
    style = _child_style(args)
    quality = inspect.signature(encode_image).parameters["quality"].default
    load = "stored_photo_load (header walk, JPEG decode)"
    paint = (f"photo_stylize (stroke {DEFAULT_STROKE}: working size, tiling, model, "
             f"postprocess at strength 1.0)")
    encode = f"encode_image (baseline JPEG, quality {quality})"
    stages: dict[str, list[float]] = {load: [], paint: [], encode: []}
    for i in range(args.runs + 1):  # the first is a warm-up
        start = time.perf_counter()
        photo = stored_photo_load(data, max_side=args.size,
                                  max_decode_bytes=settings.STYLIZE_DECODE_MAX_BYTES)
        loaded = time.perf_counter()
        result = photo_stylize(photo=photo, style=style)
        painted = time.perf_counter()
        encode_image(result, format="JPEG")
        if i:
            stages[load].append(loaded - start)
            stages[paint].append(painted - loaded)
            stages[encode].append(time.perf_counter() - painted)
    emit({"size": args.size, "stages": {k: statistics.median(v) for k, v in stages.items()}})


def child_jobs(args) -> None:
    """Create jobs through job_create and wait until they all succeed."""
    _django()
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.db import transaction

    from stylize.models import Style, StyleJob
    from stylize.services.jobs import job_create

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"email": "bench@example.com"}
    )
    style, _ = Style.objects.get_or_create(
        slug="bench",
        defaults=dict(name="Bench", model_name=MODEL_NAME, live_version=1, bank_index=1,
                      bank_slots=2, status=Style.Status.READY),
    )
    data = photo_jpeg(args.size)

    def submit(count):
        ids = []
        for i in range(count):
            with transaction.atomic():
                job = job_create(
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
        bare_model = BareModel(args.size)
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
        cpu_before, machine_before = group_cpu_seconds(pgids), machine_cpu()
        start = time.perf_counter()
        jobs = wait(submit(args.count))
        cpu_used = group_cpu_seconds(pgids) - cpu_before
        machine_after = machine_cpu()
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


class BareModel:
    """The random-weights SavedModel (``load_savedmodel_fn``) on a 1×size×size×3 batch,
    nothing else, with MODEL_THREADS applied as the worker applies it."""

    def __init__(self, size: int):
        from stylize.backends.local import limit_tf_threads

        limit_tf_threads()
        from ml.bank import mix_weights

        stylize = _bare_model(MODEL_NAME, 1)
        batch = make_photo(size)[None]
        weights = mix_weights(2, 1)  # the lone style of the random-weights network
        self.call = lambda: stylize(batch, weights)
        self.call()  # warm-up

    def times(self, runs: int) -> list[float]:
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            self.call()
            out.append(time.perf_counter() - start)
        return out


# --------------------------------------------------------------------------- previews

#: How often the upload page polls a preview while it is painted (previews.js FAST_MS).
PREVIEW_POLL_S = 0.25
#: The photo a preview grid is timed with: a phone's 12 MP photo (4032×3024 JPEG).
PREVIEW_PHOTO = (4032, 3024)


def photo_jpeg_sized(width: int, height: int, seed: int = 0) -> bytes:
    """``make_photo`` brought to ``width``×``height`` (bicubic) as a JPEG at quality 90."""
    from PIL import Image

    side = max(width, height) // 4
    small = Image.fromarray(make_photo(side, seed)).crop((0, 0, width // 4, height // 4))
    buffer = io.BytesIO()
    small.resize((width, height), Image.Resampling.BICUBIC).save(buffer, format="JPEG",
                                                                  quality=90)
    return buffer.getvalue()


def _random_bank(args, num_styles: int, seed: int = 0):
    """A TransformNet bank of the options' architecture, every style's norms random."""
    import keras
    import numpy as np

    from ml.bank import style_norms
    from ml.model import TransformNet

    keras.utils.set_random_seed(seed)
    model = TransformNet(width=args.width, num_residual_blocks=args.blocks,
                         output_kernel_size=args.output_kernel, num_styles=num_styles)
    model.build((None, None, None, 3))
    rng = np.random.default_rng(seed)
    for norm in style_norms(model):
        norm.set_weights([rng.normal(1.0, 0.3, w.shape).astype("float32")
                          for w in norm.get_weights()])
    return model


def child_export_bank(args) -> None:
    """A bank of ``--count`` styles (plus the identity slot) with random weights, the
    options' architecture, exported as ``<--models-dir>/<--model>/``."""
    from ml.export import export_savedmodel

    model = _random_bank(args, args.count + 1)
    slots = _slots([f"bench-{i}" for i in range(1, args.count + 1)])
    version, path = export_savedmodel(model, Path(args.models_dir) / args.model, slots=slots)
    emit({"version": version, "path": str(path)})


def _slots(slugs: list[str]) -> list[dict]:
    """``slots.json``'s slots of a network painting ``slugs`` after the identity."""
    return [{"slug": None, "identity": True}] + [{"slug": slug} for slug in slugs]


def child_export_lone(args) -> None:
    """``--count`` networks of one style each (the identity and the style) with random
    weights (seeds 1…), the options' architecture, exported as
    ``<--models-dir>/bench_01/`` …"""
    from ml.export import export_savedmodel

    names = []
    for i in range(1, args.count + 1):
        export_savedmodel(_random_bank(args, 2, seed=i), Path(args.models_dir) / f"bench_{i:02d}",
                          slots=_slots([f"bench-{i:02d}"]))
        names.append(f"bench_{i:02d}")
    emit({"models": names})


def child_register(args) -> None:
    """The offered styles of a preview bench stack: ``--register shipped`` (every style
    under SERVING_DIR, as ``make run`` registers them), ``bank`` (``--count`` slots of the
    bank ``--model``) or ``lone`` (slot 1 of each of ``bench_01`` … ``bench_<--count>``)."""
    _django()
    from django.core.files.base import ContentFile
    from django.utils import timezone
    from PIL import Image

    from stylize.models import Style
    from stylize.services.styles import styles_register_shipped

    painting = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 80, 40)).save(painting, format="PNG")
    if args.register == "shipped":
        styles = styles_register_shipped(serving_dir=Path(os.environ["SERVING_DIR"]))
    else:
        styles = []
        for i in range(1, args.count + 1):
            bank = args.register == "bank"
            styles.append(Style.objects.create(
                name=f"Bench {i:02d}", slug=f"bench-{i:02d}",
                model_name=args.model if bank else f"bench_{i:02d}",
                bank_index=i if bank else 1, bank_slots=args.count + 1 if bank else 2,
                live_version=1, status=Style.Status.READY, published_at=timezone.now(),
                painting=ContentFile(painting.getvalue(), name="painting.png")))
    emit({"styles": [style.slug for style in styles],
          "models": sorted({style.model_name for style in styles})})


def child_previews(args) -> None:
    """Preview grids as the upload page makes them, timed: ``POST /api/v1/previews/``
    with a 12 MP JPEG (through Django's request handling, in this process), polled every
    ``PREVIEW_POLL_S`` until done, then every painting fetched; the previews worker of
    the stack paints them. ``--warmup`` grids first, then ``--runs`` timed ones."""
    _django()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from stylize.models import Preview

    user, _ = get_user_model().objects.get_or_create(
        username="bench-previews", defaults={"email": "bench-previews@example.com"})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    data = photo_jpeg_sized(*PREVIEW_PHOTO)
    grids = []
    for run in range(args.warmup + args.runs):
        start = time.perf_counter()
        response = client.post("/api/v1/previews/", {
            "image": SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")})
        uploaded = time.perf_counter() - start
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/v1/previews/: {response.status_code} "
                               f"{response.content[:300]!r}")
        preview_id = response.json()["id"]
        deadline = start + args.timeout
        while True:
            preview = client.get(f"/api/v1/previews/{preview_id}/").json()
            if preview["done"] or time.perf_counter() > deadline:
                break
            time.sleep(PREVIEW_POLL_S)
        polled = time.perf_counter() - start
        for row in preview["styles"]:
            if row["image_url"]:
                b"".join(client.get(row["image_url"]).streaming_content)
        shown = time.perf_counter() - start
        failed = [f"{row['style']}: {row['error']}" for row in preview["styles"]
                  if row["status"] != "done"]
        if failed:
            raise RuntimeError(f"preview styles not painted: {failed[:3]}")
        row = Preview.objects.get(pk=preview_id)
        last = max(image.updated_at for image in row.images.all())
        if run >= args.warmup:
            grids.append({"upload_s": uploaded, "done_s": polled, "shown_s": shown,
                          "worker_s": (last - row.created_at).total_seconds(),
                          "styles": len(preview["styles"])})
    emit({"grids": grids, "photo": list(PREVIEW_PHOTO), "photo_bytes": len(data),
          "shown_median_s": statistics.median(g["shown_s"] for g in grids),
          "worker_median_s": statistics.median(g["worker_s"] for g in grids),
          "upload_median_s": statistics.median(g["upload_s"] for g in grids)})


CHILDREN = {"_export": child_export, "_photo": child_photo, "_profile": child_profile,
            "_jobs": child_jobs, "_stroke": child_stroke, "_export_bank": child_export_bank,
            "_export_lone": child_export_lone, "_register": child_register,
            "_previews": child_previews}


def child_main(argv: list[str]) -> int:
    """Run the child ``argv[0]`` (a key of ``CHILDREN``) with the options after it."""
    sub = argparse.ArgumentParser()
    sub.add_argument("command", choices=CHILDREN)
    sub.add_argument("--models-dir")
    sub.add_argument("--width", type=float)
    sub.add_argument("--blocks", type=int, default=3)
    sub.add_argument("--output-kernel", type=int, default=3)
    sub.add_argument("--model", default=MODEL_NAME)
    sub.add_argument("--version", type=int, default=1)
    sub.add_argument("--slot", type=int, default=1)
    sub.add_argument("--num-styles", type=int, default=2)
    sub.add_argument("--size", type=int)
    sub.add_argument("--runs", type=int, default=3)
    sub.add_argument("--bare", action="store_true")
    sub.add_argument("--mode")
    sub.add_argument("--count", type=int)
    sub.add_argument("--warmup", type=int, default=1)
    sub.add_argument("--timeout", type=float, default=600)
    sub.add_argument("--register", choices=["shipped", "bank", "lone"])
    child = sub.parse_args(argv)
    CHILDREN[child.command](child)
    return 0
