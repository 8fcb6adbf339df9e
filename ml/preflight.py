"""Pre-flight checks: what a run needs, found missing or unreadable before it starts.

:func:`check_can_train` reads every painting, lists the photos, opens the loss and
starting weights and writes into the run folder, in seconds, and raises one
:class:`CannotTrain` naming every problem; ``ml.train.train`` calls it first.
"""

from __future__ import annotations

from pathlib import Path

from ml.config import TrainConfig
from ml.data import list_images

__all__ = ["CannotTrain", "check_can_train"]


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
