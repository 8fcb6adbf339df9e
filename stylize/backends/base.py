"""The interface every model backend implements, and the errors it raises.

A backend turns a uint8 RGB batch ``[N, H, W, 3]`` into a stylized batch of the
same shape with one exported SavedModel version (``serving_default``: ``images`` and
``style_weights`` in, ``stylized`` out; see ``ml.export``). ``style_weights`` is
float32 ``[N, S]``: each image's mix of the network's S slots.
Callers name the version explicitly (``Style.live_version``), so a retrain goes
live without restarting anything. A user's own style also sends ``style_params``,
float32 ``[N, P]``: its row of the bank's maps (times its share), painted through the
bank's second signature, ``style_params`` (``ml.export``), beside the slots' weights.
"""

from __future__ import annotations

import numpy as np


class BackendError(Exception):
    """The model could not stylize the images; ``str(error)`` is fit to show a user."""


class TransientBackendError(BackendError):
    """Worth retrying later: the server is down, busy, slow or still loading the model."""


class PermanentBackendError(BackendError):
    """Retrying will not help: bad input, unknown model or version, or a malformed answer."""


class ModelBackend:
    @classmethod
    def preload(cls) -> None:
        """Import what painting needs, connecting to nothing and loading no model: a
        worker calls it as it starts, before its pool forks (``prisma_site/celery.py``)."""

    def stylize(self, *, model_name: str, version: int, images: np.ndarray,
                style_weights: np.ndarray,
                style_params: np.ndarray | None = None) -> np.ndarray:
        """uint8 ``[N, H, W, 3]`` in, uint8 of the same shape out; ``style_weights``
        float32 ``[N, S]``; ``style_params`` float32 ``[N, P]`` (the ``style_params``
        signature, beside the weights) or None (``serving_default``).

        Checks the inputs (``check_images``, ``check_style_weights``,
        ``check_style_params``: PermanentBackendError), has the backend's ``_paint`` run
        the model on them, and checks its answer (``check_stylized``)."""
        images = check_images(images)
        style_weights = check_style_weights(style_weights, images)
        style_params = check_style_params(style_params, style_weights, images)
        stylized = self._paint(model_name=model_name, version=version, images=images,
                               style_weights=style_weights, style_params=style_params)
        return check_stylized(stylized, images, model_name=model_name, version=version)

    def _paint(self, *, model_name: str, version: int, images: np.ndarray,
               style_weights: np.ndarray, style_params: np.ndarray | None):
        """The model's answer for inputs ``stylize`` has checked, any array-like; a
        failure raises BackendError."""
        raise NotImplementedError

    def is_ready(self, *, model_name: str, version: int) -> bool:
        """Whether ``stylize`` can serve this model version right now."""
        raise NotImplementedError


def check_images(images) -> np.ndarray:
    """The batch as a uint8 ``[N, H, W, 3]`` array, or PermanentBackendError."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise PermanentBackendError(f"Images must be 8-bit (uint8), got {images.dtype}.")
    if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise PermanentBackendError(
            f"Images must be a non-empty RGB batch [N, H, W, 3], got shape {images.shape}."
        )
    return images


def check_style_weights(style_weights, images: np.ndarray) -> np.ndarray:
    """The weights as a finite float32 ``[N, S]`` array (N images), or PermanentBackendError."""
    if style_weights is None:
        raise PermanentBackendError("Style weights are missing: every network takes one "
                                    "row of slot weights per image.")
    weights = np.asarray(style_weights, dtype=np.float32)
    if weights.ndim != 2 or weights.shape[0] != len(images) or weights.shape[1] < 2:
        raise PermanentBackendError(
            f"Style weights must be one row of S >= 2 numbers per image [{len(images)}, S], "
            f"got shape {weights.shape}."
        )
    if not np.isfinite(weights).all():
        raise PermanentBackendError("Style weights must be finite numbers.")
    return np.ascontiguousarray(weights)


def check_style_params(style_params, style_weights, images: np.ndarray) -> np.ndarray | None:
    """The rows as a finite float32 ``[N, P]`` array (N images, with weights), or
    PermanentBackendError."""
    if style_params is None:
        return None
    params = np.asarray(style_params, dtype=np.float32)
    if params.ndim != 2 or params.shape[0] != len(images) or params.shape[1] < 2:
        raise PermanentBackendError(
            f"Style params must be one row of P numbers per image [{len(images)}, P], "
            f"got shape {params.shape}.")
    if not np.isfinite(params).all():
        raise PermanentBackendError("Style params must be finite numbers.")
    return np.ascontiguousarray(params)


def check_stylized(stylized, images: np.ndarray, *, model_name: str, version: int) -> np.ndarray:
    """The model's answer if it is a uint8 batch shaped like the input."""
    stylized = np.asarray(stylized)
    if stylized.dtype != np.uint8 or stylized.shape != images.shape:
        raise PermanentBackendError(
            f"Model {model_name} version {version} returned {stylized.dtype} images of shape "
            f"{stylized.shape} for {images.dtype} images of shape {images.shape}."
        )
    return stylized
