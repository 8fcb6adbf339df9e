"""Train a TransformNet for one style, from plain Python or the command line.

    python -m ml.train --style PAINTING --data COCO/train2014 --out runs/starry

The step is Keras' own ``train_on_batch`` on ``StyleTrainer``, a small
``keras.Model`` whose ``compute_loss`` is the perceptual loss, so the same code
trains on the tensorflow, jax and torch backends.

Checkpoints (``out_dir/checkpoints/``)::

    latest.json                       {"step": N, "dir": "step-0000000N"}
    step-0000000N/transform_net.weights.h5
    step-0000000N/optimizer.npz       optimizer variables (Adam moments, iterations)
    step-0000000N/state.json          step, losses, config

A checkpoint is written to a temporary folder, checked (finite weights, a
non-constant finite output) and renamed; only then does ``latest.json`` move
to it, so the last good checkpoint is never replaced by a bad one.
Training stops with ``TrainingDiverged`` on a non-finite or exploding loss or
on a NaN or constant (e.g. black) output image.

A fresh (not ``resume``) run first moves an earlier run's ``checkpoints/`` to
``checkpoints.previous/``.

Outputs in ``out_dir``: ``transform_net.keras`` (final model, config + weights),
``logs/`` (TensorBoard, tensorflow backend only), ``samples/step-N.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import statistics
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import keras
import numpy as np
from keras import ops

from ml.data import DEFAULT_SEED, PhotoBatches, SkipCounter, make_dataset

LOSS_NAMES = ("total", "content", "style", "tv")
FINAL_MODEL_NAME = "transform_net.keras"
CHECKPOINT_WEIGHTS = "transform_net.weights.h5"
CHECKPOINT_OPTIMIZER = "optimizer.npz"
CHECKPOINT_STATE = "state.json"
LATEST = "latest.json"


class TrainingDiverged(RuntimeError):
    """Training produced NaN/inf, an exploding loss or a dead (NaN/constant) image."""


@dataclass
class TrainConfig:
    style_image: str
    data_dir: str | None
    out_dir: str
    steps: int = 40_000
    size: int = 256
    batch: int = 4
    loss_network: str = "vgg19"
    loss_weights: str | None = "imagenet"  # "imagenet", a weights file, or None (random)
    content_weight: float | None = None  # None: the PerceptualLoss default
    style_weight: float | None = None
    tv_weight: float | None = None
    style_size: int | None = None
    lr: float = 1e-3
    width: float = 1.0
    num_residual_blocks: int = 5
    seed: int = DEFAULT_SEED
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    sample_every: int = 500
    log_every: int = 10
    resume: bool = False
    mixed_precision: bool | None = None  # None: only when a GPU is present
    output_kernel_size: int = 9
    max_seconds: float | None = None  # stop (with a checkpoint) after this much training time
    # Start from another style's transform net (a .keras or .weights.h5 file of the
    # same architecture) instead of random weights: a fine-tune converges much sooner.
    init_weights: str | None = None
    verbose: int = 1

    def __post_init__(self):
        for name in ("steps", "size", "batch", "checkpoint_every", "sample_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.loss_network not in ("vgg19", "vgg16"):
            raise ValueError(f"loss_network must be vgg19 or vgg16, got {self.loss_network!r}")


@dataclass
class TrainProgress:
    """What ``on_progress`` receives after every step."""

    step: int
    steps: int
    seconds: float
    losses: dict[str, float]


@dataclass
class TrainResult:
    steps: int  # global step reached (includes steps done before a resume)
    steps_this_run: int
    seconds: float
    final_losses: dict[str, float]
    mean_losses: dict[str, float]
    model_path: Path  # transform_net.keras: config + final weights
    model: keras.Model
    skipped_photos: int = 0
    last_checkpoint: Path | None = None


# --------------------------------------------------------------------------- model


class StyleTrainer(keras.Model):
    """Wraps the transform net so ``train_on_batch`` optimises the perceptual loss.

    Besides the loss terms it tracks the output image's mean and standard
    deviation: on TF's CPU kernels a NaN image can still give finite VGG
    losses, so the image itself must be watched.
    """

    def __init__(self, transform_net, perceptual_loss, **kwargs):
        super().__init__(**kwargs)
        self.transform_net = transform_net
        self.perceptual_loss = perceptual_loss
        # Tracked as an attribute so its (frozen) VGG variables are part of the
        # model state that the jax backend passes through its stateless step.
        self.loss_network = perceptual_loss.loss_network
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in (*LOSS_NAMES, "output_mean", "output_std")
        }

    def call(self, images, training=False):
        return self.transform_net(images, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        stylized = ops.cast(y_pred, "float32")
        terms = self.perceptual_loss(ops.cast(x, "float32"), stylized)
        for name in LOSS_NAMES:
            self.trackers[name].update_state(terms[name])
        self.trackers["output_mean"].update_state(ops.mean(stylized))
        self.trackers["output_std"].update_state(ops.std(stylized))
        return terms["total"]


def build_transform_net(config: TrainConfig, dtype=None) -> keras.Model:
    from ml.model import TransformNet

    kwargs = {"dtype": dtype} if dtype else {}
    net = TransformNet(
        width=config.width,
        num_residual_blocks=config.num_residual_blocks,
        output_kernel_size=config.output_kernel_size,
        **kwargs,
    )
    net(np.zeros((1, config.size, config.size, 3), "float32"))
    return net


def build_perceptual_loss(config: TrainConfig):
    from ml.losses import PerceptualLoss

    weights = {
        name: getattr(config, name)
        for name in ("content_weight", "style_weight", "tv_weight", "style_size")
        if getattr(config, name) is not None
    }
    return PerceptualLoss(
        config.style_image,
        network=config.loss_network,
        weights=config.loss_weights,
        **weights,
    )


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


# --------------------------------------------------------------------------- divergence


class DivergenceMonitor:
    """Raises ``TrainingDiverged`` on a bad step (see ``check``)."""

    def __init__(self, explode_factor=100.0, window=50, warmup=10, min_output_std=0.5):
        self.explode_factor = explode_factor
        self.warmup = warmup
        self.min_output_std = min_output_std
        self.recent_totals: deque[float] = deque(maxlen=window)

    def check(self, step: int, losses: dict[str, float], output_mean: float, output_std: float):
        bad = [name for name, value in losses.items() if not math.isfinite(value)]
        if bad:
            raise TrainingDiverged(f"step {step}: non-finite loss {', '.join(bad)}: {losses}")
        if not (math.isfinite(output_mean) and math.isfinite(output_std)):
            raise TrainingDiverged(
                f"step {step}: the output image holds NaN/inf although the losses look "
                f"finite ({losses}); lower the learning rate or the style weight"
            )
        if output_std < self.min_output_std:
            raise TrainingDiverged(
                f"step {step}: the output image is constant (mean {output_mean:.1f}, "
                f"std {output_std:.3f}); the network died. Lower lr or style weight"
            )
        total = losses["total"]
        if len(self.recent_totals) >= self.warmup:
            median = statistics.median(self.recent_totals)
            if total > self.explode_factor * median:
                raise TrainingDiverged(
                    f"step {step}: total loss {total:.4g} exploded past "
                    f"{self.explode_factor:g}x its running median {median:.4g}"
                )
        self.recent_totals.append(total)


def output_stats(net, images) -> tuple[float, float]:
    stylized = np.asarray(ops.convert_to_numpy(net(images)), dtype=np.float32)
    return float(stylized.mean()), float(stylized.std())


def weights_finite(model) -> bool:
    return all(np.isfinite(v.numpy()).all() for v in model.weights)


# --------------------------------------------------------------------------- checkpoints


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def latest_checkpoint(out_dir) -> Path | None:
    pointer = Path(out_dir) / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    return pointer.parent / json.loads(pointer.read_text())["dir"]


def save_checkpoint(
    trainer: StyleTrainer,
    out_dir,
    step: int,
    state: dict,
    probe_images,
    monitor: DivergenceMonitor,
    keep: int = 2,
) -> Path:
    """Write a checkpoint atomically after checking that the weights are healthy."""
    net = trainer.transform_net
    if not weights_finite(net):
        raise TrainingDiverged(f"step {step}: the weights hold NaN/inf; checkpoint not written")
    mean, std = output_stats(net, probe_images)
    if not (math.isfinite(std) and std >= monitor.min_output_std):
        raise TrainingDiverged(
            f"step {step}: the output image is NaN or constant (mean {mean}, std {std}); "
            "checkpoint not written"
        )
    root = Path(out_dir) / "checkpoints"
    final = root / checkpoint_dir_name(step)
    temp = root / f".{final.name}.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    net.save_weights(temp / CHECKPOINT_WEIGHTS)
    optimizer_store = {}
    trainer.optimizer.save_own_variables(optimizer_store)
    np.savez(temp / CHECKPOINT_OPTIMIZER, **optimizer_store)
    _write_json(temp / CHECKPOINT_STATE, {"step": step, **state})
    shutil.rmtree(final, ignore_errors=True)
    temp.rename(final)
    _write_json(root / LATEST, {"step": step, "dir": final.name})
    _prune_checkpoints(root, keep=keep, current=final)
    return final


def load_checkpoint(trainer: StyleTrainer, checkpoint: Path) -> int:
    """Restore net weights and optimizer state; returns the checkpoint's step."""
    trainer.transform_net.load_weights(checkpoint / CHECKPOINT_WEIGHTS)
    with np.load(checkpoint / CHECKPOINT_OPTIMIZER) as store:
        trainer.optimizer.load_own_variables({key: store[key] for key in store.files})
    return int(json.loads((checkpoint / CHECKPOINT_STATE).read_text())["step"])


