"""Train a TransformNet for one style, or a bank of styles, with ``Model.fit``.

    python -m ml.train --style PAINTING --data var/photos/train --out runs/starry \\
        [--preset fast|balanced|johnson] [any TrainConfig flag]
    python -m ml.train --paintings A,B,C --data ... --out runs/bank      # a bank
    python -m ml.train --init-weights runs/bank/transform_net.keras \\
        --train-slot 4 --style D --data ... --out runs/bank-d         # one slot of it

A bank (``ml.bank``) is trained jointly: every example gets a random slot, slot 0
(the identity) with the content loss only, slot ``i`` against painting ``i``. A slot
fine-tune trains only that slot's conditional-norm rows, everything else frozen, and
the saved net takes every other weight from ``--init-weights`` unchanged.

``StyleTrainer`` is a small ``keras.Model`` whose ``compute_loss`` is the perceptual
loss, so Keras' own ``fit`` trains it on the tensorflow, jax and torch backends. The
callbacks (``ml.callbacks``) stop on divergence naming the last good checkpoint, write
verified atomic checkpoints (``ml.checkpoints``), stop after ``--max-seconds``, log
every weighted loss term (per style layer too) to the progress bar and TensorBoard,
and draw sample images.

Outputs in ``out_dir``: ``config.json``, ``transform_net.keras`` (the final model in
float32, config + weights), ``checkpoints/``, ``logs/`` (TensorBoard), ``samples/``.
The settings are :class:`ml.config.TrainConfig`; the reasons for their defaults are
in ``docs/design/training.md``.
"""

from __future__ import annotations

import argparse
import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import keras
import numpy as np
from keras import ops

from ml import bank, checkpoints
from ml.callbacks import (
    AtomicCheckpoint,
    DivergenceMonitor,
    DivergenceStop,
    GlobalStepTensorBoard,
    ProgressHook,
    RunState,
    SampleImages,
    StepLog,
    TimeLimit,
    TrainingDiverged,
    TrainProgress,
    tensorboard_available,
)
from ml.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from ml.config import FLAG_FIELDS, TrainConfig, add_arguments, config_from_args
from ml.data import PhotoBatches, SkipCounter, list_images, make_dataset
from ml.losses import LOSS_NAMES, spike_loss
from ml.model import to_pixels

__all__ = [
    "DivergenceMonitor",
    "StyleTrainer",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "CannotTrain",
    "TrainingDiverged",
    "check_can_train",
    "build_trainer",
    "latest_checkpoint",
    "load_checkpoint",
    "parse_args",
    "resolve_precision",
    "save_checkpoint",
    "train",
]

FINAL_MODEL_NAME = "transform_net.keras"


@dataclass
class TrainResult:
    steps: int  # global step reached (includes steps done before a resume)
    steps_this_run: int
    seconds: float
    final_losses: dict[str, float]
    mean_losses: dict[str, float]
    model_path: Path  # transform_net.keras: config + final weights
    model: keras.Model  # float32, whatever precision it trained in
    precision: str = "float32"
    skipped_photos: int = 0
    last_checkpoint: Path | None = None
    config: TrainConfig | None = None  # what was trained (a slot fine-tune: the bank's shape)


# --------------------------------------------------------------------------- model


class LatestValue(keras.metrics.Metric):
    """A metric that reports the value of the last step (not a running mean).

    ``fit`` resets metrics only per epoch; the divergence check and the per-step
    logs need each step's own value.
    """

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="value")

    def update_state(self, value):
        self.value.assign(ops.cast(value, "float32"))

    def result(self):
        return ops.convert_to_tensor(self.value)  # a tensor, not the variable (jax jit)

    def reset_state(self):
        self.value.assign(0.0)


#: Past this, ``tanh`` of the net's last convolution is within 0.7 % of ±1 (pixels
#: under 1.7 or over 253.3 levels): the saturation term's threshold.
SATURATION_LIMIT = 2.5


