"""Training photos: listing, validation and augmentation.

One :class:`Augmentation` says what is done to a training photo, and how strongly:
the shorter side resized to ``size x random scale`` (``scale_range``), a random
``size x size`` crop, a random horizontal flip, float32 RGB in [0, 255], then a
small random rotation (up to ``max_rotation`` degrees, about the crop's centre, the
crop taken from a reflect-padded image so no corner is ever empty), a mild colour
jitter (brightness, contrast and saturation each scaled by up to ``1 +/- colour_jitter``)
and, with chance ``crush_blacks``, crushed darks. ``Augmentation.plain()`` is the
scale/crop/flip part alone (``--no-augment``).

Each photo's random numbers are drawn into a :class:`Draw`, which two executions
carry out alike:

- ``make_dataset``: a ``tf.data`` pipeline for the TensorFlow backend (stateless tf
  draws, :func:`tf_apply_draw`);
- ``PhotoBatches``: a ``keras.utils.PyDataset`` using only Pillow and NumPy
  (:meth:`Augmentation.draw`, :func:`apply_draw`), for the GPU machine that runs Keras
  on JAX or torch without TensorFlow.

Unreadable files never stop training: they are skipped and counted in a
``SkipCounter``. TensorFlow is imported lazily so that this module imports on
machines without it. COCO 2014 is downloaded by ``python -m tools.coco DEST``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from ml.images import LUMA_WEIGHTS, TRAINING_IMAGE_SUFFIXES

# Formats TensorFlow's decode_image understands; anything else is skipped up front.
TF_DECODABLE_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}
DEFAULT_SEED = 1337
#: A crushed photo (``crush_blacks``) loses every level under a random one up to this.
CRUSH_MAX_LEVEL = 80.0


# --------------------------------------------------------------------------- listing


def list_images(root: str | os.PathLike) -> list[str]:
    """Every JPEG/PNG under ``root`` (recursively), sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder not found: {root}")
    return sorted(
        str(path)
        for path in root.rglob("*")
        if path.suffix.lower() in TRAINING_IMAGE_SUFFIXES and path.is_file()
    )


@dataclass
class SkipCounter:
    """Files left out of training, with the reason for each.

    ``skipped`` holds files rejected by the up-front Pillow check (exact).
    ``late_failures`` counts files that passed the check (or were not checked)
    but that the tf.data decoder still failed on and dropped; it is read from
    two TF counters, so while a pipeline is being iterated it may include files
    still in flight. It is exact once a finite pass (``repeat=False``) is done.
    """

    skipped: dict[str, str] = field(default_factory=dict)
    _attempted: object = None
    _decoded: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def skip(self, path: str, reason: str) -> None:
        with self._lock:
            self.skipped[path] = reason

    @property
    def late_failures(self) -> int:
        if self._attempted is None:
            return 0
        return int(self._attempted.numpy()) - int(self._decoded.numpy())

    @property
    def count(self) -> int:
        return len(self.skipped) + self.late_failures


def check_image(path: str) -> str | None:
    """Why Pillow cannot use ``path`` as a training photo, or None if it can.

    Decodes in JPEG draft mode (a reduced-size decode) so the check stays
    cheap on COCO-sized folders while still catching truncated files.
    """
    try:
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Exception as error:  # Pillow raises many types for bad files
        return f"{type(error).__name__}: {error}"
    if image_format not in TF_DECODABLE_FORMATS:
        return f"unsupported format {image_format}"
    return None


