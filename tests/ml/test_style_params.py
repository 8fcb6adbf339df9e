"""Explicit per-image γ/β (``style_params``): a style that is no slot of the bank, such as
a user's own (docs/design/own-styles.md). The layer, the network, the bank's row of a
slot, the mix of a row with slots, the shared-weights digest, and the second serving
signature, beside an unchanged ``serving_default``."""

import json

import keras
import numpy as np
import pytest

from ml import bank
from ml.export import (
    PARAMS_SIGNATURE_NAME,
    SLOTS_FILE,
    export_savedmodel,
    load_savedmodel_fn,
    read_slots,
)
from ml.layers import ConditionalInstanceNormalization, ResidualBlock
from ml.model import TransformNet
from tests.helpers import feature_maps, noise_batch, randomised, tiny_bank

#: Norm maps drawn around 1 (``randomised``): scales near one, as trained ones are.
NEAR_ONE = {"loc": 1.0, "scale": 0.6}


# --------------------------------------------------------------------------- the layer


def test_a_row_of_params_is_a_map_of_its_own_and_adds_to_the_slots_mix():
    x = feature_maps()
    layer = ConditionalInstanceNormalization(3)
    layer(x, bank.one_hot([0, 0, 0], 3))
    layer = randomised(layer, **NEAR_ONE)
    scale, offset = (np.asarray(w) for w in layer.get_weights())
    assert layer.params_size == 10
    rows = np.concatenate([scale[[2, 0, 1]], offset[[2, 0, 1]]], axis=1)  # slots as rows
    by_weights = np.asarray(layer(x, bank.one_hot([2, 0, 1], 3)))
    by_params = np.asarray(layer(x, style_params=rows))
    np.testing.assert_array_equal(by_params, by_weights)

    # Weights and params add up: half of slot 1 and half of slot 2's row is their mix.
    half = np.tile(np.array([[0, 0.5, 0]], "float32"), (3, 1))
    row_two = np.tile(np.concatenate([scale[2], offset[2]]) * 0.5, (3, 1))
    mixed = np.asarray(layer(x, half, style_params=row_two))
    np.testing.assert_allclose(mixed, np.asarray(layer(x, half + np.array([0, 0, 0.5],
                                                                          "float32"))),
                               rtol=1e-5, atol=1e-5)


def test_the_layer_refuses_a_wrong_row_and_wants_something():
    layer = ConditionalInstanceNormalization(3)
    layer(feature_maps(), bank.one_hot([0, 0, 0], 3))
    with pytest.raises(ValueError, match=r"style_params of shape \(batch, 10\)"):
        layer(feature_maps(), style_params=np.ones((3, 7), "float32"))
    with pytest.raises(ValueError, match="needs style_weights, style_params or both"):
        layer(feature_maps())


def test_a_layer_built_by_its_params_alone_keeps_its_config():
    layer = ConditionalInstanceNormalization(4, epsilon=1e-3, name="cin")
    out = layer(feature_maps(), style_params=np.ones((3, 10), "float32"))
    assert out.shape == (3, 7, 9, 5) and layer.scale.shape == (4, 5)
    config = layer.get_config()
    clone = ConditionalInstanceNormalization.from_config(config)
    assert clone.get_config() == config and clone.num_styles == 4


def test_the_layer_with_params_survives_from_config_and_a_keras_file(tmp_path):
    inputs = keras.Input(shape=(None, None, 5))
    weights = keras.Input(shape=(3,))
    params = keras.Input(shape=(10,))
    layer = ConditionalInstanceNormalization(3, name="cin")
    model = keras.Model([inputs, weights, params], layer(inputs, weights, style_params=params))
    randomised(layer, **NEAR_ONE)
    x = feature_maps()
    w = np.tile(np.array([[0.25, 0.25, 0]], "float32"), (3, 1))
    p = np.random.default_rng(5).normal(0, 1, (3, 10)).astype("float32")
    expected = np.asarray(model([x, w, p]))

    clone = ConditionalInstanceNormalization.from_config(layer.get_config())
    clone(x, w, style_params=p)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, w, style_params=p)), expected,
                               rtol=1e-5, atol=1e-5)

    model.save(tmp_path / "layer.keras")
    loaded = keras.saving.load_model(tmp_path / "layer.keras")
    np.testing.assert_allclose(np.asarray(loaded([x, w, p])), expected, rtol=1e-5, atol=1e-5)


