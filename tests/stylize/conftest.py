"""Fixtures of the site's tests: the job queue, accounts and throttles, and the training tests
(train_style, train_bank, the admin's Retrain)."""

from unittest import mock

import keras
import numpy as np
import pytest
from django.core.cache import cache
from PIL import Image

from tests.helpers import RecordingBackend, TrainingCaptured


@pytest.fixture
def recording_backend(monkeypatch):
    """A RecordingBackend for every photo that ``stylize.services.stylizing`` paints."""
    recorder = RecordingBackend()
    monkeypatch.setattr("stylize.services.stylizing.get_backend", lambda: recorder)
    return recorder


@pytest.fixture
def queue():
    """``job_run.apply_async``, recorded instead of sent (for tests that only create
    jobs; the pipeline tests run them on a real worker)."""
    with mock.patch("stylize.tasks.job_run.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def empty_cache():
    """Throttle counts, lockouts and mail limits live in the cache: each test starts
    with none and leaves none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def vgg16_random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None).save_weights(path)
    return path


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        pixels = rng.integers(0, 256, (48 + i, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    return folder


@pytest.fixture
def serving_dir(settings, tmp_path):
    settings.SERVING_DIR = tmp_path / "serving"
    settings.VAR_DIR = tmp_path / "var"
    settings.TFSERVING_MODEL_BASE_PATH = "/models/models"
    return settings.SERVING_DIR


@pytest.fixture
def captured_configs(monkeypatch, serving_dir):
    """The TrainConfigs that style_train builds; each run stops there (and fails)."""
    configs = []

    def fake_train(config, **kwargs):
        configs.append(config)
        raise TrainingCaptured("stopped by the test")

    monkeypatch.setattr("ml.train.train", fake_train)
    return configs


