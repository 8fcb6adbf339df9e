import stat

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from ml.export import (
    export_savedmodel,
    load_savedmodel_fn,
    render_models_config,
    write_models_config,
)
from ml.model import TransformNet


@pytest.fixture(scope="module")
def model():
    net = TransformNet(width=0.25, num_residual_blocks=1)
    net(np.zeros((1, 16, 16, 3), "float32"))
    return net


@pytest.fixture(scope="module")
def odd_image():
    return np.random.default_rng(0).integers(0, 256, (1, 37, 51, 3), dtype=np.uint8)


def test_exported_savedmodel_serves_uint8_and_matches_keras(model, odd_image, tmp_path):
    version, path = export_savedmodel(model, tmp_path / "starry")
    assert (version, path) == (1, tmp_path / "starry" / "1")

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.uint8
    assert inputs["images"].shape.as_list() == [None, None, None, 3]
    outputs = signature(images=tf.constant(odd_image))
    assert list(outputs) == ["stylized"]
    served = outputs["stylized"].numpy()

    expected = np.asarray(model(odd_image.astype("float32")))
    assert served.dtype == np.uint8
    assert served.shape == odd_image.shape
    assert np.abs(served.astype(float) - expected).max() <= 1.0


def test_export_numbers_versions_after_the_highest_existing_one(model, tmp_path):
    base = tmp_path / "starry"
    (base / "7").mkdir(parents=True)
    (base / "notes").mkdir()
    assert export_savedmodel(model, base)[0] == 8
    assert export_savedmodel(model, base)[0] == 9
    # No temporary folder left for TF Serving to trip over.
    assert sorted(p.name for p in base.iterdir()) == ["7", "8", "9", "notes"]
    assert (base / "9" / "saved_model.pb").is_file()


def test_load_savedmodel_fn_takes_numpy_batches_and_single_images(model, odd_image, tmp_path):
    _, path = export_savedmodel(model, tmp_path / "starry")
    stylize = load_savedmodel_fn(path)
    batch = stylize(odd_image)
    assert batch.dtype == np.uint8 and batch.shape == odd_image.shape
    np.testing.assert_array_equal(stylize(odd_image[0]), batch)


def parse_models_config(text):
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_models_config_parses_as_tf_serving_config():
    text = render_models_config([("starry", "/models/starry"), ("wave", "/models/wave")])
    config = parse_models_config(text)
    entries = config.model_config_list.config
    assert [(e.name, e.base_path, e.model_platform) for e in entries] == [
        ("starry", "/models/starry", "tensorflow"),
        ("wave", "/models/wave", "tensorflow"),
    ]


def test_models_config_pins_the_live_version_when_given():
    text = render_models_config([("starry", "/models/starry", 3), ("wave", "/models/wave", None)])
    starry, wave = parse_models_config(text).model_config_list.config
    assert list(starry.model_version_policy.specific.versions) == [3]
    assert not wave.HasField("model_version_policy")


def test_empty_models_config_is_still_valid():
    config = parse_models_config(render_models_config([]))
    assert config.HasField("model_config_list")
    assert len(config.model_config_list.config) == 0


def test_models_config_escapes_quotes_and_backslashes():
    name, path = 'odd "name"', "C:\\models\\odd"
    entry = parse_models_config(render_models_config([(name, path)])).model_config_list.config[0]
    assert (entry.name, entry.base_path) == (name, path)


def test_write_models_config_writes_a_readable_file_atomically(tmp_path):
    target = tmp_path / "serving" / "models.config"
    write_models_config(target, [("starry", "/models/starry")])
    write_models_config(target, [("wave", "/models/wave")])
    entries = parse_models_config(target.read_text()).model_config_list.config
    assert [e.name for e in entries] == ["wave"]
    assert target.stat().st_mode & stat.S_IROTH
    assert [p.name for p in target.parent.iterdir()] == ["models.config"]