def test_a_residual_block_splits_its_row_between_its_two_norms():
    block = ResidualBlock(4, num_styles=3)
    x = feature_maps(shape=(2, 6, 6, 4))
    block(x, bank.one_hot([1, 2], 3))
    for norm in (block.norm1, block.norm2):
        randomised(norm, seed=7, **NEAR_ONE)
    assert block.params_size == 16
    rows = []
    for slot in (1, 2):
        rows.append(np.concatenate([np.asarray(w)[slot] for norm in (block.norm1, block.norm2)
                                    for w in (norm.scale, norm.offset)]))
    np.testing.assert_array_equal(np.asarray(block(x, style_params=np.stack(rows))),
                                  np.asarray(block(x, bank.one_hot([1, 2], 3))))
    assert ResidualBlock(4).params_size == 16  # a lone style's block has rows too


# --------------------------------------------------------------------------- the network


def test_the_fast_preset_bank_has_1088_numbers_a_style():
    net = TransformNet(width=0.5, num_residual_blocks=3, output_kernel_size=3, num_styles=13)
    net.build((None, None, None, 3))
    assert net.style_params_size == 1088  # docs/design/banks.md: 4 KB a style
    assert sum(2 * int(norm.scale.shape[-1]) for norm in net.style_norm_layers()) == 1088
    # The row's length depends on the shape, not the slots: a lone style's is as long.
    lone = TransformNet(width=0.5, num_residual_blocks=3, output_kernel_size=3)
    assert lone.num_styles == 2 and lone.style_params_size == 1088


def test_a_slots_row_paints_that_slot_bit_for_bit():
    net = tiny_bank(3)
    x = noise_batch()
    for slot in range(3):
        row = bank.slot_params(net, slot)
        assert row.shape == (net.style_params_size,) and row.dtype == np.float32
        by_params = np.asarray(net(x, style_params=np.stack([row, row])))
        by_weights = np.asarray(net(x, bank.one_hot([slot, slot], 3)))
        np.testing.assert_array_equal(by_params, by_weights)
        zero = np.zeros((2, 3), "float32")  # what the serving signature gets for a row alone
        np.testing.assert_array_equal(np.asarray(net(x, zero, style_params=np.stack([row] * 2))),
                                      by_weights)


@pytest.mark.parametrize("strength, blend", [(1.0, 0.0), (0.5, 0.0), (0.8, 0.25), (0.0, 0.0)])
def test_a_row_at_a_strength_and_mixed_paints_as_that_slot_would(strength, blend):
    net = tiny_bank(4)
    x = noise_batch(1)
    row = bank.slot_params(net, 2)  # slot 2 seen as a row from outside the bank
    weights, share = bank.params_mix(4, strength=strength, blend_slot=3 if blend else None,
                                     blend=blend)
    assert weights.sum() + share == pytest.approx(1.0)
    as_row = np.asarray(net(x, weights[None], style_params=(share * row)[None]))
    as_slot = np.asarray(net(x, bank.mix_weights(4, 2, strength=strength,
                                                 blend_slot=3 if blend else None,
                                                 blend=blend)[None]))
    np.testing.assert_allclose(as_row, as_slot, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kwargs", [{"strength": 1.5}, {"blend": 0.5},
                                    {"blend_slot": 0, "blend": 0.5}, {"blend_slot": 4}])
def test_impossible_mixes_of_a_row_are_refused(kwargs):
    with pytest.raises(ValueError):
        bank.params_mix(4, **kwargs)


def test_the_network_refuses_a_row_of_the_wrong_length_and_wants_weights_or_a_row():
    net = tiny_bank(3)
    with pytest.raises(ValueError, match=f"style_params must have shape \\(batch, "
                                         f"{net.style_params_size}\\)"):
        net(noise_batch(1), style_params=np.ones((1, 5), "float32"))
    with pytest.raises(ValueError, match=f"or style_params of shape \\(batch, "
                                         f"{net.style_params_size}\\)"):
        net(noise_batch(1))


