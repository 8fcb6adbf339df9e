"""The one training configuration: ``TrainConfig``, its named presets and its flags.

Every way of training a style builds a :class:`TrainConfig` here, so they all train
the same network with the same recipe:

* ``python -m ml.train`` (``ml.train.parse_args``),
* ``manage.py train_style`` and the admin's "Retrain" (``stylize.services.training``, which
  passes ``settings.TRAINING_OVERRIDES`` and the command's flags as overrides),
* ``python -m ml.parallel_runs PLAN.json`` (each run is a dict of fields).

Precedence, lowest first: the dataclass defaults, the chosen preset
(:data:`PRESETS`), the caller's overrides (e.g. settings), the command-line flags
given. :func:`add_arguments` derives one flag per field from the field's metadata,
so a new field is a new flag on both command lines at once.

Why the defaults are what they are (measurements): ``docs/design/training.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.data import DEFAULT_SEED

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "PRECISIONS",
    "TrainConfig",
    "add_arguments",
    "config_from_args",
]

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
LOSS_NETWORKS = ("vgg16", "vgg19")
LR_SCHEDULES = ("constant", "cosine")

# --------------------------------------------------------------------------- flag types
# A bad value is a usage error naming the flag, before anything is trained.


def _number(value: str, kind, acceptable, requirement: str):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not acceptable(number):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {value!r}")
    return number


def positive_int(value: str) -> int:
    return _number(value, int, lambda n: n >= 1, "a whole number >= 1")


def non_negative_int(value: str) -> int:
    return _number(value, int, lambda n: n >= 0, "a whole number >= 0")


def positive_float(value: str) -> float:
    return _number(value, float, lambda x: x > 0, "a number > 0")


def non_negative_float(value: str) -> float:
    return _number(value, float, lambda x: x >= 0, "a number >= 0")


def odd_int(value: str) -> int:
    return _number(value, int, lambda n: n > 0 and n % 2 == 1, "an odd whole number (1, 3, 5, ...)")


def _fraction(value: str) -> float:
    return _number(value, float, lambda x: 0 <= x <= 1, "a number from 0 to 1")


def existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value!r}")
    return str(Path(value).resolve())


def loss_weights_arg(value: str) -> str | None:
    """``imagenet``, a weights file, or ``random`` (None: random VGG, for tests)."""
    return None if value == "random" else value


def _non_negative_numbers(value: str, each: str) -> tuple[float, ...]:
    """``value`` as comma-separated finite numbers >= 0 (at least one), else a usage
    error that says they are ``each`` (what one number stands for)."""
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if not numbers or any(not (x >= 0 and math.isfinite(x)) for x in numbers):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated numbers >= 0 ({each}), got {value!r}")
    return numbers


def layer_weights_arg(value: str) -> tuple[float, ...]:
    """``1,4,16,64``: one weight per style layer, shallow to deep."""
    return _non_negative_numbers(value, "one per style layer")


def scales_arg(value: str) -> tuple[float, ...]:
    """``1,0.8,1.2``: one style-weight multiplier per painting of a bank."""
    return _non_negative_numbers(value, "one per painting")


def existing_files(value: str) -> tuple[str, ...]:
    """``a.jpg,b.jpg``: comma-separated existing files."""
    return tuple(existing_file(part) for part in value.split(",") if part)


def _flag(flag: str, help: str, type=None, **extra) -> dict:
    return {"flag": flag, "help": help, "type": type, **extra}


def _term_weight(flag: str, term: str):
    """The field of an optional loss term's weight, off (0) by default: ``term`` says
    what the term keeps."""
    return field(default=0.0, metadata=_flag(
        flag, f"weight of the {term}; 0 leaves it out", non_negative_float))


# --------------------------------------------------------------------------- the config


@dataclass
class TrainConfig:
    """Everything one training run needs. Validated on creation (``ValueError``).

    ``content_weight``, ``style_weight``, ``tv_weight`` and ``style_layer_weights``
    left at ``None`` take ``ml.losses.DEFAULT_LOSS_WEIGHTS`` of the loss network;
    ``style_size`` left at ``None`` is :attr:`style_size_factor` x ``size``.
    """

    painting: str = field(default="", metadata=_flag("--style", "the painting to learn"))
    paintings: tuple[str, ...] = field(default=(), metadata=_flag(
        "--paintings", "train a bank: one conditional network for these paintings (comma-"
        "separated) at slots 1, 2, ... with slot 0 the photo itself; replaces --style",
        existing_files, metavar="FILE,FILE,..."))
    painting_style_scales: tuple[float, ...] = field(default=(), metadata=_flag(
        "--painting-style-scales", "a bank's per-painting multiplier of the style weight, in "
        "the order of --paintings (default 1 each): a painting that wipes the photo out gets "
        "less than 1", scales_arg, metavar="S,S,..."))
    identity_weight: float = field(default=200.0, metadata=_flag(
        "--identity-weight", "a bank's slot 0 (the photo itself, for in-network strength): "
        "weight of its per-pixel squared error against the photo, beside the content loss",
        non_negative_float))
    train_slot: int | None = field(default=None, metadata=_flag(
        "--train-slot", "fine-tune only this slot of the bank given as --init-weights to "
        "--style (the next free slot adds a style); every other weight stays as it was",
        positive_int, metavar="N"))
    data_dir: str | None = field(default=None, metadata=_flag(
        "--data", "folder of training photos (make photos, or COCO train2014)"))
    out_dir: str = field(default="", metadata=_flag(
        "--out", "run folder: checkpoints, TensorBoard logs, samples, the final model"))
    steps: int = field(default=40_000, metadata=_flag("--steps", "training steps", positive_int))
    size: int = field(default=256, metadata=_flag(
        "--size", "training crop size in pixels", positive_int))
    batch: int = field(default=4, metadata=_flag("--batch", "photos per step", positive_int))
    loss_network: str = field(default="vgg16", metadata=_flag(
        "--loss-network", "VGG of the perceptual loss", choices=LOSS_NETWORKS))
    loss_weights: str | None = field(default="imagenet", metadata=_flag(
        "--loss-weights", '"imagenet" (downloaded by Keras), a local VGG weights file '
        '(python -m ml.weights vgg16-from-onnx) or "random" (tests only)', loss_weights_arg))
    content_weight: float | None = field(default=None, metadata=_flag(
        "--content-weight", "weight of the content term", non_negative_float))
    style_weight: float | None = field(default=None, metadata=_flag(
        "--style-weight", "weight of the style term", non_negative_float))
    style_layer_weights: tuple[float, ...] | None = field(default=None, metadata=_flag(
        "--style-layer-weights", "relative weight of each style layer, shallow to deep, "
        "e.g. 1,2,4,8", layer_weights_arg))
    light_weight: float = field(default=1e6, metadata=_flag(
        "--light-weight", "weight of the light term: the photo's coarse light and dark "
        "layout kept whatever the palette (ml.losses.light_layout_loss); 0 leaves it out "
        "(why 1e6: docs/design/training.md, the 200-step check)",
        non_negative_float))
    light_size: int = field(default=16, metadata=_flag(
        "--light-size", "side in px of the luminance maps the light term compares (16: the "
        "broad layout; 32 or 64 also sees small dark or light spots)", positive_int))
    edge_weight: float = _term_weight("--edge-weight", "edge term: the photo's edges kept "
                                      "where they are at a coarse scale, the brush texture "
                                      "over them left free (ml.losses.edge_layout_loss)")
    edge_size: int = field(default=43, metadata=_flag(
        "--edge-size", "side in px of the luminance maps whose gradients the edge term "
        "compares (43 of a 256 px crop: the edge measure's 64 of a 384 px photo)",
        positive_int))
    spot_weight: float = _term_weight("--spot-weight", "spot term: near-black pixels where "
                                      "the photo is not dark, the black blobs a network can "
                                      "paint (ml.losses.dark_spot_loss)")
    shadow_weight: float = _term_weight("--shadow-weight", "shadow term: where the photo is "
                                        "dark, the result painted in the painting's own shadow "
                                        "colours, not in one it never uses there "
                                        "(ml.losses.shadow_colour_loss)")
    saturation_weight: float = _term_weight("--saturation-weight", "saturation term: the "
                                            "net's last convolution kept inside tanh's live "
                                            "range, so a flat black or white blob can be "
                                            "trained away (ml.trainer.StyleTrainer)")
    spike_weight: float = _term_weight("--spike-weight", "spike term: the net's inner feature "
                                       "maps kept free of droplets, one spot far stronger than "
                                       "the rest of its map, painted as a blob "
                                       "(ml.losses.spike_loss)")
    tv_weight: float | None = field(default=None, metadata=_flag(
        "--tv-weight", "weight of the total-variation term", non_negative_float))
    style_size: int | None = field(default=None, metadata=_flag(
        "--style-size", "longer side of the painting for its Gram matrices, in pixels "
        "(default: style_size_factor x size)", positive_int))
    style_size_factor: float = field(default=1.5, metadata=_flag(
        "--style-size-factor", "painting size for the Gram as a multiple of the crop size "
        "when --style-size is not given", positive_float))
    lr: float = field(default=3e-3, metadata=_flag(
        "--lr", "Adam learning rate (the start of the schedule)", non_negative_float))
    lr_schedule: str = field(default="constant", metadata=_flag(
        "--lr-schedule", "constant, or cosine: decays from --lr to a tenth of it over --steps",
        choices=LR_SCHEDULES))
    style_warmup: float = field(default=0.1, metadata=_flag(
        "--style-warmup", "fraction of --steps over which the style weight ramps up from 0: "
        "the net first learns to keep the photo's light and dark, then paints", _fraction))
    clipnorm: float | None = field(default=None, metadata=_flag(
        "--clipnorm", "clip each step's global gradient norm to this", positive_float))
    width: float = field(default=0.5, metadata=_flag(
        "--width", "filter multiplier: 0.5 is the half-width network", positive_float))
    num_residual_blocks: int = field(default=3, metadata=_flag(
        "--residual-blocks", "residual blocks at the bottleneck", non_negative_int, metavar="N"))
    output_kernel_size: int = field(default=3, metadata=_flag(
        "--output-kernel", "kernel size of the last convolution, odd (Johnson et al.: 9)",
        odd_int, metavar="K"))
    norm_clip_z: float | None = field(default=None, metadata=_flag(
        "--norm-clip-z", "robust instance norms: their mean and variance ignore how far "
        "values lie beyond this many standard deviations, so no droplet can set a map's "
        "statistics (docs/design/training.md)", positive_float, metavar="Z"))
    edge_margin: int = field(default=16, metadata=_flag(
        "--edge-margin", "pixels of reflection the net adds on every side of a picture "
        "outside training and crops off its result, so nothing it paints at an edge "
        "reaches the photo (docs/design/network.md); 0: none", non_negative_int, metavar="PX"))
    max_scale: float = field(default=3.0, metadata=_flag(
        "--max-scale", "each photo's shorter side is resized to size x U(1, max-scale) "
        "before the crop; larger values show the net bigger, flatter regions", positive_float))
    crush_blacks: float = field(default=0.0, metadata=_flag(
        "--crush-blacks", "chance that a training photo's darks, under a random level up to "
        "80, are crushed to flat black as in night scenes, which the photos seldom have "
        "(ml.data.crush_blacks_array)", _fraction, metavar="P"))
    augment: bool = field(default=True, metadata=_flag(
        "--augment", "random scale, crop, flip, small rotation and colour jitter",
        action=argparse.BooleanOptionalAction))
    precision: str = field(default="auto", metadata=_flag(
        "--precision", "auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with "
        "AVX512-BF16/AMX (tensorflow backend), else float32; loss terms stay float32",
        choices=PRECISIONS))
    seed: int = field(default=DEFAULT_SEED, metadata=_flag("--seed", "random seed", int))
    checkpoint_every: int = field(default=1000, metadata=_flag(
        "--checkpoint-every", "steps between checkpoints", positive_int))
    keep_checkpoints: int = field(default=2, metadata=_flag(
        "--keep-checkpoints", "checkpoints kept on disk", positive_int))
    sample_every: int = field(default=500, metadata=_flag(
        "--sample-every", "steps between sample images", positive_int))
    log_every: int = field(default=10, metadata=_flag(
        "--log-every", "steps between TensorBoard scalars", positive_int))
    max_seconds: float | None = field(default=None, metadata=_flag(
        "--max-seconds", "stop after this much training time, with a checkpoint "
        "(--steps stays the ceiling)", positive_float, metavar="S"))
    init_weights: str | None = field(default=None, metadata=_flag(
        "--init-weights", "start from this transform net (.keras or .weights.h5) of the "
        "same architecture, e.g. another style's", existing_file, metavar="FILE"))
    resume: bool = field(default=False, metadata=_flag(
        "--resume", "continue from the last checkpoint in the run folder", action="store_true"))
    preset: str = field(default="", metadata={"help": "the preset this config started from"})
    verbose: int = field(default=1, metadata={"help": "0: silent, 1: progress bar"})

    def __post_init__(self):
        self.paintings = tuple(str(p) for p in self.paintings)
        self.painting_style_scales = tuple(float(s) for s in self.painting_style_scales)
        if self.painting_style_scales and (
                len(self.painting_style_scales) != len(self.paintings)
                or any(not (s >= 0 and math.isfinite(s)) for s in self.painting_style_scales)):
            raise ValueError("painting_style_scales needs one number >= 0 per painting, got "
                             f"{len(self.painting_style_scales)} for {len(self.paintings)}")
        if self.paintings and self.train_slot is not None:
            raise ValueError("give either paintings (train a bank) or train_slot (fine-tune one)")
        if self.train_slot is not None and (self.train_slot < 1 or not self.init_weights):
            raise ValueError("train_slot must be >= 1 and needs init_weights (the bank)")
        if self.style_layer_weights is not None:
            self.style_layer_weights = tuple(float(w) for w in self.style_layer_weights)
        for name in ("steps", "size", "batch", "checkpoint_every", "sample_every",
                     "log_every", "keep_checkpoints"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("style_warmup", "crush_blacks"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.max_scale < 1:
            raise ValueError(f"max_scale must be >= 1, got {self.max_scale}")
        for name in ("max_seconds", "width", "style_size_factor", "clipnorm", "norm_clip_z"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name in ("content_weight", "style_weight", "tv_weight", "lr", "identity_weight",
                     "light_weight", "spot_weight", "shadow_weight", "saturation_weight",
                     "spike_weight", "edge_weight"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.num_residual_blocks < 0:
            raise ValueError(f"num_residual_blocks must be >= 0, got {self.num_residual_blocks}")
        if self.output_kernel_size < 1 or self.output_kernel_size % 2 == 0:
            raise ValueError(f"output_kernel_size must be odd, got {self.output_kernel_size}")
        if self.loss_network not in LOSS_NETWORKS:
            raise ValueError(f"loss_network must be vgg19 or vgg16, got {self.loss_network!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.style_size is not None and self.style_size < 16:
            raise ValueError(f"style_size must be >= 16, got {self.style_size}")

    @property
    def painting_size(self) -> int:
        """The painting's longer side for its Gram matrices."""
        return self.style_size or max(16, round(self.style_size_factor * self.size))

    @property
    def style_warmup_steps(self) -> int:
        return round(self.style_warmup * self.steps)

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides) -> "TrainConfig":
        """A config from a named preset (default :data:`DEFAULT_PRESET`) and overrides."""
        name = preset or DEFAULT_PRESET
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        unknown = set(overrides) - FIELD_NAMES
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        return cls(**{**PRESETS[name], **overrides, "preset": name})

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(TrainConfig))

