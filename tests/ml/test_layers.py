"""Tests of ml.layers: behaviour, odd sizes and serialisation round trips."""

import keras
import numpy as np
import pytest

from ml.bank import one_hot
from ml.layers import (
    ConditionalInstanceNormalization,
    InstanceNormalization,
    ReflectionConv2D,
    ResidualBlock,
    UpsampleConv2D,
)


def _random(shape, seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype("float32")


def _lone_style(batch):
    """Style weights that paint slot 1 of a lone network (``num_styles=2``) for every image."""
    return np.repeat(one_hot([1], 2), batch, axis=0)


def _call(layer, x):
    """``layer`` on ``x``; a residual block (whose norms are conditional) in slot 1."""
    if isinstance(layer, ResidualBlock):
        return layer(x, _lone_style(len(x)))
    return layer(x)


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
    # clip_z 1.5 clips uniform values (they reach 1.73 std), so a lost setting shows.
    (lambda: InstanceNormalization(clip_z=1.5, name="robust"), (2, 7, 5, 3)),
    (lambda: ResidualBlock(4, clip_z=1.5, name="robust_res"), (2, 7, 9, 4)),
    (lambda: UpsampleConv2D(5, kernel_size=3, size=2, name="up"), (2, 5, 7, 3)),
]


@pytest.mark.parametrize("make, shape", LAYER_CASES)
def test_from_config_round_trip_gives_same_outputs(make, shape):
    layer = make()
    x = _random(shape)
    # Non-trivial weights everywhere (instance-norm scale/offset included).
    layer.build(shape)
    layer.set_weights([_random(w.shape, seed=i + 1) for i, w in enumerate(layer.weights)])
    expected = keras.ops.convert_to_numpy(_call(layer, x))

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build(shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(_call(clone, x)), expected,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, shape", LAYER_CASES)
def test_keras_file_round_trip_gives_same_outputs(make, shape, tmp_path):
    layer = make()
    inputs = keras.Input(shape=(None, None, shape[-1]))
    x = _random(shape)
    if isinstance(layer, ResidualBlock):  # conditional norms: the style weights come too
        weights = keras.Input(shape=(2,))
        model = keras.Model([inputs, weights], layer(inputs, weights))
        x = [x, _lone_style(shape[0])]
    else:
        model = keras.Model(inputs, layer(inputs))
    model.set_weights([_random(w.shape, seed=i + 1) for i, w in enumerate(model.weights)])
    expected = keras.ops.convert_to_numpy(model(x))

    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is type(layer)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), expected, rtol=1e-5, atol=1e-5
    )


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
    np.testing.assert_allclose(
        y.mean(axis=(1, 2)), np.broadcast_to([1, -1, 0, 7], (3, 4)), atol=1e-3
    )
    np.testing.assert_allclose(
        y.std(axis=(1, 2)), np.broadcast_to([2, 3, 4, 5], (3, 4)), atol=1e-2
    )


def test_robust_instance_norm_lets_no_droplet_set_a_maps_statistics():
    x = np.random.default_rng(3).normal(size=(1, 32, 32, 2)).astype("float32")
    spiked = x.copy()
    spiked[0, 5, 7, :] = 200.0  # one pixel 200 std out: a droplet
    away = np.ones((1, 32, 32, 2), bool)
    away[0, 5, 7, :] = False

    def change(layer):
        ordinary = keras.ops.convert_to_numpy(layer(x))
        dropped = keras.ops.convert_to_numpy(layer(spiked))
        return np.abs(dropped - ordinary)[away].mean(), ordinary, dropped

    plain_change, plain, _ = change(InstanceNormalization())
    robust_change, robust, robust_dropped = change(InstanceNormalization(clip_z=6.0))
    assert plain_change > 0.5  # the spike shrinks the whole map ~6x
    assert robust_change < 0.05
    # An ordinary map keeps its statistics, and the droplet itself stays visible
    # (so the losses, not the norm, must take it away).
    np.testing.assert_allclose(robust, plain, atol=0.02)
    assert robust_dropped[0, 5, 7].min() > 100


def test_robust_norm_is_kept_by_the_conditional_norm_and_rejects_a_bad_clip():
    x = np.random.default_rng(4).normal(size=(2, 16, 16, 3)).astype("float32")
    x[:, 3, 3, :] = 150.0
    weights = np.eye(2, dtype="float32")
    plain = ConditionalInstanceNormalization(2)
    robust = ConditionalInstanceNormalization(2, clip_z=6.0)
    plain_out = keras.ops.convert_to_numpy(plain(x, weights))
    robust_out = keras.ops.convert_to_numpy(robust(x, weights))
    assert robust_out[:, 8:, 8:].std() > 3 * plain_out[:, 8:, 8:].std()
    clone = ConditionalInstanceNormalization.from_config(robust.get_config())
    assert clone.clip_z == 6.0
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="clip_z"):
            InstanceNormalization(clip_z=bad)


