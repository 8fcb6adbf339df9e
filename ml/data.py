"""Training photos: listing, validation, augmentation and COCO 2014 download.

Two pipelines give the same augmentation (shorter side resized to
``size x random scale``, random ``size x size`` crop, random horizontal flip,
float32 RGB in [0, 255]) and, unless ``augment=False``, a small random rotation
(up to ``max_rotation`` degrees, about the crop's centre, the crop taken from a
reflect-padded image so no corner is ever empty) and a mild colour jitter
(brightness, contrast and saturation each scaled by up to ``1 +/- colour_jitter``).
With ``augment=False`` the output is exactly the scale/crop/flip one:

- ``make_dataset``: a ``tf.data`` pipeline for the TensorFlow backend;
- ``PhotoBatches``: a ``keras.utils.PyDataset`` using only Pillow and NumPy,
  for the GPU machine that runs Keras on JAX or torch without TensorFlow.

Unreadable files never stop training: they are skipped and counted in a
``SkipCounter``. TensorFlow is imported lazily so that this module imports on
machines without it.

Command line: ``python -m ml.data fetch-coco DEST`` downloads and unpacks
COCO 2014 train images (13 GiB zip, about 83k photos) into ``DEST/train2014``.
"""

from __future__ import annotations

import argparse
import os
import threading
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from ml.images import LUMA_WEIGHTS, TRAINING_IMAGE_SUFFIXES

# Formats TensorFlow's decode_image understands; anything else is skipped up front.
TF_DECODABLE_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}
COCO_2014_TRAIN_URL = "http://images.cocodataset.org/zips/train2014.zip"
DEFAULT_SEED = 1337
DEFAULT_SCALE_RANGE = (1.0, 1.3)
DEFAULT_MAX_ROTATION = 3.0  # degrees, either way
DEFAULT_COLOUR_JITTER = 0.05  # brightness, contrast and saturation factors in 1 +/- this
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


# --------------------------------------------------------------------------- tf.data


def make_dataset(
    root: str | os.PathLike,
    size: int = 256,
    batch: int = 4,
    seed: int = DEFAULT_SEED,
    scale_range: tuple[float, float] = DEFAULT_SCALE_RANGE,
    shuffle: bool = True,
    repeat: bool = True,
    validate: bool = True,
    skips: SkipCounter | None = None,
    *,
    augment: bool = True,
    max_rotation: float = DEFAULT_MAX_ROTATION,
    colour_jitter: float = DEFAULT_COLOUR_JITTER,
    crush_blacks: float = 0.0,
):
    """A ``tf.data.Dataset`` of float32 [0, 255] RGB batches ``(batch, size, size, 3)``.

    list -> shuffle -> repeat -> map(decode + augment, AUTOTUNE) -> ignore_errors
    -> batch(drop_remainder) -> prefetch(AUTOTUNE). Pass a ``SkipCounter`` as
    ``skips`` to read how many files were left out.
    """
    import tensorflow as tf

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
    augmenter = _tf_augmenter(size, scale_range, skips,
                              max_rotation if augment else 0.0, colour_jitter if augment else 0.0,
                              crush_blacks if augment else 0.0)
    images = tf.data.Dataset.zip((files, element_seeds)).map(
        augmenter, num_parallel_calls=tf.data.AUTOTUNE
    )
    images = images.ignore_errors()
    return images.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def rotation_margin(size: int, max_rotation: float) -> int:
    """Pixels to add around a ``size`` crop so that rotating it by up to
    ``max_rotation`` degrees leaves no corner outside (plus one for bilinear)."""
    if not max_rotation:
        return 0
    angle = np.radians(min(abs(max_rotation), 45.0))
    return int(np.ceil(size * (np.cos(angle) + np.sin(angle) - 1) / 2)) + 1


