"""The ``Model.fit`` callbacks of a training run (keras-io style).

They share one :class:`RunState` (the global step, the time trained, the last and
summed loss terms; each is a :class:`RunCallback` of it), which :class:`StepLog`
updates first after every batch:

* :class:`StepLog` — per-step loss terms into the run state, ``on_progress`` hook;
* :class:`DivergenceStop` — raises ``TrainingDiverged`` on a NaN/inf or exploding
  loss or a NaN/constant output image, naming the last good checkpoint;
* :class:`AtomicCheckpoint` — verified checkpoints every N steps and at the end;
* :class:`SampleImages` — a contact sheet of the sample photos every N steps (and to
  TensorBoard where TensorFlow is installed);
* :class:`TimeLimit` — stops training after ``max_seconds``;
* :class:`GlobalStepTensorBoard` — ``keras.callbacks.TensorBoard`` counting steps
  from the resumed step, so a resumed run's curves continue.

Callbacks read ``self.model`` only when they must: on JAX that syncs the whole
training state back into the variables.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from ml import checkpoints
from ml.checkpoints import TrainingDiverged


@dataclass
class TrainProgress:
    """What ``on_progress`` receives after every step."""

    step: int
    steps: int
    seconds: float
    losses: dict[str, float]


@dataclass
class RunState:
    """What the callbacks of one ``fit`` share; read by ``train`` afterwards."""

    start_step: int
    steps: int  # the target global step
    term_names: tuple[str, ...]
    step: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    last_losses: dict[str, float] = field(default_factory=dict)
    loss_sums: dict[str, float] = field(default_factory=dict)
    output_mean: float = float("nan")
    output_std: float = float("nan")

    def __post_init__(self):
        self.step = self.start_step

    def mean_losses(self) -> dict[str, float]:
        done = max(1, self.step - self.start_step)
        return {name: total / done for name, total in self.loss_sums.items()}


class RunCallback(keras.callbacks.Callback):
    """A callback of one ``fit``: ``self.state`` is the :class:`RunState` it shares with
    the run's other callbacks."""

    def __init__(self, state: RunState):
        super().__init__()
        self.state = state


class StepLog(RunCallback):
    """Moves the step on and records its loss terms (floats) in the run state."""

    def on_train_begin(self, logs=None):
        self.state.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        state = self.state
        state.step += 1
        state.seconds = time.perf_counter() - state.started
        logs = logs or {}
        state.last_losses = {name: float(logs[name]) for name in state.term_names}
        state.output_mean = float(logs["output_mean"])
        state.output_std = float(logs["output_std"])
        for name, value in state.last_losses.items():
            state.loss_sums[name] = state.loss_sums.get(name, 0.0) + value


class ProgressHook(RunCallback):
    """Calls ``on_progress`` after every step, once the step's checks have passed."""

    def __init__(self, state: RunState, on_progress: Callable[[TrainProgress], None]):
        super().__init__(state)
        self.on_progress = on_progress

    def on_train_batch_end(self, batch, logs=None):
        state = self.state
        progress = TrainProgress(state.step, state.steps, state.seconds, dict(state.last_losses))
        self.on_progress(progress)


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


class DivergenceStop(RunCallback):
    """Stops training with ``TrainingDiverged`` at the first bad step.

    The error names the last good checkpoint (``--resume`` continues from it).
    """

    def __init__(self, state: RunState, out_dir, monitor: DivergenceMonitor):
        super().__init__(state)
        self.out_dir = Path(out_dir)
        self.monitor = monitor

    def on_train_batch_end(self, batch, logs=None):
        state = self.state
        try:
            self.monitor.check(state.step, state.last_losses, state.output_mean, state.output_std)
        except TrainingDiverged as error:
            last = checkpoints.latest_checkpoint(self.out_dir)
            where = (
                f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
            )
            raise TrainingDiverged(f"{error}; {where}", last_checkpoint=last) from None


class AtomicCheckpoint(RunCallback):
    """A verified checkpoint every ``every`` steps and when training ends."""

    def __init__(self, state: RunState, out_dir, *, every: int, keep: int, probe_images,
                 monitor: DivergenceMonitor, config_dict: dict):
        super().__init__(state)
        self.out_dir = Path(out_dir)
        self.every = every
        self.keep = keep
        self.probe_images = probe_images
        self.monitor = monitor
        self.config_dict = config_dict
        self.saved_step: int | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self.state.step % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.saved_step != self.state.step and self.state.step > self.state.start_step:
            self._save()

    def _save(self):
        state = self.state
        checkpoints.save_checkpoint(
            self.model, self.out_dir, state.step,
            {"losses": state.last_losses, "config": self.config_dict},
            self.probe_images, self.monitor, keep=self.keep,
        )
        self.saved_step = state.step


class TimeLimit(RunCallback):
    """Stops training once ``max_seconds`` of training time have passed."""

    def __init__(self, state: RunState, max_seconds: float):
        super().__init__(state)
        self.max_seconds = max_seconds

    def on_train_batch_end(self, batch, logs=None):
        if self.state.seconds >= self.max_seconds:
            self.model.stop_training = True


class SampleImages(RunCallback):
    """Every ``every`` steps: ``samples/step-N.png`` (photos over results), and the
    results as TensorBoard images under ``logs/samples`` where TensorFlow is installed."""

    def __init__(self, state: RunState, out_dir, photos: np.ndarray, every: int):
        super().__init__(state)
        self.out_dir = Path(out_dir)
        self.photos = photos
        self.every = every
        self.writer = None

    def on_train_begin(self, logs=None):
        if tensorboard_available():
            import tensorflow as tf

            self.tf = tf
            self.writer = tf.summary.create_file_writer(str(self.out_dir / "logs" / "samples"))

    def on_train_batch_end(self, batch, logs=None):
        step = self.state.step
        if step % self.every:
            return
        path = self.out_dir / "samples" / f"step-{step:08d}.png"
        stylized = save_samples(self.model.preview, self.photos, path)
        if self.writer is not None:
            with self.writer.as_default(step=step):
                self.tf.summary.image("stylized", stylized, max_outputs=len(stylized))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def save_samples(stylize, photos: np.ndarray, path: Path) -> np.ndarray:
    """Write a contact sheet of ``photos`` and ``stylize(photos)`` (a trainer's ``preview``)."""
    from ml.evaluate import contact_sheet

    stylized = np.clip(np.round(stylize(photos)), 0, 255).astype(np.uint8)
    contact_sheet(photos.astype(np.uint8), stylized, path, thumb=photos.shape[1])
    return stylized


class GlobalStepTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard scalars of every logged term, stepped by the global training step."""

    def __init__(self, log_dir, *, initial_step: int, **kwargs):
        super().__init__(log_dir=str(log_dir), write_graph=False, profile_batch=0, **kwargs)
        self.initial_step = initial_step

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = self.initial_step


def tensorboard_available() -> bool:
    """keras.callbacks.TensorBoard writes with tf.summary, which needs both packages."""
    return bool(importlib.util.find_spec("tensorflow") and importlib.util.find_spec("tensorboard"))