def test_residual_block_is_identity_when_last_norm_is_zeroed():
    block = ResidualBlock(4)
    x = _random((2, 7, 5, 4))
    weights = _lone_style(2)
    y = keras.ops.convert_to_numpy(block(x, weights))
    assert y.shape == x.shape
    assert not np.allclose(y, x)
    # Slot 1's map zeroed (slot 0's left as it is): the painted slot adds nothing.
    scale, offset = block.norm2.get_weights()
    scale[1], offset[1] = 0.0, 0.0
    block.norm2.set_weights([scale, offset])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x, weights)), x, atol=1e-6)
    assert not np.allclose(keras.ops.convert_to_numpy(block(x, np.repeat(one_hot([0], 2), 2, 0))),
                           x)


def test_residual_block_needs_matching_channels():
    with pytest.raises(ValueError, match="4 channels"):
        ResidualBlock(4)(_random((1, 5, 5, 3)), _lone_style(1))


def test_residual_block_is_always_conditional_with_at_least_two_slots():
    block = ResidualBlock(4)
    assert block.num_styles == 2 and block.get_config()["num_styles"] == 2
    assert isinstance(block.norm1, ConditionalInstanceNormalization)
    assert isinstance(block.norm2, ConditionalInstanceNormalization)
    assert block.params_size == 16
    for bad in (1, 0, True, 2.0):
        with pytest.raises(ValueError, match="identity slot and at least one style"):
            ResidualBlock(4, num_styles=bad)
    with pytest.raises(ValueError, match="needs style_weights, style_params or both"):
        block(_random((1, 5, 5, 4)))


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


# ----------------------------------------------------------------------------------------
# The layers use faster formulations (concatenation padding, a folded instance-norm
# affine, a sub-pixel upsampling convolution); each must equal the straightforward one.


def _reference_upsample_conv(x, kernel, bias, size):
    """Nearest-neighbour repeat, reflect pad and VALID conv, in numpy."""
    up = x.repeat(size, axis=1).repeat(size, axis=2)
    return _reference_reflect_conv(up, kernel, bias, strides=1)


def _reference_instance_norm(x, scale, offset, epsilon):
    """Moments, normalise, then the per-channel affine map, in float64 numpy."""
    x = x.astype("float64")
    mean = x.mean(axis=(1, 2), keepdims=True)
    variance = x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * scale + offset


def _keras_reference_upsample_conv(x, kernel, bias, size):
    """The former UpsampleConv2D.call with keras ops: repeat, ops.pad reflect, conv."""
    ops = keras.ops
    y = ops.repeat(ops.repeat(x, size, axis=1), size, axis=2)
    p = kernel.shape[0] // 2
    y = ops.pad(y, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")
    return keras.ops.convert_to_numpy(ops.conv(y, kernel, padding="valid") + bias)


@pytest.mark.parametrize(
    "shape",
    [
        (2, 2, 2, 3),
        (1, 1, 1, 2),
        (1, 1, 4, 3),
        (2, 3, 2, 4),
        (1, 5, 7, 3),
        (2, 6, 4, 5),
        (1, 9, 8, 2),
    ],
)
def test_upsample_conv_matches_repeat_reflect_conv_reference(shape):
    layer = UpsampleConv2D(6, kernel_size=3, size=2)
    layer.build(shape)
    x = _random(shape, seed=3)
    kernel = _random((3, 3, shape[-1], 6), seed=7)
    bias = _random((6,), seed=8)
    layer.set_weights([kernel, bias])
    got = keras.ops.convert_to_numpy(layer(x))
    expected = _reference_upsample_conv(x, kernel, bias, 2)
    assert got.shape == expected.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    keras_reference = _keras_reference_upsample_conv(x, kernel, bias, 2)
    np.testing.assert_allclose(got, keras_reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size, size", [(3, 3), (5, 2), (1, 2), (3, 1)])
def test_upsample_conv_other_kernels_and_factors_match_reference(kernel_size, size):
    shape = (2, 5, 4, 3)
    layer = UpsampleConv2D(4, kernel_size=kernel_size, size=size)
    layer.build(shape)
    x = _random(shape, seed=4)
    kernel = _random((kernel_size, kernel_size, 3, 4), seed=9)
    bias = _random((4,), seed=10)
    layer.set_weights([kernel, bias])
    got = keras.ops.convert_to_numpy(layer(x))
    expected = _reference_upsample_conv(x, kernel, bias, size)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graph tracing")
def test_upsample_conv_matches_reference_with_unknown_sizes_in_a_graph():
    import tensorflow as tf

    layer = UpsampleConv2D(5, kernel_size=3, size=2)
    layer.build((None, None, None, 3))
    kernel, bias = _random((3, 3, 3, 5), seed=11), _random((5,), seed=12)
    layer.set_weights([kernel, bias])
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    for shape in [(1, 2, 2, 3), (2, 7, 4, 3), (1, 6, 9, 3)]:
        x = _random(shape, seed=shape[1])
        expected = _reference_upsample_conv(x, kernel, bias, 2)
        np.testing.assert_allclose(fn(x).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kernel_size, strides, size",
    [
        (3, 1, (2, 2)),
        (3, 1, (2, 5)),
        (3, 2, (3, 2)),
        (5, 1, (3, 4)),
        (5, 2, (6, 7)),
        (9, 1, (5, 8)),
        (9, 1, (12, 9)),
    ],
)
def test_reflection_conv_matches_numpy_reference_for_all_paddings(kernel_size, strides, size):
    # Smallest sizes reflection allows (kernel_size // 2 + 1) included.
    layer = ReflectionConv2D(3, kernel_size, strides=strides)
    x = _random((2, *size, 2), seed=13)
    layer.build(x.shape)
    kernel, bias = _random((kernel_size, kernel_size, 2, 3), seed=14), _random((3,), seed=15)
    layer.set_weights([kernel, bias])
    got = keras.ops.convert_to_numpy(layer(x))
    expected = _reference_reflect_conv(x, kernel, bias, strides)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (4, 4, 4, 4), (2, 0, 0, 3), (0, 1, 2, 0)])