class StyleTrainer(keras.Model):
    """Wraps the transform net so ``fit`` optimises the perceptual loss.

    Its metrics are every weighted loss term (``perceptual_loss.term_names``) and the
    output image's mean and standard deviation: on TF's CPU kernels a NaN image can
    still give finite VGG losses, so the image itself must be watched.

    For a bank, ``painting_of_slot`` maps each slot to its painting in the loss
    (``-1``: the identity slot: no style term, and the ``identity`` term, its mean
    squared pixel error against the photo times ``identity_weight``), and ``fit``
    feeds ``((photos, slots), style_scale)``; otherwise it feeds
    ``(photos, style_scale)``.
    """

    def __init__(self, transform_net, perceptual_loss, painting_of_slot=None,
                 identity_weight=0.0, painting_style_scales=None, saturation_weight=0.0,
                 spike_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        self.saturation_weight = float(saturation_weight)
        self.spike_weight = float(spike_weight)
        self.transform_net = transform_net
        self.perceptual_loss = perceptual_loss
        self.painting_of_slot = (
            None if painting_of_slot is None else np.asarray(painting_of_slot, np.int32))
        # A bank's per-painting multiplier of the style weight (1 each by default).
        self.painting_style_scales = None
        if self.painting_of_slot is not None:
            count = int(self.painting_of_slot.max()) + 1
            scales = np.ones(count, np.float32) if not painting_style_scales else np.asarray(
                painting_style_scales, np.float32)
            if scales.shape != (count,):
                raise ValueError(f"painting_style_scales needs {count} numbers, "
                                 f"got {len(scales)}")
            self.painting_style_scales = scales
        self.identity_weight = float(identity_weight)
        # Tracked as an attribute so its (frozen) VGG variables are part of the
        # model state that the jax backend passes through its stateless step.
        self.loss_network = perceptual_loss.loss_network
        self.term_names = tuple(getattr(perceptual_loss, "term_names", LOSS_NAMES))
        if self.is_bank:
            self.term_names += ("identity",)
        if self.saturation_weight:
            self.term_names += ("saturation",)
        if self.spike_weight:
            self.term_names += ("spike",)
        self.trackers = {
            name: LatestValue(name=name) for name in (*self.term_names, "output_mean", "output_std")
        }

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def is_bank(self) -> bool:
        return self.painting_of_slot is not None

    def call(self, inputs, training=False):
        """The pictures; in training with a ``saturation_weight`` or a ``spike_weight``,
        ``(pictures, logits, inner maps)`` (``TransformNet.trace``) for those terms."""
        args = [inputs]
        if self.is_bank:
            images, slots = inputs
            args = [images, ops.one_hot(slots, self.transform_net.num_styles)]
        if not (training and (self.saturation_weight or self.spike_weight)):
            return self.transform_net(*args, training=training)
        logits, inner = self.transform_net.trace(*args, training=True)
        return to_pixels(logits), logits, inner

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``y`` is the style scale of each example (the warm-up ramp; see ``fit_input``).

        With a ``saturation_weight``, the ``saturation`` term is that weight times the
        mean of ``max(0, |logit| - SATURATION_LIMIT)²``: where the last convolution goes
        past :data:`SATURATION_LIMIT` the picture is flat black or white (a blob) and
        tanh passes no gradient back from any other term; this one pulls it back.

        With a ``spike_weight``, the ``spike`` term is that weight times the batch mean of
        ``ml.losses.spike_loss`` of the net's inner maps: no droplets."""
        logits = inner = None
        if isinstance(y_pred, (tuple, list)):
            y_pred, logits, inner = y_pred
        stylized = ops.cast(y_pred, "float32")
        if self.is_bank:
            photos, slots = x
            painting = ops.take(ops.convert_to_tensor(self.painting_of_slot), slots)
            # Identity examples (painting -1) get no style term, and the painted ones
            # share the batch's style weight, as in a single-style run of their own.
            painted = ops.cast(painting >= 0, "float32")
            share = ops.cast(ops.shape(painted)[0], "float32") / ops.maximum(ops.sum(painted), 1.0)
            scale = ops.cast(y, "float32") * painted * share * ops.take(
                ops.convert_to_tensor(self.painting_style_scales), ops.maximum(painting, 0))
            photos = ops.cast(photos, "float32")
            terms = self.perceptual_loss(photos, stylized, style_scale=scale,
                                         style_index=ops.maximum(painting, 0))
            # Slot 0 must give the photo back (strength interpolates towards it): the
            # content loss alone leaves its colours free (docs/design/banks.md).
            identity = ops.cast(painting < 0, "float32")
            pixel_error = ops.mean(ops.square(stylized - photos), axis=(1, 2, 3))
            terms["identity"] = self.identity_weight * ops.mean(identity * pixel_error)
            terms["total"] = terms["total"] + terms["identity"]
        else:
            style_scale = 1.0 if y is None else ops.mean(ops.cast(y, "float32"))
            terms = self.perceptual_loss(ops.cast(x, "float32"), stylized, style_scale=style_scale)
        if self.saturation_weight and logits is not None:
            excess = ops.relu(ops.abs(ops.cast(logits, "float32")) - SATURATION_LIMIT)
            terms["saturation"] = self.saturation_weight * ops.mean(ops.square(excess))
            terms["total"] = terms["total"] + terms["saturation"]
        if self.spike_weight and inner is not None:
            terms["spike"] = self.spike_weight * ops.mean(spike_loss(inner))
            terms["total"] = terms["total"] + terms["spike"]
        for name in self.term_names:
            self.trackers[name].update_state(terms[name])
        self.trackers["output_mean"].update_state(ops.mean(stylized))
        self.trackers["output_std"].update_state(ops.std(stylized))
        return terms["total"]

    @property
    def painted_slots(self) -> list[int]:
        """The slots this run paints (with a painting in the loss)."""
        return [int(s) for s in np.flatnonzero(self.painting_of_slot >= 0)]

    def preview(self, photos) -> np.ndarray:
        """The net's output for ``photos`` (float32); a bank paints photo ``i`` in its
        ``i``-th painted slot, cycling, so samples and checks see every style."""
        if not self.is_bank:
            return np.asarray(ops.convert_to_numpy(self.transform_net(photos)), np.float32)
        painted = self.painted_slots
        slots = [painted[i % len(painted)] for i in range(len(photos))]
        weights = bank.one_hot(slots, self.transform_net.num_styles)
        return np.asarray(ops.convert_to_numpy(self.transform_net(photos, weights)), np.float32)


def build_transform_net(config: TrainConfig, dtype=None, num_styles: int = 1) -> keras.Model:
    from ml.model import TransformNet

    kwargs = {"dtype": dtype} if dtype else {}
    net = TransformNet(
        width=config.width,
        num_residual_blocks=config.num_residual_blocks,
        output_kernel_size=config.output_kernel_size,
        num_styles=num_styles,
        norm_clip_z=config.norm_clip_z,
        edge_margin=config.edge_margin,
        **kwargs,
    )
    net.build((None, None, None, 3))
    return net


@dataclass
class BankPlan:
    """What a bank run trains: how many slots, which slot has which painting, and
    for a slot fine-tune the (grown) starting weights everything else keeps."""

    num_styles: int
    painting_of_slot: list[int]
    base_weights: list[np.ndarray] | None = None  # fine-tune: the bank it starts from
    architecture: dict | None = None  # fine-tune: the bank's shape and norms

    def applied_to(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the network shape of the bank being fine-tuned."""
        return config.replace(**self.architecture) if self.architecture else config

    @property
    def choices(self) -> list[int]:
        """The slots examples are drawn from."""
        if self.base_weights is None:
            return list(range(self.num_styles))
        return [slot for slot, painting in enumerate(self.painting_of_slot) if painting >= 0]


def bank_plan(config: TrainConfig) -> BankPlan | None:
    """The bank ``config`` trains, or None for a single-style run."""
    if config.paintings:
        return BankPlan(len(config.paintings) + 1, [-1, *range(len(config.paintings))])
    if config.train_slot is None:
        return None
    from ml.model import TransformNet  # registers the class load_model looks up

    start = keras.saving.load_model(config.init_weights, compile=False)
    if not isinstance(start, TransformNet):
        raise ValueError(f"{config.init_weights} is not a TransformNet")
    if getattr(start, "num_styles", 1) < 2:
        raise ValueError(f"{config.init_weights} is a single-style network, not a bank")
    slot = config.train_slot
    if slot > start.num_styles:
        raise ValueError(f"the bank has {start.num_styles} slots: --train-slot may be at "
                         f"most {start.num_styles} (the next free one), got {slot}")
    if slot == start.num_styles:
        start = bank.grow(start, slot + 1)
    painting_of_slot = [-1] * start.num_styles
    painting_of_slot[slot] = 0
    shape = ("width", "num_residual_blocks", "output_kernel_size", "norm_clip_z", "edge_margin")
    return BankPlan(start.num_styles, painting_of_slot,
                    [np.asarray(w, np.float32) for w in start.get_weights()],
                    {name: getattr(start, name) for name in shape})


def build_perceptual_loss(config: TrainConfig, dtype=None):
    from ml.losses import PerceptualLoss, build_loss_network

    network = config.loss_network
    weights = {
        name: getattr(config, name)
        for name in ("content_weight", "style_weight", "tv_weight", "style_layer_weights")
        if getattr(config, name) is not None
    }
    return PerceptualLoss(
        list(config.paintings) or config.painting,
        network=network,
        style_size=config.painting_size,
        # Its default layers: the network's style layers and content layer.
        loss_network=build_loss_network(network, config.loss_weights, dtype=dtype),
        light_weight=config.light_weight,
        light_size=config.light_size,
        spot_weight=config.spot_weight,
        shadow_weight=config.shadow_weight,
        **weights,
    )


# --------------------------------------------------------------------------- precision


def gpu_available() -> bool:
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(device.platform == "gpu" for device in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # a broken GPU stack means: train on the CPU
        return False
    return False


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(config: TrainConfig) -> str:
    """The dtype policy a run trains in: ``config.precision`` with ``auto`` resolved.

    ``auto``: ``mixed_float16`` on a GPU; ``mixed_bfloat16`` on a CPU with native
    bfloat16 under TensorFlow; otherwise ``float32``. Why and measurements:
    docs/design/training.md.
    """
    if config.precision != "auto":
        return config.precision
    if gpu_available():
        return "mixed_float16"
    if keras.backend.backend() == "tensorflow" and cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


# --------------------------------------------------------------------------- data


def endless_batches(dataset, prefetch: int = 4) -> Iterable:
    """Batches from a PyDataset or any re-iterable (a list of batches), forever."""
    while True:
        produced = False
        if isinstance(dataset, keras.utils.PyDataset):
            batches = _prefetched(dataset, prefetch)
        else:
            batches = iter(dataset)
        for batch in batches:
            produced = True
            yield np.asarray(ops.convert_to_numpy(batch), dtype=np.float32)
        if not produced:
            raise ValueError("the training dataset yielded no batch")


def _prefetched(dataset: keras.utils.PyDataset, depth: int) -> Iterable:
    """One epoch of a PyDataset, loading ``depth`` batches ahead in threads.

    Pillow releases the GIL while decoding and resizing, so threads overlap
    photo loading with the training step.
    """
    with ThreadPoolExecutor(max_workers=depth) as pool:
        ahead = min(depth, len(dataset))
        pending = deque(pool.submit(dataset.__getitem__, i) for i in range(ahead))
        for index in range(len(dataset)):
            batch = pending.popleft().result()
            if index + depth < len(dataset):
                pending.append(pool.submit(dataset.__getitem__, index + depth))
            yield batch
    dataset.on_epoch_end()


def default_dataset(config: TrainConfig, seed: int, skips: SkipCounter):
    if config.data_dir is None:
        raise ValueError("TrainConfig.data_dir is required when no dataset is given")
    options = dict(size=config.size, batch=config.batch, seed=seed, skips=skips,
                   scale_range=(1.0, config.max_scale), augment=config.augment,
                   crush_blacks=config.crush_blacks)
    if keras.backend.backend() == "tensorflow":
        return make_dataset(config.data_dir, **options)
    return PhotoBatches(config.data_dir, **options)


def style_scale(step: int, warmup_steps: int) -> float:
    """The style weight's multiplier at global ``step`` (1-based): 0 -> 1 over warm-up."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step - 1) / warmup_steps)


class SlotSampler:
    """A bank run's random slot per example: ``sampler(step, n)`` -> int32 ``(n,)``,
    the same for the same seed and global step (so a resume does not replay)."""

    def __init__(self, choices, seed: int):
        self.choices = np.asarray(choices, np.int32)
        self.seed = int(seed)

    def __call__(self, step: int, n: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, step))
        return rng.choice(self.choices, size=n).astype(np.int32)


def fit_input(dataset, *, start_step: int = 0, warmup_steps: int = 0,
              slots: SlotSampler | None = None, batch: int | None = None):
    """``(first photo batch, what fit iterates)``.

    ``fit`` gets ``(photos, style_scale)`` pairs, the scale (one per photo) following
    :func:`style_scale` from the global step ``start_step + 1`` on, so a resumed run
    continues the ramp; with ``slots`` (a bank) ``((photos, slots), style_scale)``,
    ``batch`` then being the largest batch the dataset yields. A tf.data pipeline
    repeats; anything else (a PyDataset, a list of batches) becomes an endless
    generator.
    """
    if _is_tf_dataset(dataset):
        import tensorflow as tf

        repeated = dataset.repeat()
        first = np.asarray(next(iter(repeated.take(1))), dtype=np.float32)
        if slots is None:
            scales = tf.data.Dataset.from_generator(
                lambda: _scales(start_step, warmup_steps),
                output_signature=tf.TensorSpec((), tf.float32))
            pairs = tf.data.Dataset.zip((repeated, scales)).map(
                lambda images, scale: (images, tf.fill(tf.shape(images)[:1], scale)))
            return first, pairs
        if batch is None:
            raise ValueError("a bank's tf.data input needs the batch size")
        targets = tf.data.Dataset.from_generator(
            lambda: _bank_targets(start_step, warmup_steps, slots, batch),
            output_signature=(tf.TensorSpec((), tf.float32), tf.TensorSpec((batch,), tf.int32)))

        def pair(images, target):
            n = tf.shape(images)[0]
            return (images, target[1][:n]), tf.fill([n], target[0])

        return first, tf.data.Dataset.zip((repeated, targets)).map(pair)
    batches = endless_batches(dataset)
    first = next(batches)
    return first, _generator(itertools.chain([first], batches), start_step, warmup_steps, slots)


def _scales(start_step, warmup_steps):
    """The style scale of every step from ``start_step + 1`` on, forever."""
    for step in itertools.count(start_step + 1):
        yield np.float32(style_scale(step, warmup_steps))


def _bank_targets(start_step, warmup_steps, slots, batch):
    for step, scale in zip(itertools.count(start_step + 1), _scales(start_step, warmup_steps)):
        yield scale, slots(step, batch)


def _generator(batches, start_step, warmup_steps, slots=None):
    # fit takes generators (not other iterators) of (inputs, targets) tuples.
    steps = itertools.count(start_step + 1)
    for batch, scale, step in zip(batches, _scales(start_step, warmup_steps), steps):
        scales = np.full((len(batch),), scale, np.float32)
        yield (batch if slots is None else (batch, slots(step, len(batch)))), scales


def _is_tf_dataset(dataset) -> bool:
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return isinstance(dataset, tf.data.Dataset)


# --------------------------------------------------------------------------- training


def build_trainer(config: TrainConfig, plan: BankPlan | None = None) -> StyleTrainer:
    """The compiled trainer of ``config``; ``plan`` is its :func:`bank_plan` if known
    (then ``config`` must already carry its shape: ``plan.applied_to(config)``)."""
    policy = resolve_precision(config)
    dtype = None if policy == "float32" else policy
    if plan is None:
        plan = bank_plan(config)
        config = plan.applied_to(config) if plan is not None else config
    net = build_transform_net(config, dtype=dtype, num_styles=plan.num_styles if plan else 1)
    if plan is not None and plan.base_weights is not None:
        net.set_weights(plan.base_weights)
        bank.freeze_all_but_style_norms(net)
    trainer = StyleTrainer(net, build_perceptual_loss(config, dtype=dtype),
                           painting_of_slot=plan.painting_of_slot if plan else None,
                           identity_weight=config.identity_weight,
                           saturation_weight=config.saturation_weight,
                           spike_weight=config.spike_weight,
                           painting_style_scales=(config.painting_style_scales
                                                  if plan and plan.base_weights is None else None),
                           **({"dtype": dtype} if dtype else {}))
    # A mixed_float16 trainer gets a LossScaleOptimizer from compile().
    trainer.compile(optimizer=keras.optimizers.Adam(
        learning_rate=learning_rate(config), global_clipnorm=config.clipnorm))
    # Built here, not inside the first traced step: that would trace it twice,
    # and load_checkpoint needs the optimizer variables to exist.
    trainer.optimizer.build(trainer.trainable_variables)
    trainer.precision = policy
    return trainer


def learning_rate(config: TrainConfig):
    """``config.lr``, or a cosine decay from it to a tenth of it over ``config.steps``.

    The schedule runs on the optimizer's iteration count, which checkpoints keep, so a
    resumed run continues where it left off.
    """
    if config.lr_schedule == "constant":
        return config.lr
    return keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=config.steps, alpha=0.1)