def _tf_augmenter(size: int, scale_range: tuple[float, float], skips: SkipCounter,
                  max_rotation: float = 0.0, colour_jitter: float = 0.0,
                  crush_blacks: float = 0.0):
    import tensorflow as tf

    low, high = scale_range
    margin = rotation_margin(size, max_rotation)

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
        scale = tf.random.stateless_uniform([], seed, low, high)
        image = _tf_resize_shorter_side(image, tf.math.ceil(size * scale))
        if margin:
            # A (size + 2 margin) patch of the reflect-padded image has the same offsets
            # as a size crop of the image; rotated about its centre, its middle is full.
            padded = tf.pad(image, [[margin, margin], [margin, margin], [0, 0]], "REFLECT")
            patch = tf.image.stateless_random_crop(
                padded, (size + 2 * margin, size + 2 * margin, 3), seed + 1)
            angle = tf.random.stateless_uniform(
                [], seed + 3, -max_rotation, max_rotation) * (np.pi / 180)
            image = _tf_rotate(patch, angle)[margin:margin + size, margin:margin + size]
        else:
            image = tf.image.stateless_random_crop(image, (size, size, 3), seed + 1)
        image = tf.image.stateless_random_flip_left_right(image, seed + 2)
        if colour_jitter:
            factors = tf.random.stateless_uniform(
                [3], seed + 4, 1.0 - colour_jitter, 1.0 + colour_jitter)
            image = _tf_colour_jitter(image, factors[0], factors[1], factors[2])
        if crush_blacks:
            draw = tf.random.stateless_uniform([2], seed + 5)
            crushed = crush_blacks_array(image, draw[1] * CRUSH_MAX_LEVEL)
            image = tf.where(draw[0] < crush_blacks, crushed, image)
        return tf.ensure_shape(tf.clip_by_value(image, 0.0, 255.0), (size, size, 3))

    return augment


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
    import tensorflow as tf

    luma = tf.constant(LUMA_WEIGHTS, tf.float32)
    image = image * brightness
    mean = tf.reduce_mean(tf.tensordot(image, luma, 1))
    image = (image - mean) * contrast + mean
    grey = tf.tensordot(image, luma, 1)[..., None]
    return grey + (image - grey) * saturation


def _tf_resize_shorter_side(image, target):
    import tensorflow as tf

    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    ratio = target / tf.minimum(height, width)
    new_size = tf.cast(tf.math.ceil([height * ratio, width * ratio]), tf.int32)
    new_size = tf.maximum(new_size, tf.cast(target, tf.int32))
    return tf.image.resize(image, new_size, method="bilinear", antialias=True)


# --------------------------------------------------------------------------- Pillow


def augment_photo(
    image: Image.Image,
    size: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = DEFAULT_SCALE_RANGE,
    *,
    augment: bool = True,
    max_rotation: float = DEFAULT_MAX_ROTATION,
    colour_jitter: float = DEFAULT_COLOUR_JITTER,
    crush_blacks: float = 0.0,
) -> np.ndarray:
    """The ``make_dataset`` augmentation with Pillow: float32 (size, size, 3).

    Scale, crop and flip draw the same random numbers with ``augment`` on or off
    (rotation, jitter and crushing draw theirs after), so switching it off gives exactly
    the scale/crop/flip result for the same ``rng``. With probability ``crush_blacks``
    the photo's darks are crushed (:func:`crush_blacks_array`).
    """
    image = image.convert("RGB")
    target = int(np.ceil(size * rng.uniform(*scale_range)))
    ratio = target / min(image.size)
    new_size = (max(target, int(np.ceil(image.width * ratio))),
                max(target, int(np.ceil(image.height * ratio))))
    image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=None)
    left = int(rng.integers(0, image.width - size + 1))
    top = int(rng.integers(0, image.height - size + 1))
    flip = rng.random() < 0.5
    margin = rotation_margin(size, max_rotation) if augment else 0
    if margin:
        # The crop plus a margin, reflect-padded where it leaves the image, rotated
        # about its centre: the middle size x size is then full, corners included.
        pixels = np.asarray(image)
        padded = np.pad(pixels, ((margin, margin), (margin, margin), (0, 0)), mode="reflect")
        patch = Image.fromarray(padded[top:top + size + 2 * margin,
                                       left:left + size + 2 * margin])
        angle = float(rng.uniform(-max_rotation, max_rotation))
        patch = patch.rotate(angle, resample=Image.Resampling.BILINEAR)
        image = patch.crop((margin, margin, margin + size, margin + size))
    else:
        image = image.crop((left, top, left + size, top + size))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image, dtype=np.float32)
    if augment and colour_jitter:
        brightness, contrast, saturation = rng.uniform(1 - colour_jitter, 1 + colour_jitter, 3)
        pixels = colour_jitter_array(pixels, brightness, contrast, saturation)
    if augment and crush_blacks:
        chance, level = rng.random(2)
        if chance < crush_blacks:
            pixels = crush_blacks_array(pixels, level * CRUSH_MAX_LEVEL)
    return pixels


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
    pixel's grey) of float RGB ``pixels``, clipped to [0, 255]."""
    luma = np.asarray(LUMA_WEIGHTS, np.float32)
    pixels = pixels * np.float32(brightness)
    mean = (pixels @ luma).mean()
    pixels = (pixels - mean) * np.float32(contrast) + mean
    grey = (pixels @ luma)[..., None]
    pixels = grey + (pixels - grey) * np.float32(saturation)
    return np.clip(pixels, 0.0, 255.0).astype(np.float32)


