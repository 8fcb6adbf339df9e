"""Tiny exported models and a TF Serving stand-in, for any test that needs a model.

Registered for every test by ``pytest_plugins`` in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tfserving_server import start_tfserving_server

__all__ = [
    "TINY_BANK_NAME",
    "TINY_BANK_SLOTS",
    "export_tiny_bank",
    "export_tiny_model",
    "fake_tfserving",
    "use_local_backend",
    "tfserving_server",
    "tiny_serving_dir",
]

TINY_MODEL_NAME = "tiny"
TINY_BANK_NAME = "tinybank"
TINY_BANK_SLOTS = 3  # the identity and two styles


def export_tiny_model(models_dir, name: str = TINY_MODEL_NAME, width: float = 0.125, seed: int = 0):
    """Export a small network of one style (the identity and slot 1, a lone style's
    bank) with fixed random weights as the next version of ``<models_dir>/<name>/``;
    returns ``(version, path)``. Same seed, same pixels."""
    return export_tiny_bank(models_dir, name, num_styles=2, width=width, seed=seed,
                            slugs=[name])


def export_tiny_bank(models_dir, name: str = TINY_BANK_NAME, num_styles: int = TINY_BANK_SLOTS,
                     width: float = 0.125, seed: int = 0, slugs=None):
    """Export a small bank (``TransformNet(num_styles=...)``) with fixed random weights,
    every slot's norm maps distinct, as the next version of ``<models_dir>/<name>/``;
    returns ``(version, path)``. ``slugs`` names slots 1.. in ``slots.json``."""
    import keras

    from ml.bank import style_norms
    from ml.export import export_savedmodel
    from ml.model import TransformNet

    keras.utils.set_random_seed(seed)
    model = TransformNet(width=width, num_residual_blocks=1, num_styles=num_styles)
    model.build((None, None, None, 3))
    rng = np.random.default_rng(seed)
    for norm in style_norms(model):
        norm.set_weights([rng.normal(1.0, 0.6, w.shape).astype("float32")
                          for w in norm.get_weights()])
    slugs = list(slugs or [f"{name}-style-{i}" for i in range(1, num_styles)])
    slots = [{"slug": None, "identity": True}] + [{"slug": slug} for slug in slugs]
    return export_savedmodel(model, Path(models_dir) / name, slots=slots)


@pytest.fixture(scope="session")
def tiny_serving_dir(tmp_path_factory) -> Path:
    """A SERVING_DIR holding ``models/tiny/1`` (one style) and the bank ``models/tinybank/1``
    (shared by the session: do not modify)."""
    serving_dir = tmp_path_factory.mktemp("serving")
    export_tiny_model(serving_dir / "models")
    export_tiny_bank(serving_dir / "models")
    return serving_dir


@pytest.fixture
def fake_tfserving(tiny_serving_dir):
    """A running ``FakeTFServing`` over ``tiny_serving_dir``, for tests that stop and
    start it (same port) or use its hooks (``predict_delay``, ``version_states``)."""
    server, _ = start_tfserving_server(tiny_serving_dir / "models")
    yield server
    server.stop(grace=0)


@pytest.fixture
def tfserving_server(tiny_serving_dir) -> str:
    """``"127.0.0.1:PORT"`` of a TF Serving stand-in serving ``tiny_serving_dir``.

    Needs only ``tiny_serving_dir`` besides itself, so importing the two is enough."""
    server, port = start_tfserving_server(tiny_serving_dir / "models")
    yield f"127.0.0.1:{port}"
    server.stop(grace=0)


@pytest.fixture
def use_local_backend(settings, tiny_serving_dir):
    """MODEL_BACKEND=local over the tiny model, with a fresh backend before and after."""
    from stylize.backends import get_backend

    settings.MODEL_BACKEND = "local"
    settings.SERVING_DIR = tiny_serving_dir
    get_backend.cache_clear()
    yield
    get_backend.cache_clear()