def readable_images(paths: list[str], skips: SkipCounter, workers: int = 8) -> list[str]:
    """``paths`` without the files ``check_image`` rejects (recorded in ``skips``)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(check_image, paths))
    readable = []
    for path, problem in zip(paths, problems):
        if problem is None:
            readable.append(path)
        else:
            skips.skip(path, problem)
    return readable


def _photo_paths(root, skips: SkipCounter, validate: bool) -> list[str]:
    paths = list_images(root)
    if validate:
        paths = readable_images(paths, skips)
    if not paths:
        raise ValueError(f"no readable JPEG/PNG photos under {root}")
    return paths



# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Draw:
    """One photo's augmentation, drawn from an :class:`Augmentation`: what
    :func:`apply_draw` (Pillow) and :func:`tf_apply_draw` (TensorFlow) both carry out.
    In the tf.data pipeline the drawn fields are tensors."""

    target: int  # the shorter side once resized (the longer one: resized_size)
    top: int  # the crop's corner in the resized photo
    left: int
    flip: bool  # mirrored left to right
    margin: int = 0  # taken around the crop (reflect-padded) and rotated with it
    angle: float = 0.0  # degrees, anticlockwise, about the crop's centre (with a margin)
    jitter: tuple[float, float, float] | None = None  # brightness, contrast, saturation
    crush_level: float | None = None  # levels under it crushed to black


@dataclass(frozen=True)
class Augmentation:
    """What both pipelines do to a training photo, and how strongly (the module's
    docstring). Each photo draws a scale in ``scale_range``, a crop and a flip; then an
    angle in ``+/- max_rotation`` degrees, three colour factors in
    :attr:`jitter_range`, and with chance ``crush_blacks`` a crush level up to
    ``crush_max_level``; a zero field draws nothing for its step."""

    scale_range: tuple[float, float] = (1.0, 1.3)
    max_rotation: float = 3.0  # degrees, either way
    colour_jitter: float = 0.05  # brightness, contrast and saturation factors in 1 +/- this
    crush_blacks: float = 0.0  # chance
    crush_max_level: float = CRUSH_MAX_LEVEL

    def __post_init__(self):
        low, high = (float(value) for value in self.scale_range)
        object.__setattr__(self, "scale_range", (low, high))
        if not 1.0 <= low <= high:
            raise ValueError(f"scale_range must be 1 <= low <= high, got {self.scale_range}")
        if not 0.0 <= self.max_rotation <= 45.0:
            raise ValueError(f"max_rotation must be in [0, 45] degrees, got {self.max_rotation}")
        if not 0.0 <= self.colour_jitter < 1.0:
            raise ValueError(f"colour_jitter must be in [0, 1), got {self.colour_jitter}")
        if not 0.0 <= self.crush_blacks <= 1.0:
            raise ValueError(f"crush_blacks must be in [0, 1], got {self.crush_blacks}")
        if not 0.0 < self.crush_max_level < 255.0:
            raise ValueError(f"crush_max_level must be in (0, 255), got {self.crush_max_level}")

    def plain(self) -> Augmentation:
        """Scale, crop and flip only: no rotation, colour jitter or crushing. Its draws
        are the first ones of the full augmentation's for the same NumPy generator."""
        return replace(self, max_rotation=0.0, colour_jitter=0.0, crush_blacks=0.0)

    def margin(self, size: int) -> int:
        """Pixels taken around a ``size`` crop so that rotating it leaves no corner empty."""
        return rotation_margin(size, self.max_rotation)

    @property
    def jitter_range(self) -> tuple[float, float]:
        return 1.0 - self.colour_jitter, 1.0 + self.colour_jitter

    def draw(self, rng: np.random.Generator, photo_size: tuple[int, int], size: int) -> Draw:
        """One photo's draw with NumPy, for a ``photo_size`` (width, height) photo.

        Scale, crop and flip draw the same numbers whatever the other fields (rotation,
        jitter and crushing draw theirs after, and only when not zero), so
        :meth:`plain` gives exactly the scale/crop/flip result for the same ``rng``."""
        target = int(np.ceil(size * rng.uniform(*self.scale_range)))
        width, height = resized_size(photo_size, target)
        left = int(rng.integers(0, width - size + 1))
        top = int(rng.integers(0, height - size + 1))
        flip = bool(rng.random() < 0.5)
        margin = self.margin(size)
        angle = float(rng.uniform(-self.max_rotation, self.max_rotation)) if margin else 0.0
        jitter = None
        if self.colour_jitter:
            jitter = tuple(float(factor) for factor in rng.uniform(*self.jitter_range, 3))
        crush_level = None
        if self.crush_blacks:
            chance, level = rng.random(2)
            if chance < self.crush_blacks:
                crush_level = float(level * self.crush_max_level)
        return Draw(target, top, left, flip, margin, angle, jitter, crush_level)