class PhotoBatches(keras.utils.PyDataset):
    """Augmented photo batches with Pillow + NumPy, for any Keras backend.

    Each item is a float32 array ``(batch, size, size, 3)`` in [0, 255]. The
    order is reshuffled every epoch; augmentation depends only on
    (seed, epoch, index), so parallel workers give reproducible batches. A
    file that fails to load is replaced by another photo and counted in
    ``skips``. ``augment``, ``max_rotation``, ``colour_jitter`` and ``crush_blacks`` are
    those of ``augment_photo``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int = 256,
        batch: int = 4,
        seed: int = DEFAULT_SEED,
        scale_range: tuple[float, float] = DEFAULT_SCALE_RANGE,
        shuffle: bool = True,
        validate: bool = True,
        skips: SkipCounter | None = None,
        augment: bool = True,
        max_rotation: float = DEFAULT_MAX_ROTATION,
        colour_jitter: float = DEFAULT_COLOUR_JITTER,
        crush_blacks: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.skips = skips if skips is not None else SkipCounter()
        self.paths = _photo_paths(root, self.skips, validate)
        if len(self.paths) < batch:
            raise ValueError(f"{len(self.paths)} readable photos, fewer than batch={batch}")
        self.size = size
        self.batch = batch
        self.seed = seed
        self.scale_range = scale_range
        self.shuffle = shuffle
        self.augment = augment
        self.max_rotation = max_rotation
        self.colour_jitter = colour_jitter
        self.crush_blacks = crush_blacks
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
                    return augment_photo(image, self.size, rng, self.scale_range,
                                         augment=self.augment, max_rotation=self.max_rotation,
                                         colour_jitter=self.colour_jitter,
                                         crush_blacks=self.crush_blacks)
            except Exception as error:  # any unreadable file is skipped, not fatal
                self.skips.skip(path, f"{type(error).__name__}: {error}")
                position = int(rng.integers(0, len(self.paths)))
        raise RuntimeError("no photo in the folder could be loaded")


# --------------------------------------------------------------------------- COCO


def fetch_coco2014(
    dest: str | os.PathLike, url: str = COCO_2014_TRAIN_URL, keep_zip: bool = False
) -> Path:
    """Download and unpack COCO 2014 train images; returns ``dest/train2014``.

    Skips the download when the folder already holds images, and resumes
    nothing: a partial download is written to ``*.part`` and discarded on
    failure, so a rerun starts clean.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    images_dir = dest / "train2014"
    if images_dir.is_dir() and any(images_dir.iterdir()):
        print(f"{images_dir} already holds images; nothing to do")
        return images_dir
    archive = dest / Path(urllib.parse.urlparse(url).path).name
    if not archive.exists():
        download(url, archive)
    unpack(archive, dest)
    if not keep_zip:
        archive.unlink()
    return images_dir


def download(url: str, target: Path, chunk_bytes: int = 1 << 20) -> Path:
    """Stream ``url`` to ``target`` with a progress bar, via a ``.part`` file."""
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            progress = keras.utils.Progbar(total, unit_name="byte")
            done = 0
            while chunk := response.read(chunk_bytes):
                out.write(chunk)
                done += len(chunk)
                progress.update(done)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def unpack(archive: Path, dest: Path) -> None:
    """Extract a zip into ``dest`` with a progress bar (one tick per file)."""
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        progress = keras.utils.Progbar(len(members), unit_name="file")
        for done, member in enumerate(members, start=1):
            zipped.extract(member, dest)
            progress.update(done)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml.data")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-coco", help="download COCO 2014 train images")
    fetch.add_argument("dest", help="folder to unpack train2014/ into")
    fetch.add_argument("--url", default=COCO_2014_TRAIN_URL)
    fetch.add_argument("--keep-zip", action="store_true")
    args = parser.parse_args(argv)
    images_dir = fetch_coco2014(args.dest, url=args.url, keep_zip=args.keep_zip)
    print(f"\n{len(list_images(images_dir))} photos in {images_dir}")


if __name__ == "__main__":
    main()
