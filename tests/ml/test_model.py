"""Tests of ml.model.TransformNet."""

import keras
import numpy as np
import pytest

from ml.bank import one_hot
from ml.model import TransformNet


def _photo(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _styled(x):
    """Style weights for ``x``: slot 1 of a lone network (``num_styles=2``) for every image."""
    return np.repeat(one_hot([1], 2), len(x), axis=0)


def _paint(net, x, **kwargs):
    """``net`` on ``x`` in slot 1, as numpy."""
    return keras.ops.convert_to_numpy(net(x, _styled(x), **kwargs))


@pytest.fixture(scope="module")
def small_net():
    net = TransformNet(width=0.25, num_residual_blocks=2)
    x = _photo((1, 16, 16, 3))
    net(x, _styled(x))
    return net


@pytest.mark.parametrize("size", [(37, 53), (32, 32), (5, 6), (41, 30)])
def test_any_size_comes_back_same_size_in_range(small_net, size):
    y = _paint(small_net, _photo((2, *size, 3)))
    assert y.shape == (2, *size, 3)
    assert np.isfinite(y).all()
    assert y.min() >= 0.0 and y.max() <= 255.0
    assert y.std() > 0.1  # not a constant image


def test_constant_photo_gives_constant_output_no_border_artefact():
    # Reflection padding everywhere (and for the size padding to a multiple of
    # 4) keeps a flat photo flat right up to the edges, also at odd sizes. A flat
    # feature map has no variance, so with a small epsilon each instance norm
    # multiplies the convolutions' rounding noise (which differs between CPUs'
    # kernels) a hundredfold: a large epsilon keeps this about the padding alone.
    net = TransformNet(width=0.25, num_residual_blocks=2, epsilon=1.0)
    y = _paint(net, np.full((1, 37, 53, 3), 120.0, "float32"))
    np.testing.assert_allclose(y, np.broadcast_to(y[:, :1, :1, :], y.shape), atol=1e-3)


def test_odd_size_output_matches_the_top_left_of_a_padded_run(small_net):
    # Images are handled per pixel position: the crop is of the right region.
    x = _photo((1, 37, 53, 3), seed=3)
    y = _paint(small_net, x)
    x_big = np.pad(x, [(0, 0), (0, 3), (0, 3), (0, 0)], mode="reflect")
    y_big = _paint(small_net, x_big)
    np.testing.assert_allclose(y, y_big[:, :37, :53], atol=1e-3)


def test_width_scales_every_filter_count():
    full = TransformNet()
    half = TransformNet(width=0.5, num_residual_blocks=3)
    for net in (full, half):
        net.build((None, None, None, 3))
    assert full.filters == (32, 64, 128) and half.filters == (16, 32, 64)
    assert tuple(half.conv_in.kernel.shape) == (9, 9, 3, 16)
    assert tuple(half.down2.kernel.shape) == (3, 3, 32, 64)
    assert tuple(half.conv_out.kernel.shape) == (9, 9, 16, 3)
    assert len(half.residual_blocks) == 3 and len(full.residual_blocks) == 5
    assert half.count_params() < full.count_params() / 3


def test_instance_norm_after_every_conv_but_the_last():
    net = TransformNet(width=0.25, num_residual_blocks=1)
    net.build((None, None, None, 3))
    names = [w.path for w in net.weights]
    kernels = sum(n.endswith("kernel") for n in names)
    scales = sum(n.endswith("scale") for n in names)
    assert kernels == 6 + 2 * 1  # 6 outer convs + 2 per residual block
    assert scales == kernels - 1
    assert not any(n.startswith("conv_out") and n.endswith("scale") for n in names)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        TransformNet(width=0)
    with pytest.raises(ValueError, match="num_residual_blocks"):
        TransformNet(num_residual_blocks=-1)


@pytest.mark.parametrize("num_styles", [1, 0, -2, True, 2.0, "2", None])
def test_rejects_fewer_than_two_slots(num_styles):
    # Slot 0 is the identity: a network has it and at least one style.
    with pytest.raises(ValueError, match="identity slot and at least one style"):
        TransformNet(num_styles=num_styles)


def test_every_network_is_a_lone_bank_by_default_and_needs_weights_or_params(small_net):
    from ml.layers import ConditionalInstanceNormalization, InstanceNormalization

    assert small_net.num_styles == 2 and small_net.get_config()["num_styles"] == 2
    layers = list(small_net._flatten_layers(include_self=False))
    norms = [layer for layer in layers if isinstance(layer, ConditionalInstanceNormalization)]
    assert len(norms) == 5 + 2 * 2 and {norm.num_styles for norm in norms} == {2}
    assert not any(isinstance(layer, InstanceNormalization) for layer in layers)
    assert small_net.style_params_size > 0
    with pytest.raises(ValueError, match="bank of 2 slots: call it with images and style_weights"):
        small_net(_photo((1, 16, 16, 3)))


def test_get_config_and_from_config_round_trip(small_net):
    config = small_net.get_config()
    assert config["width"] == 0.25 and config["num_residual_blocks"] == 2
    clone = TransformNet.from_config(config)
    assert clone.get_config() == config
    clone.build((None, None, None, 3))
    clone.set_weights(small_net.get_weights())
    x = _photo((1, 21, 19, 3), seed=1)
    np.testing.assert_allclose(_paint(clone, x), _paint(small_net, x), atol=1e-4)


def test_keras_file_round_trip_gives_identical_outputs(small_net, tmp_path):
    path = tmp_path / "net.keras"
    small_net.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, TransformNet)
    assert loaded.get_config() == small_net.get_config()
    x = _photo((2, 37, 53, 3), seed=2)
    np.testing.assert_array_equal(_paint(loaded, x), _paint(small_net, x))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graph tracing")