def rotation_margin(size: int, max_rotation: float) -> int:
    """Pixels to add around a ``size`` crop so that rotating it by up to
    ``max_rotation`` degrees leaves no corner outside (plus one for bilinear)."""
    if not max_rotation:
        return 0
    angle = np.radians(min(abs(max_rotation), 45.0))
    return int(np.ceil(size * (np.cos(angle) + np.sin(angle) - 1) / 2)) + 1


def resized_size(photo_size: tuple[int, int], target: int) -> tuple[int, int]:
    """(width, height) of a ``photo_size`` photo whose shorter side is resized to
    ``target``, the longer one rounded up (integer arithmetic, as ``_tf_resized_shape``)."""
    width, height = photo_size
    shorter = min(width, height)
    return -(-width * target // shorter), -(-height * target // shorter)


#: A crush never reaches the levels of a photo's brightest quarter: its level is at
#: most :data:`CRUSH_CAP_SHARE` of the level that quarter starts at (each pixel's
#: brightest channel), so a dark crop keeps detail instead of going wholly flat black,
#: where every instance norm of the net sees a flat map and the gradient blows up
#: (docs/design/training.md, "the NaN at 19,819").
CRUSH_CAP_QUANTILE = 0.75
CRUSH_CAP_SHARE = 0.5


def crush_blacks_array(pixels, level):
    """Every level of float RGB ``pixels`` under ``level`` made 0 and the rest stretched
    back to [0, 255]: the flat black of night scenes and low-key portraits, which the
    training photos seldom have and the net must paint too (docs/design/training.md).
    ``level`` is first capped by the photo's brightest quarter (:data:`CRUSH_CAP_SHARE`
    of its :data:`CRUSH_CAP_QUANTILE` quantile), so a crushed photo is never wholly
    flat. NumPy arrays and TensorFlow tensors both pass."""
    if isinstance(pixels, np.ndarray):
        brightest = np.max(pixels, axis=-1).ravel()
        quantile = np.sort(brightest)[int(CRUSH_CAP_QUANTILE * (brightest.size - 1))]
        level = np.float32(min(float(level), CRUSH_CAP_SHARE * float(quantile)))
    else:
        import tensorflow as tf

        brightest = tf.sort(tf.reshape(tf.reduce_max(pixels, axis=-1), [-1]))
        index = tf.cast(CRUSH_CAP_QUANTILE * tf.cast(tf.size(brightest) - 1, tf.float32),
                        tf.int32)
        level = tf.minimum(tf.cast(level, tf.float32), CRUSH_CAP_SHARE * brightest[index])
    shifted = pixels - level
    return (shifted + abs(shifted)) * (127.5 / (255.0 - level))


def colour_jitter_array(pixels: np.ndarray, brightness: float, contrast: float,
                        saturation: float) -> np.ndarray:
    """Brightness (scale), contrast (about the mean grey) and saturation (about each
    pixel's grey) of float RGB ``pixels``, clipped to [0, 255] (``_tf_colour_jitter``
    with TensorFlow)."""
    luma = np.asarray(LUMA_WEIGHTS, np.float32)
    pixels = pixels * np.float32(brightness)
    mean = (pixels @ luma).mean()
    pixels = (pixels - mean) * np.float32(contrast) + mean
    grey = (pixels @ luma)[..., None]
    pixels = grey + (pixels - grey) * np.float32(saturation)
    return np.clip(pixels, 0.0, 255.0).astype(np.float32)


# --------------------------------------------------------------------------- tf.data


@dataclass(frozen=True)
class PhotoFeed:
    """How either pipeline (:func:`make_dataset`, :class:`PhotoBatches`) feeds photos:
    batches of ``batch`` crops of ``size`` px, in an order drawn from ``seed`` and
    reshuffled each pass (``shuffle``), augmented as ``augmentation`` says; with
    ``validate`` every file is opened once first and unreadable ones are left out.
    Both take these as keyword arguments."""

    size: int = 256
    batch: int = 4
    seed: int = DEFAULT_SEED
    shuffle: bool = True
    validate: bool = True
    augmentation: Augmentation = Augmentation()


def make_dataset(root: str | os.PathLike, *, repeat: bool = True,
                 skips: SkipCounter | None = None, **feed):
    """A ``tf.data.Dataset`` of float32 [0, 255] RGB batches ``(batch, size, size, 3)``,
    fed as the :class:`PhotoFeed` of ``feed`` says; endless unless ``repeat`` is false.

    list -> shuffle -> repeat -> map(decode + augment, AUTOTUNE) -> ignore_errors
    -> batch(drop_remainder) -> prefetch(AUTOTUNE). Pass a ``SkipCounter`` as
    ``skips`` to read how many files were left out.
    """
    import tensorflow as tf

    feed = PhotoFeed(**feed)
    size, batch, seed, augmentation = feed.size, feed.batch, feed.seed, feed.augmentation
    shuffle, validate = feed.shuffle, feed.validate
    skips = skips if skips is not None else SkipCounter()
    paths = _photo_paths(root, skips, validate)
    skips._attempted = tf.Variable(0, dtype=tf.int64, trainable=False)
    skips._decoded = tf.Variable(0, dtype=tf.int64, trainable=False)

    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()
    # One stateless seed pair per element keeps augmentation reproducible
    # under parallel map.
    element_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    images = tf.data.Dataset.zip((files, element_seeds)).map(
        _tf_augmenter(size, augmentation, skips), num_parallel_calls=tf.data.AUTOTUNE
    )
    images = images.ignore_errors()
    return images.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _tf_augmenter(size: int, augmentation: Augmentation, skips: SkipCounter):
    import tensorflow as tf

    def augment(path, seed):
        seed = tf.cast(seed % (2**31 - 1), tf.int32)
        with tf.control_dependencies([skips._attempted.assign_add(1)]):
            encoded = tf.io.read_file(path)
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        # Counted only once decoding has succeeded (the data dependency matters:
        # a bare assign would run even when the decoder fails).
        with tf.control_dependencies([image]):
            counted = skips._decoded.assign_add(1)
        with tf.control_dependencies([counted]):
            image = tf.cast(image, tf.float32)
        draw = tf_draw(augmentation, size, seed, tf.shape(image)[:2])
        return tf_apply_draw(image, size, draw)

    return augment


def tf_draw(augmentation: Augmentation, size: int, seed, shape) -> Draw:
    """:meth:`Augmentation.draw` with TensorFlow, for a photo of ``shape`` (height,
    width): stateless, one seed offset per step, so a parallel map is reproducible.
    The fields a zero field of ``augmentation`` leaves out stay static."""
    import tensorflow as tf

    scale = tf.random.stateless_uniform([], seed, *augmentation.scale_range)
    target = tf.cast(tf.math.ceil(size * scale), tf.int32)
    # The offsets tf.image.stateless_random_crop draws: uniform int32 modulo the room.
    room = tf.concat([_tf_resized_shape(shape, target) - size + 1, [1]], 0)
    offset = tf.random.stateless_uniform(
        [3], seed + 1, maxval=tf.int32.max, dtype=tf.int32) % room
    flip = tf.random.stateless_uniform([], seed + 2) < 0.5  # as stateless_random_flip
    margin = augmentation.margin(size)
    angle = 0.0
    if margin:
        angle = tf.random.stateless_uniform(
            [], seed + 3, -augmentation.max_rotation, augmentation.max_rotation)
    jitter = None
    if augmentation.colour_jitter:
        factors = tf.random.stateless_uniform([3], seed + 4, *augmentation.jitter_range)
        jitter = (factors[0], factors[1], factors[2])
    crush_level = None
    if augmentation.crush_blacks:
        chance, level = tf.unstack(tf.random.stateless_uniform([2], seed + 5))
        # Level 0 leaves [0, 255] pixels as they are: the photos not crushed.
        crush_level = tf.where(chance < augmentation.crush_blacks,
                               level * augmentation.crush_max_level, 0.0)
    return Draw(target, offset[0], offset[1], flip, margin, angle, jitter, crush_level)


def tf_apply_draw(image, size: int, draw: Draw):
    """:func:`apply_draw` with TensorFlow: float (H, W, 3) ``image`` -> (size, size, 3)."""
    import tensorflow as tf

    image = tf.image.resize(image, _tf_resized_shape(tf.shape(image)[:2], draw.target),
                            method="bilinear", antialias=True)
    margin = draw.margin
    if margin:
        # A (size + 2 margin) patch of the reflect-padded image has the same offsets
        # as a size crop of the image; rotated about its centre, its middle is full.
        padded = tf.pad(image, [[margin, margin], [margin, margin], [0, 0]], "REFLECT")
        patch = tf.slice(padded, tf.stack([draw.top, draw.left, 0]),
                         [size + 2 * margin, size + 2 * margin, 3])
        angle = tf.cast(draw.angle, tf.float32) * (np.pi / 180)
        image = _tf_rotate(patch, angle)[margin:margin + size, margin:margin + size]
    else:
        image = tf.slice(image, tf.stack([draw.top, draw.left, 0]), [size, size, 3])
    image = tf.cond(tf.convert_to_tensor(draw.flip), lambda: tf.reverse(image, [1]),
                    lambda: image)
    if draw.jitter is not None:
        image = tf.clip_by_value(_tf_colour_jitter(image, *draw.jitter), 0.0, 255.0)
    if draw.crush_level is not None:
        image = crush_blacks_array(image, draw.crush_level)
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 255.0), (size, size, 3))


