"""Model backends: ``get_backend()`` gives this process's backend, chosen by
``settings.MODEL_BACKEND`` ("local" runs SavedModels in-process, "tfserving" calls
TF Serving over gRPC)."""

from __future__ import annotations

import functools

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from stylize.backends.base import (
    BackendError,
    ModelBackend,
    PermanentBackendError,
    TransientBackendError,
)

__all__ = [
    "BackendError",
    "ModelBackend",
    "PermanentBackendError",
    "TransientBackendError",
    "backend_class",
    "get_backend",
]


@functools.cache
def get_backend() -> ModelBackend:
    """One backend per process (tests call ``get_backend.cache_clear()``)."""
    return backend_class()()


def backend_class() -> type[ModelBackend]:
    """The class of ``settings.MODEL_BACKEND``, imported on first call so a process only
    pays for the backend it uses (the local one imports TensorFlow when it paints, or
    when a starting worker calls its ``preload``); the web process never does."""
    if settings.MODEL_BACKEND == "local":
        from stylize.backends.local import LocalBackend

        return LocalBackend
    if settings.MODEL_BACKEND == "tfserving":
        from stylize.backends.tfserving import TFServingBackend

        return TFServingBackend
    raise ImproperlyConfigured(
        f"MODEL_BACKEND must be 'local' or 'tfserving', not {settings.MODEL_BACKEND!r}."
    )