def test_traces_with_unknown_height_and_width(small_net):
    import tensorflow as tf

    fn = tf.function(small_net, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                                 tf.TensorSpec([None, 2], tf.float32)])
    for size in [(37, 53), (24, 20)]:
        x = _photo((1, *size, 3))
        assert tuple(fn(x, _styled(x)).shape) == (1, *size, 3)


def test_gradients_reach_every_weight():
    net = TransformNet(width=0.125, num_residual_blocks=1)
    x = _photo((1, 12, 12, 3))
    weights = _styled(x)
    net(x, weights)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(net(x, weights) - 100.0))
        grads = [g.numpy() for g in tape.gradient(loss, net.trainable_variables)]
    elif backend == "jax":
        import jax

        def loss_fn(values):
            y, _ = net.stateless_call(values, [], x, weights)
            return jax.numpy.mean((y - 100.0) ** 2)

        trainable = [v.value for v in net.trainable_variables]
        grads = [np.asarray(g) for g in jax.grad(loss_fn)(trainable)]
    else:
        pytest.skip(f"no gradient helper for {backend}")
    assert len(grads) == len(net.trainable_variables)
    assert all(np.isfinite(g).all() for g in grads)
    # Every kernel gets a signal (biases right before instance norm do not).
    kernels = [g for g, v in zip(grads, net.trainable_variables) if "kernel" in v.path]
    assert all(np.abs(g).max() > 0 for g in kernels)


def test_output_kernel_size_defaults_to_9_and_sets_the_last_conv():
    default = TransformNet(width=0.125, num_residual_blocks=0)
    small = TransformNet(width=0.125, num_residual_blocks=0, output_kernel_size=3)
    for net in (default, small):
        net.build((None, None, None, 3))
    assert default.output_kernel_size == 9 and default.get_config()["output_kernel_size"] == 9
    assert tuple(default.conv_out.kernel.shape) == (9, 9, 4, 3)
    assert tuple(small.conv_out.kernel.shape) == (3, 3, 4, 3)
    assert tuple(small.conv_in.kernel.shape) == (9, 9, 3, 4)  # only the last conv changes
    assert default.count_params() - small.count_params() == (81 - 9) * 4 * 3
    y = _paint(small, _photo((1, 13, 11, 3)))
    assert y.shape == (1, 13, 11, 3) and np.isfinite(y).all()


def test_output_kernel_size_survives_from_config_and_a_keras_file(tmp_path):
    net = TransformNet(width=0.125, num_residual_blocks=1, output_kernel_size=5)
    x = _photo((1, 17, 19, 3), seed=4)
    expected = _paint(net, x)
    config = net.get_config()
    assert config["output_kernel_size"] == 5

    clone = TransformNet.from_config(config)
    clone.build((None, None, None, 3))
    assert clone.output_kernel_size == 5
    assert tuple(clone.conv_out.kernel.shape) == (5, 5, 4, 3)

    path = tmp_path / "net.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.output_kernel_size == 5
    assert tuple(loaded.conv_out.kernel.shape) == (5, 5, 4, 3)
    np.testing.assert_array_equal(_paint(loaded, x), expected)


@pytest.mark.parametrize("kernel", [0, -3, 2, 4, True, 3.0, "3", None])
def test_rejects_an_output_kernel_that_is_not_a_positive_odd_int(kernel):
    with pytest.raises(ValueError, match="output_kernel_size"):
        TransformNet(output_kernel_size=kernel)