class CannotTrain(ValueError):
    """Something a run needs is missing or unreadable; found before any training."""


def check_can_train(config: TrainConfig, *, needs_photos: bool = True) -> None:
    """Raise :class:`CannotTrain` naming what is wrong, in seconds, before a run starts:
    every painting readable, photos in ``data_dir``, the loss weights, the starting
    network and the run folder writable."""
    problems = []
    for painting in config.paintings or (config.painting,):
        why = "no painting given" if not painting else _unreadable(painting)
        if why:
            problems.append(f"the painting {painting or '(none)'} cannot be read ({why})")
    if needs_photos:
        try:
            if not config.data_dir or not list_images(config.data_dir):
                problems.append(f"there are no JPEG or PNG photos in {config.data_dir}")
        except FileNotFoundError:
            problems.append(f"the photo folder {config.data_dir} does not exist")
    for name in ("loss_weights", "init_weights"):
        value = getattr(config, name)
        if value in (None, "imagenet"):
            continue
        if not Path(value).is_file():
            problems.append(f"{name} {value} is not a file")
        elif why := _unloadable_weights(value):
            problems.append(f"{name} {value} cannot be loaded ({why})")
    try:
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(config.out_dir) / ".write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        problems.append(f"the run folder {config.out_dir} is not writable ({error})")
    if problems:
        raise CannotTrain("Cannot train: " + "; ".join(problems) + ".")


