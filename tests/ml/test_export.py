import stat

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from ml.bank import one_hot
from ml.export import (
    BANK_MODEL_FILE,
    PARAMS_SIGNATURE_NAME,
    SLOTS_FILE,
    export_savedmodel,
    load_savedmodel_fn,
    read_slots,
    render_models_config,
    write_models_config,
)
from ml.model import TransformNet

#: The slots of a lone style's network: the identity, then the style.
LONE_SLOTS = [{"slug": None, "identity": True}, {"slug": "starry"}]


def _styled(batch):
    """Style weights painting slot 1 (the style) for ``batch`` images."""
    return np.repeat(one_hot([1], 2), batch, axis=0)


@pytest.fixture(scope="module")
def model():
    net = TransformNet(width=0.25, num_residual_blocks=1)
    net(np.zeros((1, 16, 16, 3), "float32"), _styled(1))
    # Slot 1 paints differently from slot 0, as after training.
    rng = np.random.default_rng(0)
    for norm in net.style_norm_layers():
        norm.set_weights([rng.normal(1.0, 0.5, w.shape).astype("float32")
                          for w in norm.get_weights()])
    return net


@pytest.fixture(scope="module")
def odd_image():
    return np.random.default_rng(0).integers(0, 256, (1, 37, 51, 3), dtype=np.uint8)


def test_exported_savedmodel_serves_uint8_and_matches_keras(model, odd_image, tmp_path):
    version, path = export_savedmodel(model, tmp_path / "starry", slots=LONE_SLOTS)
    assert (version, path) == (1, tmp_path / "starry" / "1")

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert sorted(inputs) == ["images", "style_weights"]
    assert inputs["images"].dtype == tf.uint8
    assert inputs["images"].shape.as_list() == [None, None, None, 3]
    assert inputs["style_weights"].dtype == tf.float32
    assert inputs["style_weights"].shape.as_list() == [None, 2]
    outputs = signature(images=tf.constant(odd_image), style_weights=tf.constant(_styled(1)))
    assert list(outputs) == ["stylized"]
    served = outputs["stylized"].numpy()

    expected = np.asarray(model(odd_image.astype("float32"), _styled(1)))
    assert served.dtype == np.uint8
    assert served.shape == odd_image.shape
    assert np.abs(served.astype(float) - expected).max() <= 1.0
    identity = signature(images=tf.constant(odd_image),
                         style_weights=tf.constant(one_hot([0], 2)))["stylized"].numpy()
    assert np.abs(identity.astype(int) - served.astype(int)).mean() > 1.0  # the slots differ


def test_every_export_lists_its_slots_keeps_the_keras_model_and_takes_style_params(
        model, tmp_path):
    _, path = export_savedmodel(model, tmp_path / "starry", slots=LONE_SLOTS)
    listed = read_slots(path)
    assert listed["num_styles"] == 2
    assert listed["style_params_size"] == model.style_params_size > 0
    assert listed["slots"] == [{"slug": None, "identity": True, "slot": 0},
                               {"slug": "starry", "slot": 1}]
    assert (path / SLOTS_FILE).is_file() and (path / BANK_MODEL_FILE).is_file()
    params = tf.saved_model.load(str(path)).signatures[PARAMS_SIGNATURE_NAME]
    assert sorted(params.structured_input_signature[1]) == [
        "images", "style_params", "style_weights"]
    stylize = load_savedmodel_fn(path)
    assert stylize.num_styles == 2 and stylize.params_size == model.style_params_size
    assert stylize.with_params is not None


@pytest.mark.parametrize("slots", [None, [], LONE_SLOTS[:1], LONE_SLOTS + [{"slug": "x"}]])
def test_export_needs_one_description_per_slot(model, tmp_path, slots):
    with pytest.raises(ValueError, match="a network of 2 slots needs 2 slot descriptions"):
        export_savedmodel(model, tmp_path / "starry", slots=slots)
    assert not (tmp_path / "starry").exists() or not any((tmp_path / "starry").iterdir())


def test_load_savedmodel_fn_refuses_a_model_exported_before_every_network_was_a_bank(tmp_path):
    """A SavedModel whose ``serving_default`` takes the images alone (the former
    single-style export) is refused with a message that says why."""

    class ImagesOnly(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                    name="images")])
        def serve(self, images):
            return {"stylized": images}

    module = ImagesOnly()
    path = tmp_path / "old" / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    assert tf.saved_model.load(str(path)).signatures["serving_default"]  # a valid SavedModel
    with pytest.raises(ValueError, match="exported before every network was a bank"):
        load_savedmodel_fn(path)


def test_export_numbers_versions_after_the_highest_existing_one(model, tmp_path):
    base = tmp_path / "starry"
    (base / "7").mkdir(parents=True)
    (base / "notes").mkdir()
    assert export_savedmodel(model, base, slots=LONE_SLOTS)[0] == 8
    assert export_savedmodel(model, base, slots=LONE_SLOTS)[0] == 9
    # No temporary folder left for TF Serving to trip over.
    assert sorted(p.name for p in base.iterdir()) == ["7", "8", "9", "notes"]
    assert (base / "9" / "saved_model.pb").is_file()


def test_load_savedmodel_fn_takes_numpy_batches_and_single_images(model, odd_image, tmp_path):
    _, path = export_savedmodel(model, tmp_path / "starry", slots=LONE_SLOTS)
    stylize = load_savedmodel_fn(path)
    batch = stylize(odd_image, _styled(1))
    assert batch.dtype == np.uint8 and batch.shape == odd_image.shape
    np.testing.assert_array_equal(stylize(odd_image[0], _styled(1)[0]), batch)
    with pytest.raises(ValueError, match="has 2 slots: give style_weights"):
        stylize(odd_image, None)


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