def set_aside_earlier_checkpoints(out_dir) -> Path | None:
    """Move an earlier run's checkpoints to ``checkpoints.previous/`` before a fresh run.

    A fresh run must not mix its checkpoints with older ones (pruning and
    ``latest.json`` would see both), yet the older run stays recoverable until
    the next fresh run replaces it.
    """
    current = Path(out_dir) / "checkpoints"
    if not current.is_dir():
        return None
    previous = current.with_name("checkpoints.previous")
    shutil.rmtree(previous, ignore_errors=True)
    current.rename(previous)
    return previous


def _prune_checkpoints(root: Path, keep: int, current: Path) -> None:
    steps = sorted(path for path in root.glob("step-*") if path.is_dir())
    for old in steps[: max(0, len(steps) - keep)]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, payload: dict) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(temp, path)


# --------------------------------------------------------------------------- logging


class SummaryLog:
    """TensorBoard scalars/images with tf.summary; a no-op without TF or tensorboard."""

    def __init__(self, log_dir: Path):
        self.writer = None
        # tf.summary needs the tensorboard package, which TF no longer pulls in.
        if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard"):
            import tensorflow as tf

            self.tf = tf
            self.writer = tf.summary.create_file_writer(str(log_dir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        with self.writer.as_default(step=step):
            for name, value in values.items():
                self.tf.summary.scalar(f"loss/{name}", value)

    def images(self, step: int, images: np.ndarray) -> None:
        if self.writer is None:
            return
        with self.writer.as_default(step=step):
            self.tf.summary.image("stylized", images.astype(np.uint8), max_outputs=len(images))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def save_samples(net, photos: np.ndarray, path: Path) -> np.ndarray:
    from ml.evaluate import contact_sheet

    stylized = np.clip(np.round(ops.convert_to_numpy(net(photos))), 0, 255).astype(np.uint8)
    contact_sheet(photos.astype(np.uint8), stylized, path, thumb=photos.shape[1])
    return stylized


# --------------------------------------------------------------------------- data


def endless_batches(dataset, prefetch: int = 4) -> Iterable:
    """Batches from a tf.data.Dataset, a PyDataset or any re-iterable, forever."""
    while True:
        produced = False
        if isinstance(dataset, keras.utils.PyDataset):
            batches = _prefetched(dataset, prefetch)
        else:
            batches = iter(dataset)
        for batch in batches:
            produced = True
            yield batch
        if not produced:
            raise ValueError("the training dataset yielded no batch")


def _prefetched(dataset: keras.utils.PyDataset, depth: int) -> Iterable:
    """One epoch of a PyDataset, loading ``depth`` batches ahead in threads.

    Pillow releases the GIL while decoding and resizing, so threads overlap
    photo loading with the training step.
    """
    with ThreadPoolExecutor(max_workers=depth) as pool:
        pending = deque(pool.submit(dataset.__getitem__, i) for i in range(min(depth, len(dataset))))
        for index in range(len(dataset)):
            batch = pending.popleft().result()
            if index + depth < len(dataset):
                pending.append(pool.submit(dataset.__getitem__, index + depth))
            yield batch
    dataset.on_epoch_end()


def default_dataset(config: TrainConfig, seed: int, skips: SkipCounter):
    if config.data_dir is None:
        raise ValueError("TrainConfig.data_dir is required when no dataset is given")
    if keras.backend.backend() == "tensorflow":
        return make_dataset(config.data_dir, size=config.size, batch=config.batch, seed=seed, skips=skips)
    return PhotoBatches(config.data_dir, size=config.size, batch=config.batch, seed=seed, skips=skips)


# --------------------------------------------------------------------------- training


def build_trainer(config: TrainConfig) -> StyleTrainer:
    dtype = "mixed_float16" if _use_mixed_precision(config) else None
    net = build_transform_net(config, dtype=dtype)
    trainer = StyleTrainer(net, build_perceptual_loss(config), **({"dtype": dtype} if dtype else {}))
    # A mixed_float16 trainer gets a LossScaleOptimizer from compile().
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=config.lr))
    # Built here, not inside the first traced step: that would trace it twice,
    # and load_checkpoint needs the optimizer variables to exist.
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


