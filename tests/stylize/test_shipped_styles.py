"""The styles shipped under serving/ work out of the box (what `make run` registers)."""

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorflow_serving.config import model_server_config_pb2

from stylize import services
from stylize.backends.local import LocalBackend
from stylize.models import Style

SERVING_DIR = Path(__file__).resolve().parents[2] / "serving"
SHIPPED = sorted(
    path.name for path in (SERVING_DIR / "models").iterdir()
    if path.is_dir() and services.shipped_versions(path)
)

pytestmark = pytest.mark.skipif(not SHIPPED, reason="no styles shipped yet")


@pytest.mark.django_db
def test_every_shipped_model_registers_as_a_ready_public_style():
    styles = services.styles_register_shipped(serving_dir=SERVING_DIR)
    assert sorted(style.model_name for style in styles) == SHIPPED
    for style in Style.objects.all():
        assert style.is_ready and style.is_public and style.description
        assert Image.open(style.style_image).size[0] >= 256
        assert style.example_image and Image.open(style.example_image).size[0] >= 256


def test_models_config_lists_every_shipped_model_for_serving():
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((SERVING_DIR / "models.config").read_text(), config)
    listed = {entry.name: entry for entry in config.model_config_list.config}
    assert sorted(listed) == SHIPPED
    for name, entry in listed.items():
        assert entry.base_path == f"/models/models/{name}"
        versions = list(entry.model_version_policy.specific.versions)
        assert versions == [services.shipped_versions(SERVING_DIR / "models" / name)[-1]]


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_paints_a_photo(name):
    backend = LocalBackend(serving_dir=SERVING_DIR)
    version = services.shipped_versions(SERVING_DIR / "models" / name)[-1]
    y, x = np.mgrid[0:65, 0:97]
    photo = np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8)[None]
    result = backend.stylize(model_name=name, version=version, images=photo)
    assert result.shape == photo.shape and result.dtype == np.uint8
    assert np.abs(result.astype(int) - photo).mean() > 10  # it really repaints