def _tf_resized_shape(shape, target):
    """``resized_size`` with TensorFlow: (height, width) int32 of a ``shape`` photo whose
    shorter side becomes ``target``."""
    import tensorflow as tf

    shape = tf.cast(shape, tf.int32)
    target = tf.cast(target, tf.int32)
    return -(-shape * target // tf.reduce_min(shape))


def _tf_rotate(image, angle):
    """``image`` (H, W, C) rotated by ``angle`` radians about its centre, bilinear."""
    import tensorflow as tf

    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # Output pixel (x, y) reads input (cos dx - sin dy + cx, sin dx + cos dy + cy).
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                          sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])[None]
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform,
        output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    return rotated[0]


def _tf_colour_jitter(image, brightness, contrast, saturation):
    """:func:`colour_jitter_array` with TensorFlow (not clipped)."""
    import tensorflow as tf

    luma = tf.constant(LUMA_WEIGHTS, tf.float32)
    image = image * brightness
    mean = tf.reduce_mean(tf.tensordot(image, luma, 1))
    image = (image - mean) * contrast + mean
    grey = tf.tensordot(image, luma, 1)[..., None]
    return grey + (image - grey) * saturation


# --------------------------------------------------------------------------- Pillow


def augment_photo(image: Image.Image, size: int, rng: np.random.Generator,
                  augmentation: Augmentation = Augmentation()) -> np.ndarray:
    """The ``make_dataset`` augmentation with Pillow: float32 (size, size, 3), drawn
    from ``rng`` (:meth:`Augmentation.draw`) and carried out by :func:`apply_draw`."""
    return apply_draw(image, size, augmentation.draw(rng, image.size, size))