#: Named starting points. Every preset uses the same loss recipe (VGG16, content on
#: relu3_3, deep-weighted style layers, painting at 1.5x the crop for its Gram); they
#: differ in the network's size. Measured speeds and quality: docs/design/training.md.
PRESETS: dict[str, dict[str, Any]] = {
    # The shipped styles' network: half width, 3 residual blocks, 3x3 output conv.
    "fast": {"width": 0.5, "num_residual_blocks": 3, "output_kernel_size": 3},
    # Half width with Johnson's depth and 9x9 output: 109 px receptive field.
    "balanced": {"width": 0.5, "num_residual_blocks": 5, "output_kernel_size": 9},
    # Johnson et al.'s full network.
    "johnson": {"width": 1.0, "num_residual_blocks": 5, "output_kernel_size": 9},
}
DEFAULT_PRESET = "fast"

#: Fields that have a command-line flag (the rest are set in code).
FLAG_FIELDS = tuple(f for f in dataclasses.fields(TrainConfig) if "flag" in f.metadata)


# --------------------------------------------------------------------------- command lines


def add_arguments(parser: argparse.ArgumentParser, *, base: TrainConfig | None = None,
                  skip: tuple[str, ...] = ()) -> None:
    """One flag per :class:`TrainConfig` field, plus ``--preset``.

    Flags default to "not given" (``argparse.SUPPRESS``) so :func:`config_from_args`
    can tell a flag given from a default and layer them over the preset. ``base``
    only supplies the defaults shown in ``--help``; ``skip`` leaves fields out (the
    Django command takes the painting and folders from the style).
    """
    base = base or TrainConfig.from_preset()
    default_preset = base.preset or DEFAULT_PRESET
    parser.add_argument("--preset", choices=sorted(PRESETS), default=argparse.SUPPRESS,
                        help=f"starting point for every setting (default {default_preset})")
    for spec in FLAG_FIELDS:
        if spec.name in skip:
            continue
        meta = spec.metadata
        kwargs: dict[str, Any] = {"dest": spec.name, "default": argparse.SUPPRESS}
        default = getattr(base, spec.name)
        shown = "" if default in (None, "", False) or "action" in meta else f" (default {default})"
        kwargs["help"] = meta["help"] + shown
        if "action" in meta:
            kwargs["action"] = meta["action"]
        else:
            if meta.get("type") is not None:
                kwargs["type"] = meta["type"]
            for key in ("choices", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
        parser.add_argument(meta["flag"], **kwargs)


def given_flags(options) -> dict[str, Any]:
    """The config fields (``preset`` among them) in ``options``: a parsed
    ``argparse.Namespace`` or a dict of them (a Django command's options)."""
    values = vars(options) if isinstance(options, argparse.Namespace) else options
    return {key: value for key, value in values.items() if key in FIELD_NAMES}


def config_from_args(args: argparse.Namespace, **base_overrides) -> TrainConfig:
    """The config a command line asks for: preset, then ``base_overrides``, then flags."""
    return TrainConfig.from_preset(**{**base_overrides, **given_flags(args)})