def _use_mixed_precision(config: TrainConfig) -> bool:
    if config.mixed_precision is None:
        return gpu_available()
    return config.mixed_precision


def train(
    config: TrainConfig,
    *,
    dataset=None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train (or resume) a style; see the module docstring for what is written."""
    out_dir = Path(config.out_dir)
    if not config.resume:
        set_aside_earlier_checkpoints(out_dir)
    checkpoint = latest_checkpoint(out_dir) if config.resume else None
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    trainer = build_trainer(config)
    start_step = 0
    if checkpoint is not None:
        start_step = load_checkpoint(trainer, checkpoint)
        # A different seed after a resume, so the data order is not replayed.
        keras.utils.set_random_seed(config.seed + start_step)
    elif config.init_weights:
        trainer.transform_net.load_weights(config.init_weights)

    skips = SkipCounter()
    if dataset is None:
        dataset = default_dataset(config, config.seed + start_step, skips)
    batches = endless_batches(dataset)

    _write_json(out_dir / "config.json", dataclasses.asdict(config))
    loop = _TrainingLoop(config, trainer, out_dir, start_step, on_progress)
    try:
        loop.run(batches)
    finally:
        loop.summaries.close()

    model_path = out_dir / FINAL_MODEL_NAME
    trainer.transform_net.save(model_path)
    return TrainResult(
        steps=loop.step,
        steps_this_run=loop.step - start_step,
        seconds=loop.seconds,
        final_losses=loop.last_losses,
        mean_losses=loop.mean_losses(),
        model_path=model_path,
        model=trainer.transform_net,
        skipped_photos=skips.count,
        last_checkpoint=latest_checkpoint(out_dir),
    )


@dataclass
class _TrainingLoop:
    config: TrainConfig
    trainer: StyleTrainer
    out_dir: Path
    step: int
    on_progress: Callable[[TrainProgress], None] | None
    seconds: float = 0.0
    last_losses: dict[str, float] = field(default_factory=dict)
    loss_sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LOSS_NAMES, 0.0))

    def __post_init__(self):
        self.monitor = DivergenceMonitor()
        self.summaries = SummaryLog(self.out_dir / "logs")
        self.start_step = self.step

    def run(self, batches) -> None:
        config = self.config
        progress = keras.utils.Progbar(
            config.steps, verbose=config.verbose, stateful_metrics=LOSS_NAMES
        )
        sample_photos = None
        started = time.perf_counter()
        for step in range(self.step + 1, config.steps + 1):
            images = next(batches)
            if sample_photos is None:
                sample_photos = np.asarray(ops.convert_to_numpy(images), dtype=np.float32)
            losses = self._train_step(step, images)
            self.step = step
            self.seconds = time.perf_counter() - started
            progress.update(step, [(name, losses[name]) for name in LOSS_NAMES])
            self._log(step, losses, sample_photos)
            out_of_time = config.max_seconds is not None and self.seconds >= config.max_seconds
            if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
                self._checkpoint(step, losses, sample_photos)
            if self.on_progress is not None:
                self.on_progress(TrainProgress(step, config.steps, self.seconds, losses))
            if out_of_time:
                break

    def _train_step(self, step: int, images) -> dict[str, float]:
        self.trainer.reset_metrics()
        logs = self.trainer.train_on_batch(images, return_dict=True)
        losses = {name: float(logs[name]) for name in LOSS_NAMES}
        self.monitor.check(step, losses, float(logs["output_mean"]), float(logs["output_std"]))
        self.last_losses = losses
        for name in LOSS_NAMES:
            self.loss_sums[name] += losses[name]
        return losses

    def _log(self, step: int, losses: dict[str, float], sample_photos: np.ndarray) -> None:
        if step % self.config.log_every == 0:
            self.summaries.scalars(step, losses)
        if step % self.config.sample_every == 0:
            path = self.out_dir / "samples" / f"step-{step:08d}.png"
            stylized = save_samples(self.trainer.transform_net, sample_photos, path)
            self.summaries.images(step, stylized)

    def _checkpoint(self, step: int, losses: dict[str, float], probe_images) -> None:
        state = {"losses": losses, "config": dataclasses.asdict(self.config)}
        save_checkpoint(
            self.trainer,
            self.out_dir,
            step,
            state,
            probe_images,
            self.monitor,
            keep=self.config.keep_checkpoints,
        )

    def mean_losses(self) -> dict[str, float]:
        done = max(1, self.step - self.start_step)
        return {name: total / done for name, total in self.loss_sums.items()}


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n")[0])
    parser.add_argument("--style", required=True, help="painting to learn")
    parser.add_argument("--data", required=True, help="folder of training photos (COCO train2014)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, final model")
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--loss-network", choices=("vgg19", "vgg16"), default="vgg19")
    parser.add_argument(
        "--loss-weights", default="imagenet",
        help='"imagenet" (download), a local VGG weights file, or "random" (tests only)',
    )
    parser.add_argument("--content-weight", type=float)
    parser.add_argument("--style-weight", type=float)
    parser.add_argument("--tv-weight", type=float)
    parser.add_argument("--style-size", type=int)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--residual-blocks", type=int, default=5)
    parser.add_argument("--output-kernel", type=int, default=9, help="kernel of the last conv")
    parser.add_argument("--init-weights", help="start from this transform net (.keras or .weights.h5)")
    parser.add_argument(
        "--max-seconds", type=float,
        help="stop after this much training time, with a checkpoint (the steps are a ceiling)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return TrainConfig(
        style_image=args.style,
        data_dir=args.data,
        out_dir=args.out,
        steps=args.steps,
        size=args.size,
        batch=args.batch,
        loss_network=args.loss_network,
        loss_weights=None if args.loss_weights == "random" else args.loss_weights,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        style_size=args.style_size,
        lr=args.lr,
        width=args.width,
        num_residual_blocks=args.residual_blocks,
        output_kernel_size=args.output_kernel,
        max_seconds=args.max_seconds,
        init_weights=args.init_weights,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        resume=args.resume,
    )


def main(argv: list[str] | None = None) -> None:
    try:
        result = train(parse_args(argv))
    except TrainingDiverged as error:
        raise SystemExit(f"error: {error}") from error
    print(
        f"\n{result.steps} steps in {result.seconds:.0f} s; final losses {result.final_losses}; "
        f"{result.skipped_photos} photos skipped; model at {result.model_path}"
    )


if __name__ == "__main__":
    main()