def test_robust_norms_reach_every_norm_and_survive_a_keras_file(tmp_path):
    from ml.layers import ConditionalInstanceNormalization

    net = TransformNet(width=0.25, num_residual_blocks=2, num_styles=3, norm_clip_z=6.0)
    weights = np.eye(3, dtype="float32")[[1]]
    net(_photo((1, 16, 16, 3)), weights)
    norms = [layer for layer in net._flatten_layers()
             if isinstance(layer, ConditionalInstanceNormalization)]
    assert len(norms) == 5 + 2 * 2 and {norm.clip_z for norm in norms} == {6.0}
    path = tmp_path / "robust.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.norm_clip_z == 6.0 and loaded.get_config() == net.get_config()
    x = _photo((1, 24, 20, 3), seed=5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, weights)),
                               keras.ops.convert_to_numpy(net(x, weights)), atol=1e-4)
    plain = TransformNet(width=0.25, num_residual_blocks=2, num_styles=3)
    plain(_photo((1, 16, 16, 3)), weights)
    assert "norm_clip_z" not in plain.get_config()


def _margin_twin(net, margin):
    """A net with ``net``'s weights and ``edge_margin=margin``."""
    twin = TransformNet.from_config({**net.get_config(), "edge_margin": margin})
    twin.build((None, None, None, 3))
    twin.set_weights(net.get_weights())
    return twin


def test_the_edge_margin_paints_the_reflected_picture_and_crops_the_edge_off(small_net):
    # What the net paints at its edges falls in the margin: the result is the
    # margin-less net's painting of the picture extended by reflection, cropped.
    net = _margin_twin(small_net, 8)
    x = _photo((1, 37, 53, 3), seed=7)
    extended = np.pad(x, [(0, 0), (8, 8), (8, 8), (0, 0)], mode="reflect")
    np.testing.assert_allclose(_paint(net, x), _paint(small_net, extended)[:, 8:-8, 8:-8],
                               atol=1e-3)
    assert not np.allclose(_paint(net, x)[:, 0], _paint(small_net, x)[:, 0], atol=1.0)


def test_training_runs_without_the_edge_margin(small_net):
    net = _margin_twin(small_net, 8)
    x = _photo((1, 24, 20, 3), seed=8)
    np.testing.assert_allclose(_paint(net, x, training=True), _paint(small_net, x), atol=1e-4)
    logits, inner = net.trace(x, _styled(x), training=True)
    assert [tuple(m.shape)[1:3] for m in inner] == [
        tuple(m.shape)[1:3] for m in small_net.trace(x, _styled(x))[1]]


def test_the_edge_margin_crops_every_inner_map_to_the_picture(small_net):
    # The droplet measure reads the inner maps: they cover the picture, not the margin.
    net = _margin_twin(small_net, 8)
    x = _photo((1, 36, 52, 3), seed=9)
    _, inner = net.trace(x, _styled(x))
    _, extended = small_net.trace(np.pad(x, [(0, 0), (8, 8), (8, 8), (0, 0)], mode="reflect"),
                                  _styled(x))
    for mine, whole in zip(inner, extended):
        scale = 52 // tuple(mine.shape)[2]
        edge = 8 // scale
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine),
                                   keras.ops.convert_to_numpy(whole)[:, edge:-edge, edge:-edge],
                                   atol=1e-3)


@pytest.mark.parametrize("size", [(5, 5), (6, 9), (17, 30)])
def test_the_edge_margin_shrinks_for_small_pictures(small_net, size):
    # Reflection needs a margin under the picture's side: a 5 px picture still paints.
    y = _paint(_margin_twin(small_net, 16), _photo((1, *size, 3)))
    assert y.shape == (1, *size, 3) and np.isfinite(y).all()


def test_the_edge_margin_survives_a_keras_file_and_is_checked(small_net, tmp_path):
    net = _margin_twin(small_net, 12)
    path = tmp_path / "margin.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.edge_margin == 12 and loaded.get_config() == net.get_config()
    assert "edge_margin" not in small_net.get_config()
    with pytest.raises(ValueError, match="edge_margin"):
        TransformNet(edge_margin=-1)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graph tracing")
def test_the_edge_margin_traces_with_unknown_height_and_width(small_net):
    import tensorflow as tf

    net = _margin_twin(small_net, 16)
    fn = tf.function(net, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                           tf.TensorSpec([None, 2], tf.float32)])
    for size in [(37, 53), (9, 300)]:
        x = _photo((1, *size, 3))
        np.testing.assert_allclose(fn(x, _styled(x)).numpy(), _paint(net, x), atol=1e-3)
