"""The recipe's 200-step check on every painting: does a short run keep the photo?

    python -m bench.check_recipe [--run-dir training/bank] [--styles starry-night,...]
        [--steps 200] [--photos var/photos/train] [--holdout var/photos/holdout]
        [--vgg16-weights var/vgg16_imagenet_notop.weights.h5] [--out var/bench/check-recipe]

``make check-recipe`` runs it (a benchmark, not part of ``make test``). For each painting
of the bank's plan (``training/bank/styles/<slug>/``) it trains one lone network (a bank
of the identity and the painting)
the way ``manage.py train_style`` does with every default (``ml.config.TrainConfig``'s
default preset and recipe; batch 4, 128 px crops, ImageNet VGG16) for ``--steps`` steps,
with the painting's own settings from its ``style.json`` (``training.style_scale``
multiplies the style weight), scores it on the held-out photos with the one measure
(``ml.quality.evaluate_style``) and prints a table beside the peer's numbers
(``training/bank/peer.json``). A painting holds when luminance >= 0.6, edges >= 0.45 and
no dark frame: ``border`` is how much darker the results' outer 4 px are than the 8 px
inside them, less the same for the photos, in levels (a dark frame shows from about 10).
Contact sheets (photos above, results below) go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ml.images import LUMA_WEIGHTS

LUMINANCE_FLOOR = 0.6
EDGE_FLOOR = 0.45
BORDER_LIMIT = 10.0  # levels
FRAME, BAND = 4, 8  # px


def border_darkening(photo: np.ndarray, result: np.ndarray) -> float:
    """Levels by which ``result``'s outer frame is darker than the band inside it, beyond
    what ``photo``'s own frame is (both uint8 HxWx3 of one size)."""
    def drop(image):
        luma = image.astype(np.float64) @ np.array(LUMA_WEIGHTS)
        inner = np.zeros(luma.shape, bool)
        inner[FRAME:-FRAME, FRAME:-FRAME] = True
        band = inner.copy()
        band[FRAME + BAND:-FRAME - BAND, FRAME + BAND:-FRAME - BAND] = False
        return float(luma[band].mean() - luma[~inner].mean())

    return drop(result) - drop(photo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check_recipe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("training/bank"))
    parser.add_argument("--styles", default="", help="comma-separated slugs (default: all)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--photos", type=Path, default=Path("var/photos/train"))
    parser.add_argument("--holdout", type=Path, default=Path("var/photos/holdout"))
    parser.add_argument("--vgg16-weights", type=Path,
                        default=Path("var/vgg16_imagenet_notop.weights.h5"))
    parser.add_argument("--out", type=Path, default=Path("var/bench/check-recipe"))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig field for every run (trying a recipe), "
                             "e.g. --set content_weight=6")
    args = parser.parse_args(argv)

    from ml.bank import one_hot
    from ml.bank_run import load_plan
    from ml.config import TrainConfig
    from ml.evaluate import contact_sheet
    from ml.losses import DEFAULT_LOSS_WEIGHTS, build_loss_network
    from ml.quality import QUALITY_LAYERS, evaluate_style, fit_longer_side
    from ml.train import train

    plan = load_plan(args.run_dir)
    wanted = [slug for slug in args.styles.split(",") if slug]
    styles = [s for s in plan.styles if not wanted or s.slug in wanted]
    peer = plan.peer_scores()
    overrides = {}
    for item in args.set:
        field, _, value = item.partition("=")
        overrides[field] = json.loads(value)
    network = build_loss_network("vgg16", str(args.vgg16_weights), layers=list(QUALITY_LAYERS))
    args.out.mkdir(parents=True, exist_ok=True)
    rows, started = [], time.monotonic()
    for style in styles:
        base = TrainConfig.from_preset()
        style_weight = overrides.get("style_weight", base.style_weight
                                     or DEFAULT_LOSS_WEIGHTS[base.loss_network]["style_weight"])
        with tempfile.TemporaryDirectory(prefix="prisma-recipe-") as run_dir:
            config = TrainConfig.from_preset(**{
                "steps": args.steps, "size": 128, "batch": 4, **overrides,
                "painting": str(style.painting), "data_dir": str(args.photos),
                "out_dir": run_dir, "loss_weights": str(args.vgg16_weights), "verbose": 0,
                "style_weight": style_weight * style.style_scale})
            began = time.monotonic()
            result = train(config)
            seconds = time.monotonic() - began
        net, pairs = result.model, []
        # A lone painting trains a bank of the identity and itself: it paints in slot 1.
        painted = one_hot([1], net.num_styles)

        def stylize(photo, net=net, pairs=pairs, painted=painted):
            out = np.asarray(net(np.asarray(photo, np.float32)[None], painted))[0]
            pairs.append((photo, np.clip(np.round(out), 0, 255).astype(np.uint8)))
            return pairs[-1][1]

        report = evaluate_style(args.holdout, style.painting, network, stylize=stylize)
        border = float(np.mean([border_darkening(p, r) for p, r in pairs]))
        row = {"slug": style.slug, "seconds": round(seconds, 1),
               **{k: round(float(report[k]), 4) for k in
                  ("style_distance_ratio", "luminance_correlation", "edge_correlation")},
               "border": round(border, 1), "peer": peer.get(style.slug)}
        row["holds"] = (row["luminance_correlation"] >= LUMINANCE_FLOOR
                        and row["edge_correlation"] >= EDGE_FLOOR and border < BORDER_LIMIT)
        rows.append(row)
        contact_sheet([fit_longer_side(p, 256) for p, _ in pairs[:8]],
                      [fit_longer_side(r, 256) for _, r in pairs[:8]],
                      args.out / f"{style.slug}.png", thumb=256)
        print(line(row), flush=True)
    (args.out / "check-recipe.json").write_text(json.dumps(
        {"steps": args.steps, "overrides": overrides, "rows": rows}, indent=2) + "\n")
    print(f"\n{table(rows)}\n\n{sum(r['holds'] for r in rows)} of {len(rows)} hold "
          f"({time.monotonic() - started:.0f} s); contact sheets in {args.out}/")
    return 0 if all(row["holds"] for row in rows) else 1


def line(row: dict) -> str:
    return (f"  {row['slug']:22} ratio {row['style_distance_ratio']:.3f}  luminance "
            f"{row['luminance_correlation']:.2f}  edges {row['edge_correlation']:.2f}  border "
            f"{row['border']:+.1f}  {'holds' if row['holds'] else 'FAILS'}  ({row['seconds']} s)")


def table(rows: list[dict]) -> str:
    out = ["| painting | ratio | luminance | edges | border (levels) | peer ratio / lum / edges "
           "| holds |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        p = r["peer"] or {}
        peer = (f"{p['style_distance_ratio']:.3f} / {p['luminance_correlation']:.2f} / "
                f"{p['edge_correlation']:.2f}") if p else "–"
        out.append(f"| {r['slug']} | {r['style_distance_ratio']:.3f} | "
                   f"{r['luminance_correlation']:.2f} | {r['edge_correlation']:.2f} | "
                   f"{r['border']:+.1f} | {peer} | {'yes' if r['holds'] else '**no**'} |")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