def _unloadable_weights(path) -> str | None:
    """Why Keras could not load weights from ``path``, or None: a ``.keras`` file must
    be a readable zip holding its config and weights, anything else a readable HDF5
    file (``.weights.h5``, ``.h5``) with at least one array in it."""
    import zipfile

    try:
        if str(path).endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                has_weights = any(n.startswith("model.weights") for n in names)
                if "config.json" not in names or not has_weights:
                    return "not a Keras model archive"
                if archive.testzip() is not None:
                    return "the archive is damaged"
            return None
        import h5py

        with h5py.File(path, "r") as weights:
            arrays = []
            weights.visititems(lambda name, item: arrays.append(name)
                               if isinstance(item, h5py.Dataset) else None)
            if not arrays:
                return "the file holds no weights"
    except (OSError, zipfile.BadZipFile) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _unreadable(path) -> str | None:
    """Why Pillow cannot decode the image at ``path``, or None (the loss reads paintings
    with Pillow, so any format it reads will do)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # Pillow raises many types for bad files
        return f"{type(error).__name__}: {error}"
    return None


def train(
    config: TrainConfig,
    *,
    dataset=None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    callbacks: Iterable[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train (or resume) a style with ``fit``; see the module docstring for what is written.

    ``dataset``: a ``tf.data.Dataset``, a ``keras.utils.PyDataset`` or a list of
    float (batch, H, W, 3) arrays in [0, 255]; default: ``config.data_dir``'s photos.
    ``callbacks`` run after the run's own (``training_callbacks``), e.g. the bank run's
    held-out scores (``ml.bank_run``).
    Raises ``CannotTrain`` before anything runs when an input is missing (see
    :func:`check_can_train`), ``TrainingDiverged`` (naming the last good checkpoint)
    on divergence.
    """
    check_can_train(config, needs_photos=dataset is None)
    out_dir = Path(config.out_dir)
    if not config.resume:
        checkpoints.set_aside_earlier_checkpoints(out_dir)
    checkpoint = latest_checkpoint(out_dir) if config.resume else None
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    plan = bank_plan(config)
    if plan is not None:
        config = plan.applied_to(config)
    trainer = build_trainer(config, plan)
    start_step = 0
    if checkpoint is not None:
        start_step = load_checkpoint(trainer, checkpoint)
        # A different seed after a resume, so the data order is not replayed.
        keras.utils.set_random_seed(config.seed + start_step)
    elif config.init_weights and config.train_slot is None:
        trainer.transform_net.load_weights(config.init_weights)

    skips = SkipCounter()
    if dataset is None:
        dataset = default_dataset(config, config.seed + start_step, skips)
    checkpoints.write_json(out_dir / "config.json", config.as_dict())

    state = RunState(start_step=start_step, steps=config.steps, term_names=trainer.term_names)
    if config.steps > start_step:
        sampler = SlotSampler(plan.choices, config.seed) if plan else None
        sample_photos, batches = fit_input(dataset, start_step=start_step,
                                           warmup_steps=config.style_warmup_steps,
                                           slots=sampler, batch=config.batch)
        trainer.fit(
            batches,
            epochs=1,
            shuffle=False,  # the photo pipeline shuffles
            steps_per_epoch=config.steps - start_step,
            callbacks=[*training_callbacks(config, state, out_dir, sample_photos, on_progress),
                       *callbacks],
            verbose=config.verbose,
        )

    model_path = out_dir / FINAL_MODEL_NAME
    final = float32_copy(config, trainer.transform_net)
    if plan is not None and plan.base_weights is not None:
        # Only the fine-tuned slot changes; every other weight is the bank's own.
        final.set_weights(bank.splice_slot(plan.base_weights, final, config.train_slot))
    final.save(model_path)
    return TrainResult(
        steps=state.step,
        steps_this_run=state.step - start_step,
        seconds=state.seconds,
        final_losses=state.last_losses,
        mean_losses=state.mean_losses(),
        model_path=model_path,
        model=final,
        precision=trainer.precision,
        skipped_photos=skips.count,
        last_checkpoint=latest_checkpoint(out_dir),
        config=config,
    )