def test_a_lone_style_paints_a_row_as_a_bank_does():
    net = tiny_bank(2)
    x = noise_batch()
    row = bank.slot_params(net, 1)
    np.testing.assert_array_equal(np.asarray(net(x, style_params=np.stack([row, row]))),
                                  np.asarray(net(x, bank.one_hot([1, 1], 2))))


def test_a_bank_painted_by_rows_survives_a_keras_file(tmp_path):
    net = tiny_bank(3)
    row = bank.slot_params(net, 1) * 0.7 + 0.1
    expected = np.asarray(net(noise_batch(), style_params=np.stack([row, row])))
    net.save(tmp_path / "bank.keras")
    loaded = keras.saving.load_model(tmp_path / "bank.keras")
    assert loaded.get_config() == net.get_config()
    np.testing.assert_array_equal(
        np.asarray(loaded(noise_batch(), style_params=np.stack([row, row]))), expected)


def test_the_shared_digest_follows_the_convolutions_not_the_rows():
    net = tiny_bank(3)
    grown = bank.grow(net, 4)  # a new row: the same shared weights
    assert bank.shared_digest(grown) == bank.shared_digest(net)
    for norm in bank.style_norms(grown):  # any rows at all
        randomised(norm, seed=9, **NEAR_ONE)
    assert bank.shared_digest(grown) == bank.shared_digest(net)
    other = tiny_bank(3)
    other.conv_in.kernel.assign(np.asarray(other.conv_in.kernel) + 1e-3)
    assert bank.shared_digest(other) != bank.shared_digest(net)


# --------------------------------------------------------------------------- export


def test_a_bank_exports_a_style_params_signature_beside_an_unchanged_default(tmp_path):
    import tensorflow as tf

    net = tiny_bank(3)
    slots = [{"slug": None, "identity": True}, {"slug": "red"}, {"slug": "blue"}]
    _, path = export_savedmodel(net, tmp_path / "bank", slots=slots)
    listed = read_slots(path)
    assert listed["style_params_size"] == net.style_params_size
    assert listed["shared_digest"] == bank.shared_digest(net)
    assert json.loads((path / SLOTS_FILE).read_text()) == listed

    loaded = tf.saved_model.load(str(path))
    default = loaded.signatures["serving_default"].structured_input_signature[1]
    assert sorted(default) == ["images", "style_weights"]  # as before own styles
    params = loaded.signatures[PARAMS_SIGNATURE_NAME]
    specs = params.structured_input_signature[1]
    assert sorted(specs) == ["images", "style_params", "style_weights"]
    assert specs["style_params"].shape.as_list() == [None, net.style_params_size]
    assert specs["style_params"].dtype == tf.float32
    assert params.structured_outputs["stylized"].dtype == tf.uint8

    stylize = load_savedmodel_fn(path)
    assert stylize.params_size == net.style_params_size and stylize.num_styles == 3
    images = noise_batch(2, 21).astype(np.uint8)
    for slot in range(3):
        by_slot = stylize(images, bank.one_hot([slot, slot], 3))
        by_row = stylize.with_params(images, np.zeros(3, "float32"), bank.slot_params(net, slot))
        assert by_row.dtype == np.uint8 and by_row.shape == images.shape
        np.testing.assert_array_equal(by_row, by_slot)
    with pytest.raises(ValueError, match="style_params must be"):
        stylize.with_params(images, np.zeros(3, "float32"), np.ones(5, "float32"))


def test_a_lone_style_export_has_the_style_params_signature_and_its_slots(tmp_path):
    net = tiny_bank(2)
    slots = [{"slug": None, "identity": True}, {"slug": "lone"}]
    _, path = export_savedmodel(net, tmp_path / "lone", slots=slots)
    listed = read_slots(path)
    assert listed["num_styles"] == 2 and listed["style_params_size"] == net.style_params_size
    assert [slot["slug"] for slot in listed["slots"]] == [None, "lone"]
    stylize = load_savedmodel_fn(path)
    assert stylize.with_params is not None and stylize.params_size == net.style_params_size
    images = noise_batch(2, 21).astype(np.uint8)
    np.testing.assert_array_equal(
        stylize.with_params(images, np.zeros(2, "float32"), bank.slot_params(net, 1)),
        stylize(images, bank.one_hot([1, 1], 2)))