def apply_draw(image: Image.Image, size: int, draw: Draw) -> np.ndarray:
    """One photo's :class:`Draw` carried out with Pillow and NumPy (as
    :func:`tf_apply_draw` with TensorFlow): float32 (size, size, 3) in [0, 255]."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize(resized_size(image.size, draw.target), Image.Resampling.BILINEAR,
                         reducing_gap=None)
    top, left, margin = draw.top, draw.left, draw.margin
    if margin:
        # The crop plus a margin, reflect-padded where it leaves the image, rotated
        # about its centre: the middle size x size is then full, corners included.
        pixels = np.asarray(image)
        padded = np.pad(pixels, ((margin, margin), (margin, margin), (0, 0)), mode="reflect")
        patch = Image.fromarray(padded[top:top + size + 2 * margin,
                                       left:left + size + 2 * margin])
        patch = patch.rotate(draw.angle, resample=Image.Resampling.BILINEAR)
        image = patch.crop((margin, margin, margin + size, margin + size))
    else:
        image = image.crop((left, top, left + size, top + size))
    if draw.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image, dtype=np.float32)
    if draw.jitter is not None:
        pixels = colour_jitter_array(pixels, *draw.jitter)
    if draw.crush_level is not None:
        pixels = np.clip(crush_blacks_array(pixels, draw.crush_level), 0.0, 255.0)
    return pixels


_FEED_FIELDS = {spec.name for spec in dataclasses.fields(PhotoFeed)}


class PhotoBatches(keras.utils.PyDataset):
    """Augmented photo batches with Pillow + NumPy, for any Keras backend.

    Each item is a float32 array ``(batch, size, size, 3)`` in [0, 255], fed as the
    :class:`PhotoFeed` of the keyword arguments says (the others go to
    ``keras.utils.PyDataset``). The order is reshuffled every epoch; augmentation
    depends only on (seed, epoch, index), so parallel workers give reproducible
    batches. A file that fails to load is replaced by another photo and counted in
    ``skips``.
    """

    def __init__(self, root: str | os.PathLike, *, skips: SkipCounter | None = None,
                 **options):
        feed = PhotoFeed(**{name: options.pop(name) for name in list(options)
                            if name in _FEED_FIELDS})
        super().__init__(**options)
        self.skips = skips if skips is not None else SkipCounter()
        self.paths = _photo_paths(root, self.skips, feed.validate)
        if len(self.paths) < feed.batch:
            raise ValueError(f"{len(self.paths)} readable photos, fewer than batch={feed.batch}")
        self.size, self.batch, self.seed = feed.size, feed.batch, feed.seed
        self.shuffle, self.augmentation = feed.shuffle, feed.augmentation
        self.epoch = 0
        self._order = self._epoch_order()

    def __len__(self) -> int:
        return len(self.paths) // self.batch

    def __getitem__(self, index: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        first = index * self.batch
        photos = [self._load(self._order[first + i], rng) for i in range(self.batch)]
        return np.stack(photos)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        order = np.arange(len(self.paths))
        if self.shuffle:
            np.random.default_rng((self.seed, self.epoch)).shuffle(order)
        return order

    def _load(self, position: int, rng: np.random.Generator) -> np.ndarray:
        for _ in range(len(self.paths)):
            path = self.paths[position]
            try:
                with Image.open(path) as image:
                    return augment_photo(image, self.size, rng, self.augmentation)
            except Exception as error:  # any unreadable file is skipped, not fatal
                self.skips.skip(path, f"{type(error).__name__}: {error}")
                position = int(rng.integers(0, len(self.paths)))
        raise RuntimeError("no photo in the folder could be loaded")
