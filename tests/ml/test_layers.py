"""Tests of ml.layers: behaviour, odd sizes and serialisation round trips."""

import keras
import numpy as np
import pytest

from ml.layers import InstanceNormalization, ReflectionConv2D, ResidualBlock, UpsampleConv2D


def _random(shape, seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype("float32")


def _reference_reflect_conv(x, kernel, bias, strides):
    """Plain numpy reflect-pad + VALID cross-correlation (NHWC, HWIO)."""
    k = kernel.shape[0]
    p = k // 2
    x = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)], mode="reflect")
    n, h, w, _ = x.shape
    out_h = (h - k) // strides + 1
    out_w = (w - k) // strides + 1
    out = np.zeros((n, out_h, out_w, kernel.shape[-1]), dtype="float64")
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * strides : i * strides + k, j * strides : j * strides + k, :]
            out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


LAYER_CASES = [
    (lambda: ReflectionConv2D(4, 3, strides=2, name="rc"), (2, 9, 11, 3)),
    (lambda: InstanceNormalization(epsilon=1e-3, name="inorm"), (2, 7, 5, 3)),
    (lambda: ResidualBlock(4, kernel_size=3, epsilon=1e-4, name="res"), (2, 7, 9, 4)),
    (lambda: UpsampleConv2D(5, kernel_size=3, size=2, name="up"), (2, 5, 7, 3)),
]


@pytest.mark.parametrize("make, shape", LAYER_CASES)
def test_from_config_round_trip_gives_same_outputs(make, shape):
    layer = make()
    x = _random(shape)
    # Non-trivial weights everywhere (instance-norm scale/offset included).
    layer.build(shape)
    layer.set_weights([_random(w.shape, seed=i + 1) for i, w in enumerate(layer.weights)])
    expected = keras.ops.convert_to_numpy(layer(x))

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build(shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, shape", LAYER_CASES)
def test_keras_file_round_trip_gives_same_outputs(make, shape, tmp_path):
    layer = make()
    inputs = keras.Input(shape=(None, None, shape[-1]))
    model = keras.Model(inputs, layer(inputs))
    model.set_weights([_random(w.shape, seed=i + 1) for i, w in enumerate(model.weights)])
    x = _random(shape)
    expected = keras.ops.convert_to_numpy(model(x))

    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is type(layer)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides, size", [(1, (7, 9)), (2, (7, 9)), (2, (8, 6))])
def test_reflection_conv_matches_numpy_reference(strides, size):
    layer = ReflectionConv2D(3, 3, strides=strides)
    x = _random((2, *size, 2))
    layer.build(x.shape)
    kernel, bias = _random((3, 3, 2, 3), seed=5), _random((3,), seed=6)
    layer.set_weights([kernel, bias])
    got = keras.ops.convert_to_numpy(layer(x))
    expected = _reference_reflect_conv(x, kernel, bias, strides)
    assert got.shape == expected.shape == (2, -(-size[0] // strides), -(-size[1] // strides), 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_reflection_conv_has_no_zero_border():
    # A constant image stays constant: zero padding would darken the frame.
    layer = ReflectionConv2D(2, 9)
    x = np.full((1, 13, 11, 3), 0.7, dtype="float32")
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (1, 13, 11, 2)
    np.testing.assert_allclose(y, np.broadcast_to(y[:, :1, :1, :], y.shape), atol=1e-5)


def test_reflection_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        ReflectionConv2D(4, 4)
    with pytest.raises(ValueError, match="filters"):
        ReflectionConv2D(0, 3)


def test_instance_norm_normalises_each_image_and_channel():
    layer = InstanceNormalization(epsilon=1e-6)
    rng = np.random.default_rng(0)
    # Different scale and shift per image and channel.
    x = (rng.normal(size=(3, 9, 7, 4)) * [1, 5, 20, 0.5] + [0, 100, -50, 3]).astype("float32")
    x[1] *= 10
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1, atol=1e-3)

    layer.set_weights([np.array([2, 3, 4, 5], "float32"), np.array([1, -1, 0, 7], "float32")])
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), np.broadcast_to([1, -1, 0, 7], (3, 4)), atol=1e-3)
    np.testing.assert_allclose(y.std(axis=(1, 2)), np.broadcast_to([2, 3, 4, 5], (3, 4)), atol=1e-2)


def test_residual_block_is_identity_when_last_norm_is_zeroed():
    block = ResidualBlock(4)
    x = _random((2, 7, 5, 4))
    y = keras.ops.convert_to_numpy(block(x))
    assert y.shape == x.shape
    assert not np.allclose(y, x)
    block.norm2.set_weights([np.zeros(4, "float32"), np.zeros(4, "float32")])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), x, atol=1e-6)


def test_residual_block_needs_matching_channels():
    with pytest.raises(ValueError, match="4 channels"):
        ResidualBlock(4)(_random((1, 5, 5, 3)))


def test_upsample_is_nearest_neighbour_then_conv():
    layer = UpsampleConv2D(2, kernel_size=1, size=2)
    x = _random((1, 3, 5, 2))
    layer.build(x.shape)
    layer.set_weights([np.eye(2, dtype="float32").reshape(1, 1, 2, 2), np.zeros(2, "float32")])
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y, x.repeat(2, axis=1).repeat(2, axis=2), atol=1e-6)


def test_upsample_doubles_odd_sizes():
    y = UpsampleConv2D(6)(_random((2, 5, 7, 3)))
    assert tuple(y.shape) == (2, 10, 14, 6)
    assert len(UpsampleConv2D(6).weights) == 0  # weights only appear in build()
