"""Train a TransformNet for one style with ``Model.fit``, from Python or the command line.

    python -m ml.train --style PAINTING --data var/photos/train --out runs/starry \\
        [--preset fast|balanced|johnson] [any TrainConfig flag]

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

from ml import checkpoints
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
from ml.data import PhotoBatches, SkipCounter, make_dataset

__all__ = [
    "DivergenceMonitor",
    "StyleTrainer",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingDiverged",
    "build_trainer",
    "latest_checkpoint",
    "load_checkpoint",
    "parse_args",
    "resolve_precision",
    "save_checkpoint",
    "train",
]

LOSS_NAMES = ("total", "content", "style", "tv")
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


class StyleTrainer(keras.Model):
    """Wraps the transform net so ``fit`` optimises the perceptual loss.

    Its metrics are every weighted loss term (``perceptual_loss.term_names``) and the
    output image's mean and standard deviation: on TF's CPU kernels a NaN image can
    still give finite VGG losses, so the image itself must be watched.
    """

    def __init__(self, transform_net, perceptual_loss, **kwargs):
        super().__init__(**kwargs)
        self.transform_net = transform_net
        self.perceptual_loss = perceptual_loss
        # Tracked as an attribute so its (frozen) VGG variables are part of the
        # model state that the jax backend passes through its stateless step.
        self.loss_network = perceptual_loss.loss_network
        self.term_names = tuple(getattr(perceptual_loss, "term_names", LOSS_NAMES))
        self.trackers = {
            name: LatestValue(name=name) for name in (*self.term_names, "output_mean", "output_std")
        }

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.transform_net(images, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``y`` is the style scale of each example (the warm-up ramp; see ``fit_input``)."""
        stylized = ops.cast(y_pred, "float32")
        style_scale = 1.0 if y is None else ops.mean(ops.cast(y, "float32"))
        terms = self.perceptual_loss(ops.cast(x, "float32"), stylized, style_scale=style_scale)
        for name in self.term_names:
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


def build_perceptual_loss(config: TrainConfig, dtype=None):
    from ml.losses import PerceptualLoss, build_loss_network

    network = config.loss_network
    weights = {
        name: getattr(config, name)
        for name in ("content_weight", "style_weight", "tv_weight", "style_layer_weights")
        if getattr(config, name) is not None
    }
    return PerceptualLoss(
        config.style_image,
        network=network,
        style_size=config.painting_size,
        # Its default layers: the network's style layers and content layer.
        loss_network=build_loss_network(network, config.loss_weights, dtype=dtype),
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
    bfloat16 under TensorFlow (oneDNN: a 256 px batch-4 step 2.45 s -> 1.24 s on our
    CPU); otherwise ``float32``.
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
    options = dict(size=config.size, batch=config.batch, seed=seed, skips=skips,
                   scale_range=(1.0, config.max_scale), augment=config.augment)
    if keras.backend.backend() == "tensorflow":
        return make_dataset(config.data_dir, **options)
    return PhotoBatches(config.data_dir, **options)


def style_scale(step: int, warmup_steps: int) -> float:
    """The style weight's multiplier at global ``step`` (1-based): 0 -> 1 over warm-up."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step - 1) / warmup_steps)


def fit_input(dataset, *, start_step: int = 0, warmup_steps: int = 0):
    """``(first photo batch, what fit iterates)``.

    ``fit`` gets ``(photos, style_scale)`` pairs, the scale (one per photo) following
    :func:`style_scale` from the global step ``start_step + 1`` on, so a resumed run
    continues the ramp. A tf.data pipeline repeats; anything else (a PyDataset, a list
    of batches) becomes an endless generator.
    """
    if _is_tf_dataset(dataset):
        import tensorflow as tf

        repeated = dataset.repeat()
        first = np.asarray(next(iter(repeated.take(1))), dtype=np.float32)
        scales = tf.data.Dataset.from_generator(
            lambda: _scales(start_step, warmup_steps), output_signature=tf.TensorSpec((), tf.float32))
        pairs = tf.data.Dataset.zip((repeated, scales)).map(
            lambda images, scale: (images, tf.fill(tf.shape(images)[:1], scale)))
        return first, pairs
    batches = endless_batches(dataset)
    first = next(batches)
    return first, _generator(itertools.chain([first], batches), start_step, warmup_steps)


def _scales(start_step, warmup_steps):
    """The style scale of every step from ``start_step + 1`` on, forever."""
    for step in itertools.count(start_step + 1):
        yield np.float32(style_scale(step, warmup_steps))


def _generator(batches, start_step, warmup_steps):
    # fit takes generators (not other iterators) of (inputs, targets) tuples.
    for batch, scale in zip(batches, _scales(start_step, warmup_steps)):
        yield batch, np.full((len(batch),), scale, np.float32)


def _is_tf_dataset(dataset) -> bool:
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return isinstance(dataset, tf.data.Dataset)


# --------------------------------------------------------------------------- training


def build_trainer(config: TrainConfig) -> StyleTrainer:
    policy = resolve_precision(config)
    dtype = None if policy == "float32" else policy
    net = build_transform_net(config, dtype=dtype)
    trainer = StyleTrainer(net, build_perceptual_loss(config, dtype=dtype),
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


def train(
    config: TrainConfig,
    *,
    dataset=None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train (or resume) a style with ``fit``; see the module docstring for what is written.

    ``dataset``: a ``tf.data.Dataset``, a ``keras.utils.PyDataset`` or a list of
    float (batch, H, W, 3) arrays in [0, 255]; default: ``config.data_dir``'s photos.
    Raises ``TrainingDiverged`` (naming the last good checkpoint) on divergence.
    """
    out_dir = Path(config.out_dir)
    if not config.resume:
        checkpoints.set_aside_earlier_checkpoints(out_dir)
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
    checkpoints.write_json(out_dir / "config.json", config.as_dict())

    state = RunState(start_step=start_step, steps=config.steps, term_names=trainer.term_names)
    if config.steps > start_step:
        sample_photos, batches = fit_input(dataset, start_step=start_step,
                                           warmup_steps=config.style_warmup_steps)
        trainer.fit(
            batches,
            epochs=1,
            shuffle=False,  # the photo pipeline shuffles
            steps_per_epoch=config.steps - start_step,
            callbacks=training_callbacks(config, state, out_dir, sample_photos, on_progress),
            verbose=config.verbose,
        )

    model_path = out_dir / FINAL_MODEL_NAME
    final = float32_copy(config, trainer.transform_net)
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
    copy = build_transform_net(config)
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
    missing = [spec.metadata["flag"] for spec in FLAG_FIELDS
               if spec.name in ("style_image", "data_dir", "out_dir") and spec.name not in vars(args)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return config_from_args(args)


def main(argv: list[str] | None = None) -> None:
    try:
        result = train(parse_args(argv))
    except TrainingDiverged as error:
        raise SystemExit(f"error: {error}") from error
    print(
        f"\n{result.steps} steps in {result.seconds:.0f} s ({result.precision}); final losses "
        f"{result.final_losses}; {result.skipped_photos} photos skipped; model at {result.model_path}"
    )


if __name__ == "__main__":
    main()
