"""What ``fit`` iterates: photo batches, forever, with each step's style scale and,
for a bank, each example's slot.

:func:`default_dataset` reads ``config.data_dir``'s photos (a ``tf.data`` pipeline on
the tensorflow backend, a ``PyDataset`` otherwise); :func:`fit_input` turns any
dataset into ``fit``'s input, the style weight ramping up over the warm-up
(:func:`style_scale`) and a bank's slots drawn by a :class:`SlotSampler`, both from
the global step so a resumed run continues where it stopped.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import keras
import numpy as np
from keras import ops

from ml.config import TrainConfig
from ml.data import Augmentation, PhotoBatches, SkipCounter, make_dataset

__all__ = [
    "SlotSampler",
    "default_dataset",
    "endless_batches",
    "fit_input",
    "style_scale",
]


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
    augmentation = Augmentation(scale_range=(1.0, config.max_scale),
                                crush_blacks=config.crush_blacks)
    options = dict(size=config.size, batch=config.batch, seed=seed, skips=skips,
                   augmentation=augmentation if config.augment else augmentation.plain())
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


def fit_input(dataset, *, slots: SlotSampler, start_step: int = 0, warmup_steps: int = 0,
              batch: int | None = None):
    """``(first photo batch, what fit iterates)``.

    ``fit`` gets ``((photos, slots), style_scale)``: each photo's slot drawn by
    ``slots``, and the scale (one per photo) following :func:`style_scale` from the
    global step ``start_step + 1`` on, so a resumed run continues the ramp. A tf.data
    pipeline repeats (``batch`` is then the largest batch it yields); anything else (a
    PyDataset, a list of batches) becomes an endless generator.
    """
    if _is_tf_dataset(dataset):
        import tensorflow as tf

        repeated = dataset.repeat()
        first = np.asarray(next(iter(repeated.take(1))), dtype=np.float32)
        if batch is None:
            raise ValueError("a tf.data input needs the batch size")
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


def _generator(batches, start_step, warmup_steps, slots):
    # fit takes generators (not other iterators) of (inputs, targets) tuples.
    steps = itertools.count(start_step + 1)
    for batch, scale, step in zip(batches, _scales(start_step, warmup_steps), steps):
        scales = np.full((len(batch),), scale, np.float32)
        yield (batch, slots(step, len(batch))), scales


def _is_tf_dataset(dataset) -> bool:
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return isinstance(dataset, tf.data.Dataset)
