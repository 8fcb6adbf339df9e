"""Keep TF Serving's model list in step with the styles' live versions.

``serving/models.config`` lists every style with a live version
(``selectors.style_list_served``) at that version: :func:`serving_config_write`
rewrites it whenever one changes (a run made live, ``manage.py register_styles``).
Before a new version goes live, :func:`serving_version_preload` has Serving load it,
so no job ever asks for a version Serving has not loaded. A version Serving could not
load is left out of the list with a warning, never written into it.
"""

import logging
import os
import time
from pathlib import Path

from django.conf import settings

from stylize.selectors import style_list_served

logger = logging.getLogger(__name__)


def serving_config_write(*, preload: dict[str, int] | None = None) -> Path:
    """Rewrite ``serving/models.config`` to list every style with a live version.

    ``preload`` adds a not-yet-live version of a model beside its live one. A version
    whose folder under ``SERVING_DIR/models`` holds no readable SavedModel is left out
    with a warning (TF Serving would refuse to start on it), so one bad row or folder
    never stops the others being served.
    """
    from ml.export import write_models_config

    versions: dict[str, set[int]] = {}
    wanted = [(style.model_name, style.live_version,
               f"{style.model_name} version {style.live_version} ({style.name})")
              for style in style_list_served()]
    wanted += [(name, version, f"{name} version {version} (not live yet)")
               for name, version in (preload or {}).items()]
    for name, version, what in wanted:
        if problem := _unservable(name, version):
            logger.warning("models.config leaves out %s: %s", what, problem)
            continue
        versions.setdefault(name, set()).add(version)
    base = settings.TFSERVING_MODEL_BASE_PATH.rstrip("/")
    models = [(name, f"{base}/{name}", sorted(versions[name])) for name in sorted(versions)]
    return write_models_config(settings.SERVING_DIR / "models.config", models)


def _unservable(model_name: str, version) -> str | None:
    """Why Serving could not load ``version`` of ``model_name`` from ``SERVING_DIR``."""
    if not model_name:
        return "it has no model name"
    if not isinstance(version, int) or version < 1:
        return f"{version!r} is not a version number"
    saved_model = settings.SERVING_DIR / "models" / model_name / str(version) / "saved_model.pb"
    if not saved_model.is_file():
        return f"{saved_model} does not exist"
    if not os.access(saved_model, os.R_OK):
        return f"{saved_model} cannot be read"
    return None


def serving_version_preload(*, model_name: str, version: int) -> None:
    """With TF Serving, have it load a new version before any job asks for it.

    Serving only loads what models.config lists, and a job for a version it has not
    loaded would fail; so the new version is listed beside the live one until
    Serving reports it available. The local backend loads on demand: nothing to do.
    Raises ``RuntimeError`` if Serving has not loaded it within
    ``settings.TFSERVING_LOAD_TIMEOUT`` seconds.
    """
    if settings.MODEL_BACKEND != "tfserving":
        return
    from stylize.backends import get_backend

    serving_config_write(preload={model_name: version})
    backend = get_backend()
    deadline = time.monotonic() + settings.TFSERVING_LOAD_TIMEOUT
    while not backend.is_ready(model_name=model_name, version=version):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"TF Serving did not load version {version} within "
                f"{settings.TFSERVING_LOAD_TIMEOUT} s; the live version is unchanged."
            )
        time.sleep(2)