def test_reflect_pad_helper_equals_ops_pad(pads):
    from ml.layers import _edge_pad_1, _reflect_pad

    x = _random((2, 7, 6, 3), seed=16)
    top, bottom, left, right = pads
    expected = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(_reflect_pad(x, *pads)), expected)
    edge = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(_edge_pad_1(x)), edge)


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 8, 6, 4), (3, 1, 2, 2), (1, 16, 16, 5)])
@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (40.0, 0.5), (-3.0, 20.0)])
def test_instance_norm_matches_normalise_then_affine_reference(shape, mean, std):
    epsilon = 1e-5
    layer = InstanceNormalization(epsilon=epsilon)
    layer.build(shape)
    channels = shape[-1]
    scale = _random((channels,), seed=17, low=-2.0, high=2.0)
    offset = _random((channels,), seed=18, low=-1.0, high=1.0)
    layer.set_weights([scale, offset])
    x = (np.random.default_rng(19).normal(mean, std, shape)).astype("float32")
    got = keras.ops.convert_to_numpy(layer(x))
    expected = _reference_instance_norm(x, scale, offset, epsilon)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_instance_norm_of_a_flat_image_is_the_offset():
    layer = InstanceNormalization()
    layer.build((1, 5, 6, 2))
    layer.set_weights([np.array([3.0, -2.0], "float32"), np.array([0.5, 7.0], "float32")])
    # Zero variance: the normalised value is (x - mean) / sqrt(epsilon), so any
    # rounding of the mean is multiplied by ~300 * scale (on every backend).
    for value in (0.75, -2.5):
        x = np.full((1, 5, 6, 2), value, dtype="float32")
        y = keras.ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(y, np.broadcast_to([0.5, 7.0], y.shape), atol=1e-3)


def test_layers_match_references_under_mixed_float16():
    shape = (2, 6, 5, 4)
    x = _random(shape, seed=20)
    up = UpsampleConv2D(3, kernel_size=3, size=2, dtype="mixed_float16")
    up.build(shape)
    kernel, bias = _random((3, 3, 4, 3), seed=21), _random((3,), seed=22)
    up.set_weights([kernel, bias])
    y = up(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(y).astype("float32"),
        _reference_upsample_conv(x, kernel, bias, 2),
        rtol=2e-2,
        atol=2e-2,
    )

    norm = InstanceNormalization(dtype="mixed_float16")
    norm.build(shape)
    scale, offset = _random((4,), seed=23), _random((4,), seed=24)
    norm.set_weights([scale, offset])
    x = (np.random.default_rng(25).normal(30.0, 0.5, shape)).astype("float32")
    y = norm(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    expected = _reference_instance_norm(x.astype("float16").astype("float32"), scale, offset, 1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y).astype("float32"), expected, atol=5e-2)


def test_upsample_conv_kernel_gradient_matches_reference():
    # Training goes through the sub-pixel form too: its gradients must be the
    # reference ones, and dense (no IndexedSlices on TensorFlow).
    shape = (2, 5, 4, 3)
    x = _random(shape, seed=26)
    weights = _random((2, 10, 8, 4), seed=27)
    layer = UpsampleConv2D(4, kernel_size=3, size=2)
    layer.build(shape)
    layer.set_weights([_random((3, 3, 3, 4), seed=28), _random((4,), seed=29)])
    ops = keras.ops

    def reference(kernel, bias):
        y = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
        y = ops.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        return ops.sum((ops.conv(y, kernel, padding="valid") + bias) * weights)

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape(persistent=True) as tape:
            loss = ops.sum(layer(x) * weights)
            expected_loss = reference(layer.conv.kernel, layer.conv.bias)
        variables = [layer.conv.kernel.value, layer.conv.bias.value]
        grads = [g.numpy() for g in tape.gradient(loss, variables)]
        expected = [g.numpy() for g in tape.gradient(expected_loss, variables)]
    elif backend == "jax":
        import jax

        def loss_fn(values):
            y, _ = layer.stateless_call(values, [], x)
            return ops.sum(y * weights)

        values = [v.value for v in layer.trainable_variables]
        grads = [np.asarray(g) for g in jax.grad(loss_fn)(values)]
        expected = [np.asarray(g) for g in jax.grad(lambda v: reference(*v))(values)]
    else:
        pytest.skip(f"no gradient helper for {backend}")
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