def training_callbacks(config: TrainConfig, state: RunState, out_dir: Path, sample_photos,
                       on_progress) -> list[keras.callbacks.Callback]:
    """The callbacks of one run, in the order they must run after each step."""
    monitor = DivergenceMonitor()
    callbacks = [
        StepLog(state),
        DivergenceStop(state, out_dir, monitor),
        AtomicCheckpoint(state, out_dir, every=config.checkpoint_every,
                         keep=config.keep_checkpoints, probe_images=sample_photos,
                         monitor=monitor, config_dict=config.as_dict()),
        SampleImages(state, out_dir, sample_photos, every=config.sample_every),
    ]
    if config.max_seconds is not None:
        callbacks.append(TimeLimit(state, config.max_seconds))
    if tensorboard_available():
        callbacks.append(GlobalStepTensorBoard(out_dir / "logs", initial_step=state.start_step,
                                               update_freq=config.log_every))
    if on_progress is not None:
        callbacks.append(ProgressHook(state, on_progress))
    return callbacks


def float32_copy(config: TrainConfig, net: keras.Model) -> keras.Model:
    """The trained net as a float32 model (what is exported and served)."""
    if net.dtype_policy.name == "float32":
        return net
    copy = build_transform_net(config, num_styles=net.num_styles)
    copy.set_weights([np.asarray(w, dtype=np.float32) for w in net.get_weights()])
    return copy


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    needed = ("data_dir", "out_dir") if "paintings" in vars(args) else (
        "painting", "data_dir", "out_dir")
    missing = [spec.metadata["flag"] for spec in FLAG_FIELDS
               if spec.name in needed and spec.name not in vars(args)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return config_from_args(args)


def main(argv: list[str] | None = None) -> None:
    try:
        result = train(parse_args(argv))
    except (TrainingDiverged, CannotTrain) as error:
        raise SystemExit(f"error: {error}") from error
    print(
        f"\n{result.steps} steps in {result.seconds:.0f} s ({result.precision}); final losses "
        f"{result.final_losses}; {result.skipped_photos} photos skipped; "
        f"model at {result.model_path}"
    )


if __name__ == "__main__":
    main()
