"""The shipped bank's long training run, resumable from what is committed to the repository.

    python -m ml.bank_run [--run-dir training/bank] [--max-seconds S]
        [--photos var/photos/train] [--holdout var/photos/holdout]
        [--loss-weights var/vgg16_imagenet_notop.weights.h5] [--verbose 0|1|2]
    python -m ml.bank_run --status          # the latest and the best held-out scores

``make train-bank`` runs it. A CPU session gives the run an hour or two, so one run
spans many sessions and machines: it resumes from the newest checkpoint in the run
folder, which is tracked in git, stops cleanly at ``--max-seconds`` with a checkpoint,
and the session commits that folder before it ends (``docs/design/bank-run.md``).

The run folder (``training/bank/``)::

    plan.json         the bank's name, its styles in slot order (slot 1, 2, ...; slot 0 is
                      the identity), score_every, and the ml.config.TrainConfig settings
    styles/<slug>/    painting + style.json (name, description, source, licence, and the
                      painting's own training settings: "training": {"style_scale": 1.0})
    peer.json         optional: the peer's held-out scores per slug (make bench-quality),
                      which the score below is measured against
    run/              ml.train's run folder: checkpoints/ (the latest: net weights, Adam
                      state, step; the data order follows from seed and step), config.json;
                      logs/, samples/ and transform_net.keras are not tracked
    run/scores.jsonl  every style's held-out scores every score_every steps
    run/best/         best.json: each style's best step by :func:`style_score` and its
                      scores, and the whole bank's (the lowest mean score, under
                      "(bank)"); step-N.weights.h5: the snapshots best.json names, no others

Each style's best checkpoint is kept by held-out score, never simply the last: later
checkpoints of a long run have lost the photo's light and edges with no gain in style.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ml.checkpoints import TrainingDiverged, write_json
from ml.images import LUMA_WEIGHTS
from ml.losses import DARK_SPOT, LIGHT_PHOTO

__all__ = [
    "BankStyle",
    "BankRunPlan",
    "BestSnapshots",
    "HeldOutScores",
    "bank_config",
    "load_plan",
    "style_score",
    "main",
]

DEFAULT_RUN_DIR = Path("training/bank")
PLAN_FILE = "plan.json"
PEER_FILE = "peer.json"
RUN_SUBDIR = "run"
SCORES_FILE = "scores.jsonl"
BEST_DIR = "best"
BEST_FILE = "best.json"

#: A style keeps the photo when its held-out luminance and edge correlations reach these
#: (the recipe's floor); against the peer, the peer's own numbers when they are higher.
LUMINANCE_FLOOR = 0.6
EDGE_FLOOR = 0.45
#: Score units lost per unit of correlation under its floor (0.1 under costs 1.0).
SHAPE_PENALTY = 10.0
#: Score units lost per per cent of a result's pixels that are dark spots
#: (:func:`dark_spots`): black blobs barely move the correlations but spoil a picture.
DARK_SPOT_PENALTY = 1.0
#: A style ships only with at most this per cent of dark spots (``ml.bank_ship``): a
#: few pixels of a photo's own black shadows, not a blob.
DARK_SPOT_LIMIT = 0.1
#: A dark spot is a near-black patch at least this many pixels square (at the 384 px
#: of the held-out scoring): a blob, wider than a stroke (docs/design/training.md).
SPOT_SIDE = 5
#: Where a photo's luminance (averaged over :data:`SPOT_SIDE` px square) is under this
#: share of its surroundings' (:data:`SHADE_SURROUND` px square), the photo itself is
#: darker there: a letter, a stripe, a fruit's rind, which a dark painting may deepen to
#: black. No dark spot is counted there (docs/design/training.md, "Dark spots").
SHADE_SHARE = 0.8
SHADE_SURROUND = 31
#: The version of the rules that count dark spots and droplets: scores taken under
#: another version cannot be compared (:func:`measure_of`). 2: shades of the photo
#: (:data:`SHADE_SHARE`) are no dark spots.
SPOT_RULES = 2
#: An inner value (``TransformNet.trace``) this many standard deviations from its map's
#: mean is a droplet, the one-colour blob with a halo an instance-normalised net can
#: learn to paint (:func:`droplets`): sharp ones reach 20-40, spread-out ones 13-17;
#: twice the spike term's limit (``ml.losses.SPIKE_LIMIT``).
DROPLET_Z = 12.0
#: Score units lost per per cent of a result's pixels that are droplets.
DROPLET_PENALTY = 10.0
#: A style ships only with at most this per cent of droplet pixels (``ml.bank_ship``).
DROPLET_LIMIT = 0.01
#: The style ratio is counted in units of the peer's, or of this without a peer.
RATIO_UNIT = 0.1
#: Held-out photos whose results are drawn on the contact sheet of each scoring.
SHEET_PHOTOS = 6
#: best.json's key for the whole bank: the step with the lowest mean score over its
#: styles (the bank ships as one network, so this is the checkpoint to ship).
WHOLE_BANK = "(bank)"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class BankStyle:
    """One painted slot of the bank."""

    slot: int  # 1 ...
    slug: str
    name: str
    painting: Path
    style_scale: float  # the painting's multiplier of the style weight
    folder: Path  # styles/<slug>/: painting and style.json


@dataclass(frozen=True)
class BankRunPlan:
    run_dir: Path
    bank: str
    styles: tuple[BankStyle, ...]
    score_every: int
    train: dict

    @property
    def out_dir(self) -> Path:
        return self.run_dir / RUN_SUBDIR

    def in_force(self) -> dict:
        """The settings this plan trains with: ``{"train": plan.json's "train", "style_scales":
        {slug: style_scale}}``; each scoring records them (``scores.jsonl``'s ``"plan"``),
        since the plan may change between runs."""
        return {"train": dict(self.train),
                "style_scales": {style.slug: style.style_scale for style in self.styles}}

    def peer_scores(self) -> dict:
        """``{slug: {style_distance_ratio, luminance_correlation, edge_correlation}}``
        from ``peer.json``, or ``{}``."""
        path = self.run_dir / PEER_FILE
        if not path.is_file():
            return {}
        return json.loads(path.read_text()).get("styles", {})


def load_plan(run_dir: str | Path = DEFAULT_RUN_DIR) -> BankRunPlan:
    """Read ``plan.json`` and each style's ``style.json``; ``ValueError`` names what is wrong."""
    run_dir = Path(run_dir)
    try:
        plan = json.loads((run_dir / PLAN_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the bank plan {run_dir / PLAN_FILE}: {error}") from None
    slugs = list(plan.get("styles") or [])
    if not slugs or len(set(slugs)) != len(slugs):
        raise ValueError(f"{run_dir / PLAN_FILE} must list each style once, in slot order")
    styles = []
    for slot, slug in enumerate(slugs, start=1):
        folder = run_dir / "styles" / slug
        try:
            meta = json.loads((folder / "style.json").read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {folder / 'style.json'}: {error}") from None
        painting = folder / meta.get("painting", "painting.png")
        if not painting.is_file():
            raise ValueError(f"the painting of {slug} is missing: {painting}")
        scale = float((meta.get("training") or {}).get("style_scale", 1.0))
        if not (scale >= 0 and math.isfinite(scale)):
            raise ValueError(f"{slug}'s style_scale must be a number >= 0, got {scale}")
        styles.append(BankStyle(slot, slug, meta.get("name", slug), painting, scale, folder))
    score_every = int(plan.get("score_every", 2000))
    if score_every < 1:
        raise ValueError(f"score_every must be >= 1, got {score_every}")
    return BankRunPlan(run_dir, str(plan.get("bank", "paintings")), tuple(styles), score_every,
                       dict(plan.get("train") or {}))


def bank_config(plan: BankRunPlan, *, photos, loss_weights, max_seconds=None, verbose=1):
    """The :class:`ml.config.TrainConfig` of the run: the plan's settings over its preset,
    the paintings in slot order with their style scales, always resuming."""
    from ml.config import TrainConfig

    settings = dict(plan.train)
    preset = settings.pop("preset", None)
    return TrainConfig.from_preset(
        preset, **settings,
        paintings=tuple(str(style.painting) for style in plan.styles),
        painting_style_scales=tuple(style.style_scale for style in plan.styles),
        data_dir=str(photos), out_dir=str(plan.out_dir), loss_weights=loss_weights,
        max_seconds=max_seconds, resume=True, verbose=verbose)


# --------------------------------------------------------------------------- scores


def style_score(scores: dict, peer: dict | None = None) -> float:
    """One number per style and checkpoint, lower is better: the style distance ratio in
    units of the peer's ratio on the same painting (of :data:`RATIO_UNIT` without one),
    plus :data:`SHAPE_PENALTY` per unit of luminance or edge correlation under its floor
    (the peer's, and at least :data:`LUMINANCE_FLOOR` / :data:`EDGE_FLOOR`), plus
    :data:`DARK_SPOT_PENALTY` per per cent of dark spots (:func:`dark_spots`) and
    :data:`DROPLET_PENALTY` per per cent of droplets (:func:`droplets`) if given.

    ``scores``: ``ml.quality.evaluate_style``'s keys, ``dark_spots`` and ``droplets``. A
    checkpoint that
    paints strongly but loses the photo scores worse than one that paints a little less and
    keeps it.
    """
    peer = peer or {}
    unit = peer.get("style_distance_ratio") or RATIO_UNIT
    luminance_floor = max(LUMINANCE_FLOOR, peer.get("luminance_correlation", 0.0))
    edge_floor = max(EDGE_FLOOR, peer.get("edge_correlation", 0.0))
    shortfall = (max(0.0, luminance_floor - scores["luminance_correlation"])
                 + max(0.0, edge_floor - scores["edge_correlation"]))
    return (scores["style_distance_ratio"] / unit + SHAPE_PENALTY * shortfall
            + DARK_SPOT_PENALTY * scores.get("dark_spots", 0.0)
            + DROPLET_PENALTY * scores.get("droplets", 0.0))


def dark_spots(photos, results) -> float:
    """Per cent of the results' pixels that are near-black (luminance under
    :data:`DARK_SPOT`) where their photo is neither dark (over :data:`LIGHT_PHOTO`) nor
    darker than its surroundings (:data:`SHADE_SHARE`), in patches of at least
    :data:`SPOT_SIDE` px square: the black blobs a network can paint into flat or finely
    textured parts of a photo, not the dark strokes and deepened shadows of a painting
    such as *Bal du moulin de la Galette*. ``photos`` and ``results``: uint8 ``HxWx3``
    pairs of one size each."""
    luma = np.array(LUMA_WEIGHTS)
    spotted = []
    for photo, result in zip(photos, results):
        photo_luma = photo.astype(np.float64) @ luma
        shade = (box_mean(photo_luma, SPOT_SIDE)
                 < SHADE_SHARE * box_mean(photo_luma, SHADE_SURROUND))
        black = (result.astype(np.float64) @ luma < DARK_SPOT) & (photo_luma > LIGHT_PHOTO)
        spotted.append(np.mean(patches(black & ~shade, SPOT_SIDE)))
    return 100.0 * float(np.mean(spotted)) if spotted else 0.0


def box_mean(values: np.ndarray, side: int) -> np.ndarray:
    """The mean of the 2-D ``values`` over the ``side`` x ``side`` square centred on each
    pixel (``side`` odd), the picture's edge pixels repeated outwards; the same shape."""
    padded = np.pad(values.astype(np.float64), side // 2, mode="edge")
    return window_sums(padded, side) / side**2


def window_sums(values: np.ndarray, side: int) -> np.ndarray:
    """The sum of the 2-D ``values`` over every ``side`` x ``side`` window wholly inside
    them, indexed by the window's top left: ``(H - side + 1, W - side + 1)``."""
    total = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return (total[side:, side:] - total[:-side, side:] - total[side:, :-side]
            + total[:-side, :-side])


def patches(mask: np.ndarray, side: int) -> np.ndarray:
    """The pixels of the 2-D boolean ``mask`` that lie in some ``side`` x ``side`` square
    wholly inside it (a morphological opening by that square): thin lines and dots
    drop out, areas stay whole."""
    height, width = mask.shape
    if height < side or width < side:
        return np.zeros(mask.shape, bool)
    full = window_sums(mask.astype(np.int64), side) == side * side
    anchors = np.zeros((height + side - 1, width + side - 1), np.int64)
    anchors[side - 1:height, side - 1:width] = full
    return window_sums(anchors, side)[:height, :width] > 0


def droplets(inner_maps) -> float:
    """Per cent of the pixels where some channel of some inner feature map is
    :data:`DROPLET_Z` standard deviations or more from its map's mean: a spot the net
    makes far stronger than the rest of the map, painted as a blob of one colour with a
    halo (``ml.losses.spike_loss`` trains it away). ``inner_maps``: one image's
    ``(H, W, C)`` maps (``TransformNet.trace``'s), the largest first or last; each is
    scaled to the largest by repeating its pixels."""
    from ml.losses import spike_z

    maps = [np.asarray(inner_map) for inner_map in inner_maps]
    height, width = max((m.shape[0], m.shape[1]) for m in maps)
    found = np.zeros((height, width), bool)
    for inner_map in maps:
        z = np.asarray(keras.ops.convert_to_numpy(spike_z(inner_map[None])))[0]
        over = z.max(axis=-1) >= DROPLET_Z
        rows, cols = -(-height // over.shape[0]), -(-width // over.shape[1])
        found |= np.repeat(np.repeat(over, rows, 0), cols, 1)[:height, :width]
    return 100.0 * float(np.mean(found))


def paint(net, photo, weights) -> tuple[np.ndarray, float]:
    """``(result, droplet per cent)``: ``photo`` (``HxWx3`` in [0, 255]) through the bank
    ``net`` in the slot mix ``weights`` (``(1, num_styles)``), as uint8, and
    :func:`droplets` of its inner maps."""
    from ml.model import to_pixels

    logits, inner = net.trace(np.asarray(photo, np.float32)[None], weights)
    result = np.asarray(keras.ops.convert_to_numpy(to_pixels(logits)))[0]
    return (np.clip(np.round(result), 0, 255).astype(np.uint8),
            droplets([keras.ops.convert_to_numpy(inner_map)[0] for inner_map in inner]))


def identity_levels(net, photos, slot: int) -> float:
    """Mean |difference| in levels between the photos and ``mix_weights(S, slot,
    strength=0)``'s results: how well strength 0 gives the photo back."""
    from ml.bank import mix_weights
    from ml.quality import fit_longer_side

    weights = mix_weights(net.num_styles, slot, strength=0.0)[None]
    differences = []
    for path in photos:
        photo = fit_longer_side(path, 384).astype(np.float32)
        out = np.asarray(keras.ops.convert_to_numpy(net(photo[None], weights)), np.float32)[0]
        differences.append(float(np.mean(np.abs(np.clip(np.round(out), 0, 255) - photo))))
    return round(float(np.mean(differences)), 2)


#: Settings that change what a snapshot's weights compute; each best entry records them
#: (``"net"``), so a snapshot is loaded as it was scored after the plan has moved on.
SNAPSHOT_NET_SETTINGS = ("norm_clip_z",)


def measure_of(style: BankStyle, config) -> dict:
    """What a style's held-out numbers depend on besides the weights: its painting (the
    file's digest), the net's edge margin and the version of the spot rules
    (:data:`SPOT_RULES`). Numbers taken under another measure cannot be compared
    (:meth:`BestSnapshots.forget_stale`)."""
    digest = hashlib.sha256(Path(style.painting).read_bytes()).hexdigest()[:16]
    return {"painting": digest, "edge_margin": config.edge_margin, "spot_rules": SPOT_RULES}


class BestSnapshots:
    """``run/best/``: each style's best step by :func:`style_score`, with the weights of
    every step that is some style's best (``step-N.weights.h5``) and no other."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / BEST_FILE
        self.best: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def offer(self, step: int, scored: dict[str, dict], save_weights,
              net_settings: dict | None = None, measures: dict | None = None) -> list[str]:
        """Record ``scored`` (slug → scores with ``score``) of ``step``; where a style
        beats its best, ``save_weights(path)`` writes the snapshot, and the entry keeps
        ``net_settings`` (:data:`SNAPSHOT_NET_SETTINGS`) as ``"net"`` and its measure
        (``measures[slug]``, :func:`measure_of`) as ``"measure"``. Returns the slugs
        whose best is now this step."""
        improved = [slug for slug, scores in scored.items()
                    if slug not in self.best or scores["score"] < self.best[slug]["score"]]
        if not improved:
            return []
        self.folder.mkdir(parents=True, exist_ok=True)
        snapshot = self.snapshot_path(step)
        if not snapshot.is_file():
            temp = snapshot.with_name(".tmp-" + snapshot.name)
            save_weights(temp)
            temp.replace(snapshot)
        for slug in improved:
            self.best[slug] = {"step": step, **scored[slug]}
            if net_settings:
                self.best[slug]["net"] = dict(net_settings)
            if measures and slug in measures:
                self.best[slug]["measure"] = measures[slug]
        write_json(self.folder / BEST_FILE, self.best)
        kept = {self.snapshot_path(entry["step"]).name for entry in self.best.values()}
        for old in self.folder.glob("step-*.weights.h5"):
            if old.name not in kept:
                old.unlink()
        return improved

    def forget_stale(self, measures: dict[str, dict]) -> list[str]:
        """Drop every best whose ``"measure"`` is not ``measures[slug]`` (the painting
        or the edge margin changed since, or it was scored before measures were kept):
        its numbers say nothing about a snapshot scored now. Its weights go when the
        next :meth:`offer` prunes. Returns the dropped slugs."""
        stale = [slug for slug, entry in self.best.items()
                 if entry.get("measure") != measures.get(slug)]
        for slug in stale:
            del self.best[slug]
        if stale:
            write_json(self.folder / BEST_FILE, self.best)
        return stale

    def rescore(self, score) -> None:
        """Recompute every kept ``score`` with ``score(slug, scores)`` (the peer's numbers
        may have arrived since), so new checkpoints are compared by the same rule."""
        for slug, entry in self.best.items():
            entry["score"] = round(score(slug, entry), 4)

    def snapshot_path(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.weights.h5"

    def net_settings(self, step: int) -> dict:
        """The :data:`SNAPSHOT_NET_SETTINGS` ``step``'s snapshot was scored with (a
        setting an entry does not record had its default, None)."""
        recorded = next((entry.get("net", {}) for entry in self.best.values()
                         if entry["step"] == step), {})
        return {name: recorded.get(name) for name in SNAPSHOT_NET_SETTINGS}


class HeldOutScores(keras.callbacks.Callback):
    """Every ``every`` steps, and when training ends, scores every style of the bank on
    the held-out photos with the one measure (``ml.quality.evaluate_style``) through a
    float32 copy of the net (what is exported), appends them to ``scores.jsonl``, keeps
    each style's best snapshot (:class:`BestSnapshots`) and draws a contact sheet of
    the first photos in every style (``samples/heldout-step-N.jpg``)."""

    def __init__(self, plan: BankRunPlan, config, holdout, quality_network, every: int,
                 log=print):
        super().__init__()
        from ml.data import list_images

        self.plan = plan
        self.config = config
        self.photos = list_images(holdout)
        if not self.photos:
            raise ValueError(f"no held-out photos in {holdout}")
        self.quality_network = quality_network
        self.every = every
        self.log = log
        self.peer = plan.peer_scores()
        self.best = BestSnapshots(plan.out_dir / BEST_DIR)
        self.measures = {style.slug: measure_of(style, config) for style in plan.styles}
        self.measures[WHOLE_BANK] = dict(self.measures)
        forgotten = self.best.forget_stale(self.measures)
        if forgotten:
            log("best snapshots forgotten, scored under another measure (painting, edge "
                f"margin or spot rules): {', '.join(forgotten)}", flush=True)
        self.best.rescore(self.entry_score)
        self.photo_distances: dict[str, dict] = {style.slug: {} for style in plan.styles}
        self.scored_step: int | None = None
        self._net32 = None
        self.start_step = self.step = 0
        self.started = time.perf_counter()
        self.seconds_before = self._seconds_so_far()

    def _seconds_so_far(self) -> float:
        """Training time of the earlier runs: the last record's total (a run scores when it
        ends, so that record closes it)."""
        path = self.plan.out_dir / SCORES_FILE
        lines = path.read_text().splitlines() if path.is_file() else []
        if not lines:
            return 0.0
        last = json.loads(lines[-1])
        return float(last.get("train_seconds", last.get("seconds_this_run", 0.0)))

    def entry_score(self, slug: str, entry: dict) -> float:
        """:func:`style_score` of a style's scores against the peer's; for
        :data:`WHOLE_BANK` the mean over the styles it holds."""
        if slug == WHOLE_BANK:
            return float(np.mean([self.entry_score(key, scores)
                                  for key, scores in entry["styles"].items()]))
        return style_score(entry, self.peer.get(slug))

    def on_train_begin(self, logs=None):
        # The global step: the optimizer's iterations, restored with a checkpoint.
        self.start_step = self.step = int(keras.ops.convert_to_numpy(
            self.model.optimizer.iterations))
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self.score()

    def on_train_end(self, logs=None):
        if self.scored_step != self.step and self.step > self.start_step:
            self.score()

    def float32_net(self):
        """A float32 copy of the trainer's net with its current weights."""
        from ml.trainer import build_transform_net

        net = self.model.transform_net
        if self._net32 is None:
            self._net32 = build_transform_net(self.config, num_styles=net.num_styles)
        self._net32.set_weights([np.asarray(w, np.float32) for w in net.get_weights()])
        return self._net32

    def score(self) -> dict[str, dict]:
        from ml.bank import one_hot
        from ml.quality import evaluate_style, rounded_layer_ratios

        step, started = self.step, time.perf_counter()
        net = self.float32_net()
        scored, sheet = {}, []
        for style in self.plan.styles:
            weights = one_hot([style.slot], net.num_styles)
            photos, results, spots = [], [], []

            def stylize(photo, weights=weights, photos=photos, results=results, spots=spots):
                result, droplet_share = paint(net, photo, weights)
                photos.append(photo)
                results.append(result)
                spots.append(droplet_share)
                return result

            report = evaluate_style(self.photos, style.painting, self.quality_network,
                                    stylize=stylize,
                                    photo_distances=self.photo_distances[style.slug])
            scores = {name: round(float(report[name]), 4) for name in
                      ("style_distance_ratio", "luminance_correlation", "edge_correlation")}
            scores["layer_ratios"] = rounded_layer_ratios(report)
            scores["dark_spots"] = round(dark_spots(photos, results), 3)
            scores["droplets"] = round(float(np.mean(spots)), 4)
            scores["score"] = round(self.entry_score(style.slug, scores), 4)
            scored[style.slug] = scores
            sheet.append(results[:SHEET_PHOTOS])
        whole = {"styles": {slug: dict(scores) for slug, scores in scored.items()}}
        whole["score"] = round(self.entry_score(WHOLE_BANK, whole), 4)
        net_settings = {name: getattr(self.config, name) for name in SNAPSHOT_NET_SETTINGS
                        if getattr(self.config, name) is not None}
        improved = self.best.offer(step, {**scored, WHOLE_BANK: whole}, net.save_weights,
                                   net_settings, self.measures)
        # Strength 0 must give the photo back (issue 23, item 5): mean |difference|.
        identity = identity_levels(net, self.photos[:SHEET_PHOTOS], self.plan.styles[0].slot)
        record = {"step": step, "seconds_this_run": round(started - self.started, 1),
                  "train_seconds": round(self.seconds_before + started - self.started, 1),
                  "scoring_seconds": round(time.perf_counter() - started, 1),
                  "identity_levels": identity, "styles": scored, "plan": self.plan.in_force()}
        with open(self.plan.out_dir / SCORES_FILE, "a") as scores_file:
            scores_file.write(json.dumps(record) + "\n")
        self._draw(step, sheet)
        self.scored_step = step
        self.log(scores_table(record, self.best.best, improved), flush=True)
        return scored

    def _draw(self, step, rows):
        from ml.quality import fit_longer_side

        photos = [fit_longer_side(path, 384) for path in self.photos[:SHEET_PHOTOS]]
        draw_sheet([photos, *rows], self.plan.out_dir / "samples" / f"heldout-step-{step:08d}.jpg")


class ProgressLines(keras.callbacks.Callback):
    """A line every ``every`` steps: global step, seconds a step, the weighted loss terms
    (a background run's log, where a progress bar would be noise)."""

    def __init__(self, every: int = 100, log=print):
        super().__init__()
        self.every = every
        self.log = log

    def on_train_begin(self, logs=None):
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.since = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every:
            return
        now = time.perf_counter()
        terms = " ".join(f"{name} {float(value):.4g}" for name, value in (logs or {}).items()
                         if not name.startswith(("style_", "output_")))
        self.log(f"step {self.step}: {(now - self.since) / self.every:.2f} s/step; {terms}",
                 flush=True)
        self.since = now


def draw_sheet(rows, path: Path, cell: int = 192) -> Path:
    """A JPEG grid: one row per list of images, each fitted into a ``cell`` square (an
    image of ``None`` leaves its cell white)."""
    from PIL import Image, ImageOps

    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * cell, len(rows) * cell), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image is None:
                continue
            thumb = ImageOps.contain(Image.fromarray(np.asarray(image, np.uint8)), (cell, cell))
            sheet.paste(thumb, (c * cell + (cell - thumb.width) // 2,
                                r * cell + (cell - thumb.height) // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=88)
    return path


def scores_table(record: dict, best: dict, improved=()) -> str:
    """The held-out scores of one scoring, beside each style's best so far."""
    lines = [f"held-out scores at step {record['step']} ({record.get('scoring_seconds', '?')} s):",
             f"  {'style':22} {'ratio':>6} {'lum':>5} {'edges':>5} {'spots':>5} {'drops':>6}"
             f" {'score':>6}"
             "   best (step)"]
    for slug, s in record["styles"].items():
        if slug == WHOLE_BANK:
            continue
        mark = " *" if slug in improved else ""
        kept = best.get(slug, {})
        lines.append(f"  {slug:22} {s['style_distance_ratio']:6.3f} "
                     f"{s['luminance_correlation']:5.2f} {s['edge_correlation']:5.2f} "
                     f"{s.get('dark_spots', float('nan')):5.2f} "
                     f"{s.get('droplets', float('nan')):6.3f} "
                     f"{s['score']:6.2f}   {kept.get('score', float('nan')):.2f} "
                     f"({kept.get('step', '-')}){mark}")
    whole = best.get(WHOLE_BANK)
    if whole:
        mark = " *" if WHOLE_BANK in improved else ""
        lines.append(f"  the whole bank's best: mean score {whole['score']:.2f} at step "
                     f"{whole['step']}{mark}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.bank_run",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR),
                        help="the tracked run folder (default %(default)s)")
    parser.add_argument("--photos", default="var/photos/train", help="training photos")
    parser.add_argument("--holdout", default="var/photos/holdout", help="held-out photos")
    parser.add_argument("--loss-weights", default="var/vgg16_imagenet_notop.weights.h5",
                        help='VGG16 weights file, "imagenet" or "random" (tests)')
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop after this much training, with a checkpoint")
    parser.add_argument("--steps", type=int, default=None,
                        help="replace the plan's steps (the end of the run and of its "
                        "learning-rate schedule); for tests")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2),
                        help="Keras fit's verbosity (default 0: the run prints a line every "
                        "100 steps and the held-out scores instead)")
    parser.add_argument("--status", action="store_true",
                        help="print the latest and best held-out scores and stop")
    return parser


def status(plan: BankRunPlan) -> str:
    from ml.checkpoints import latest_checkpoint

    checkpoint = latest_checkpoint(plan.out_dir)
    lines = [f"bank {plan.bank}: {len(plan.styles)} styles; latest checkpoint: "
             f"{checkpoint or 'none'}"]
    scores_path = plan.out_dir / SCORES_FILE
    records = scores_path.read_text().splitlines() if scores_path.is_file() else []
    best = BestSnapshots(plan.out_dir / BEST_DIR).best
    if records:
        lines.append(scores_table(json.loads(records[-1]), best))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        plan = load_plan(args.run_dir)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if args.status:
        print(status(plan))
        return

    from ml.losses import build_loss_network
    from ml.preflight import CannotTrain
    from ml.quality import QUALITY_LAYERS
    from ml.train import train

    loss_weights = None if args.loss_weights == "random" else args.loss_weights
    config = bank_config(plan, photos=args.photos, loss_weights=loss_weights,
                         max_seconds=args.max_seconds, verbose=args.verbose)
    if args.steps:
        config = config.replace(steps=args.steps)
    try:
        quality_network = build_loss_network("vgg16", loss_weights, layers=QUALITY_LAYERS)
        scorer = HeldOutScores(plan, config, args.holdout, quality_network, plan.score_every)
        result = train(config, callbacks=[ProgressLines(), scorer])
    except (TrainingDiverged, CannotTrain, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error
    print(f"\nbank {plan.bank}: step {result.steps} ({result.steps_this_run} this run, "
          f"{result.seconds:.0f} s, {result.precision}); checkpoint {result.last_checkpoint}")
    print(status(plan))


if __name__ == "__main__":
    main()
