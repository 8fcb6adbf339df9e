"""Run exported SavedModels in this process (development, tests, small deployments)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from django.conf import settings

from ml.export import load_savedmodel_fn
from stylize.backends.base import (
    ModelBackend,
    PermanentBackendError,
    TransientBackendError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version: int
    path: Path
    fn: Callable[..., np.ndarray]  # ml.export.load_savedmodel_fn: (images, style_weights)


class LocalBackend(ModelBackend):
    """Loads ``SERVING_DIR/models/<model_name>/<version>/`` on first use and keeps it.

    Only the last version asked for is kept per model: asking for a new live
    version loads it and lets the old one go, so memory stays bounded.
    """

    def __init__(self, serving_dir=None, loader=load_savedmodel_fn):
        self._serving_dir = serving_dir
        self._loader = loader
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self.load_count = 0

    @classmethod
    def preload(cls) -> None:
        """TensorFlow (seconds to import), so a worker's first job does not wait for it."""
        import tensorflow  # noqa: F401

    def _paint(self, *, model_name: str, version: int, images: np.ndarray,
               style_weights: np.ndarray, style_params: np.ndarray | None):
        model = self._model(model_name, version)
        with_params = getattr(model.fn, "with_params", None)
        if style_params is not None and with_params is None:
            raise PermanentBackendError(
                f"Model {model_name} version {version} has no style_params signature: it "
                "cannot paint an own style (export the bank again).")
        try:
            if style_params is not None:
                stylized = with_params(images, style_weights, style_params)
            else:
                stylized = model.fn(images, style_weights)
        except Exception as error:
            raise _backend_error(error, model_name, version) from error
        return stylized

    def is_ready(self, *, model_name: str, version: int) -> bool:
        path = self.version_dir(model_name, version)
        loaded = self._loaded.get(model_name)
        return (loaded is not None and loaded.path == path) or (path / "saved_model.pb").is_file()

    def loaded_versions(self) -> dict[str, int]:
        """Model name -> the version held in memory."""
        return {name: loaded.version for name, loaded in self._loaded.items()}

    def version_dir(self, model_name: str, version: int) -> Path:
        serving_dir = Path(self._serving_dir or settings.SERVING_DIR)
        return serving_dir / "models" / model_name / str(int(version))

    def _model(self, model_name: str, version: int) -> LoadedModel:
        path = self.version_dir(model_name, version)
        loaded = self._loaded.get(model_name)
        if loaded is not None and loaded.path == path:
            return loaded
        with self._lock:
            loaded = self._loaded.get(model_name)  # another thread may have loaded it meanwhile
            if loaded is not None and loaded.path == path:
                return loaded
            loaded = LoadedModel(version=int(version), path=path, fn=self._load(path, model_name))
            self._loaded[model_name] = loaded  # replaces (evicts) the previous version
            return loaded

    def _load(self, path: Path, model_name: str):
        if not (path / "saved_model.pb").is_file():
            raise PermanentBackendError(
                f"Model {model_name} version {path.name} is not installed "
                f"(no SavedModel in {path})."
            )
        limit_tf_threads()
        logger.info("Loading model %s version %s from %s", model_name, path.name, path)
        try:
            fn = self._loader(path)
        except Exception as error:
            raise PermanentBackendError(
                f"Model {model_name} version {path.name} could not be loaded: {error}"
            ) from error
        self.load_count += 1
        return fn


def _backend_error(error: Exception, model_name: str, version: int) -> Exception:
    import tensorflow as tf

    if isinstance(error, tf.errors.ResourceExhaustedError):
        return TransientBackendError(
            f"Not enough memory to run model {model_name} version {version} on this image."
        )
    return PermanentBackendError(f"Model {model_name} version {version} failed: {error}")


_threads_limited = False


def limit_tf_threads() -> None:
    """Apply ``settings.MODEL_THREADS`` to TensorFlow once, before the first model runs.

    Two worker processes on one machine each default to every core, and fight.
    """
    global _threads_limited
    threads = int(getattr(settings, "MODEL_THREADS", 0) or 0)
    if _threads_limited or threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran something in this process
        logger.warning("MODEL_THREADS=%s ignored: TensorFlow was already initialised", threads)
    _threads_limited = True
