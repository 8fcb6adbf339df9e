"""Tests of ml.losses: loss network, Gram matrix, TV and PerceptualLoss."""

import keras
import keras.src.utils.file_utils as keras_file_utils
import numpy as np
import pytest

from ml.losses import (
    DEFAULT_CONTENT_LAYER,
    DEFAULT_LOSS_WEIGHTS,
    DEFAULT_STYLE_LAYER_WEIGHTS,
    DEFAULT_STYLE_LAYERS,
    LossWeightsUnavailable,
    PerceptualLoss,
    VGGPreprocess,
    build_loss_network,
    gram_matrix,
    total_variation,
)

VGG16_LAYERS = list(DEFAULT_STYLE_LAYERS["vgg16"]) + [DEFAULT_CONTENT_LAYER["vgg16"]]


def _image(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def vgg16_random():
    keras.utils.set_random_seed(1)
    return build_loss_network("vgg16", weights=None)


def test_gram_matrix_hand_computed():
    # One image, 2x2 positions, 2 channels: F = [[1, 2], [3, 4], [5, 6], [7, 8]] (HW x C)
    features = np.array([[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]], dtype="float32")
    # F^T F = [[1+9+25+49, 2+12+30+56], [.., 4+16+36+64]] = [[84, 100], [100, 120]], / (H*W*C = 8)
    expected = np.array([[[84, 100], [100, 120]]], dtype="float32") / 8
    np.testing.assert_allclose(_np(gram_matrix(features)), expected, rtol=1e-6)


def test_gram_matrix_is_per_image_and_size_independent():
    rng = np.random.default_rng(0)
    tile = rng.normal(size=(1, 3, 4, 5)).astype("float32")
    big = np.tile(tile, (1, 2, 3, 1))  # same statistics, 6x larger
    batch = np.concatenate([tile, 2 * tile])
    np.testing.assert_allclose(_np(gram_matrix(big)), _np(gram_matrix(tile)), rtol=1e-5)
    grams = _np(gram_matrix(batch))
    assert grams.shape == (2, 5, 5)
    np.testing.assert_allclose(grams[1], 4 * grams[0], rtol=1e-5)


def test_total_variation_hand_computed():
    image = np.zeros((1, 2, 3, 1), dtype="float32")
    image[0, :, :, 0] = [[0, 1, 3], [2, 2, 2]]
    # vertical diffs: 2, 1, -1 -> mean of squares 6/3 = 2
    # horizontal diffs: 1, 2, 0, 0 -> mean of squares 5/4 = 1.25
    assert float(_np(total_variation(image))) == pytest.approx(3.25)
    assert float(_np(total_variation(np.full((2, 5, 4, 3), 7.0, "float32")))) == 0.0


def test_preprocess_is_caffe_bgr_minus_mean():
    x = np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")
    y = _np(VGGPreprocess()(x))
    np.testing.assert_allclose(y[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_loss_network_outputs_named_features_of_preprocessed_images(vgg16_random):
    x = _image((2, 32, 48, 3))
    features = vgg16_random(x)
    assert sorted(features) == sorted(set(VGG16_LAYERS))  # block2_conv2 is in both lists
    assert tuple(features["block1_conv2"].shape) == (2, 32, 48, 64)
    assert tuple(features["block4_conv3"].shape) == (2, 4, 6, 512)
    assert not vgg16_random.trainable and not vgg16_random.trainable_weights
    # Same as keras.applications' own Caffe preprocessing + the bare VGG.
    vgg = vgg16_random.get_layer("vgg16_features")
    reference = vgg(keras.applications.vgg16.preprocess_input(x.copy()))
    for name in set(VGG16_LAYERS):
        np.testing.assert_allclose(_np(features[name]), _np(reference[name]), rtol=1e-4, atol=1e-3)


def test_loss_network_default_layers_vgg19():
    net = build_loss_network("vgg19", weights=None)
    assert sorted(net.output) == sorted(
        [
            "block1_conv1", "block2_conv1", "block3_conv1",
            "block4_conv1", "block5_conv1", "block4_conv2",
        ]
    )


def test_loss_network_rejects_unknown_layers_and_networks():
    with pytest.raises(ValueError, match="block9_conv9"):
        build_loss_network("vgg16", weights=None, layers=["block9_conv9"])
    with pytest.raises(ValueError, match="network"):
        build_loss_network("resnet50", weights=None)


@pytest.mark.parametrize("network", ["vgg16", "vgg19"])
def test_failed_imagenet_download_names_the_local_file_option(monkeypatch, network):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- offline")

    # keras.applications.vgg16/vgg19 download through file_utils.get_file.
    monkeypatch.setattr(keras_file_utils, "get_file", no_network)
    with pytest.raises(LossWeightsUnavailable) as info:
        build_loss_network(network, weights="imagenet")
    message = str(info.value)
    assert "Downloading" in message and "failed" in message
    assert "--loss-weights FILE" in message and "weights=" in message
    assert "offline" in message  # the cause is kept


def test_loss_network_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(7)
    vgg = keras.applications.VGG16(include_top=False, weights=None)
    path = tmp_path / "vgg16.weights.h5"
    vgg.save_weights(path)
    net = build_loss_network("vgg16", weights=str(path), layers=["block3_conv3"])
    loaded = net.get_layer("vgg16_features").get_layer("block3_conv3")
    np.testing.assert_array_equal(_np(loaded.kernel), _np(vgg.get_layer("block3_conv3").kernel))
    with pytest.raises(LossWeightsUnavailable, match="not found"):
        build_loss_network("vgg16", weights=str(tmp_path / "missing.weights.h5"))


@pytest.fixture(scope="module")
def painting():
    """The painting's pixels (in place of tests/ml/conftest.py's painting file)."""
    y, x = np.mgrid[0:48, 0:40]
    image = np.stack([(x * 6) % 255, (y * 5) % 255, ((x + y) * 9) % 255], axis=-1)
    return image.astype("float32")


def test_perceptual_loss_returns_weighted_finite_scalars(vgg16_random, painting):
    loss = PerceptualLoss(painting, network="vgg16", loss_network=vgg16_random)
    assert loss.content_weight == DEFAULT_LOSS_WEIGHTS["vgg16"]["content_weight"]
    assert set(loss.style_grams) == set(DEFAULT_STYLE_LAYERS["vgg16"])
    content, stylized = _image((2, 32, 32, 3), 1), _image((2, 32, 32, 3), 2)
    terms = {k: float(_np(v)) for k, v in loss(content, stylized).items()}
    per_layer = {f"style_{name}" for name in DEFAULT_STYLE_LAYERS["vgg16"]}
    assert set(terms) == {"total", "content", "style", "tv", *per_layer} == set(loss.term_names)
    assert all(np.isfinite(v) and v > 0 for v in terms.values())
    summed = terms["content"] + terms["style"] + terms["tv"]
    assert terms["total"] == pytest.approx(summed, rel=1e-5)
    assert terms["style"] == pytest.approx(sum(terms[name] for name in per_layer), rel=1e-5)

    defaults = DEFAULT_LOSS_WEIGHTS["vgg16"]
    doubled = PerceptualLoss(
        painting, network="vgg16", loss_network=vgg16_random,
        content_weight=2 * defaults["content_weight"], style_weight=2 * defaults["style_weight"],
        tv_weight=1.0,
    )
    terms2 = {k: float(_np(v)) for k, v in doubled(content, stylized).items()}
    assert terms2["content"] == pytest.approx(2 * terms["content"], rel=1e-4)
    assert terms2["style"] == pytest.approx(2 * terms["style"], rel=1e-4)
    assert terms2["tv"] == pytest.approx(terms["tv"] / defaults["tv_weight"], rel=1e-4)


def test_content_is_on_relu3_3_for_vgg16_and_conv4_2_for_vgg19():
    assert DEFAULT_CONTENT_LAYER == {"vgg16": "block3_conv3", "vgg19": "block4_conv2"}


def test_style_layer_weights_scale_each_layer(vgg16_random, painting):
    content, stylized = _image((2, 32, 32, 3), 1), _image((2, 32, 32, 3), 2)
    layers = DEFAULT_STYLE_LAYERS["vgg16"]
    equal = PerceptualLoss(painting, network="vgg16", loss_network=vgg16_random,
                           style_layer_weights=(1, 1, 1, 1))
    weighted = PerceptualLoss(painting, network="vgg16", loss_network=vgg16_random,
                              style_layer_weights=(0, 1, 2, 10))
    default = PerceptualLoss(painting, network="vgg16", loss_network=vgg16_random)
    assert tuple(default.style_layer_weights.values()) == DEFAULT_STYLE_LAYER_WEIGHTS["vgg16"]
    # The deep layers weigh most by default.
    assert DEFAULT_STYLE_LAYER_WEIGHTS["vgg16"] == (1.0, 2.0, 4.0, 8.0)
    one = {k: float(_np(v)) for k, v in equal(content, stylized).items()}
    other = {k: float(_np(v)) for k, v in weighted(content, stylized).items()}
    for name, factor in zip(layers, (0, 1, 2, 10)):
        assert other[f"style_{name}"] == pytest.approx(factor * one[f"style_{name}"], rel=1e-4)
    with pytest.raises(ValueError, match="one weight >= 0 per style layer"):
        PerceptualLoss(painting, network="vgg16", loss_network=vgg16_random,
                       style_layer_weights=(1, 2))


def test_a_bfloat16_loss_network_gives_float32_terms_close_to_float32(painting):
    content, stylized = _image((2, 32, 32, 3), 1), _image((2, 32, 32, 3), 2)
    keras.utils.set_random_seed(3)
    full = build_loss_network("vgg16", None, VGG16_LAYERS)
    half = build_loss_network("vgg16", None, VGG16_LAYERS, dtype="mixed_bfloat16")
    half.set_weights(full.get_weights())
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    terms = PerceptualLoss(painting, network="vgg16", loss_network=full)(content, stylized)
    half_terms = PerceptualLoss(painting, network="vgg16", loss_network=half)(content, stylized)
    for name, value in half_terms.items():
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert float(_np(value)) == pytest.approx(float(_np(terms[name])), rel=0.1)


def test_style_term_vanishes_for_the_painting_itself(vgg16_random, painting):
    loss = PerceptualLoss(painting, network="vgg16", loss_network=vgg16_random)
    photos = _image((2, 48, 40, 3), 3)
    as_painting = np.stack([painting, painting])
    at_painting = float(_np(loss(photos, as_painting)["style"]))
    elsewhere = float(_np(loss(photos, photos[::-1])["style"]))
    assert elsewhere > 0
    assert at_painting < 1e-6 * elsewhere
    # ... and the content term vanishes when the output is the photo.
    assert float(_np(loss(photos, photos)["content"])) == 0.0


def test_style_size_resizes_the_painting_before_its_grams(vgg16_random, painting):
    big = np.repeat(np.repeat(painting, 2, axis=0), 2, axis=1)  # 96 x 80
    loss = PerceptualLoss(big, network="vgg16", loss_network=vgg16_random, style_size=48)
    reference = PerceptualLoss(
        _np(keras.ops.image.resize(big, (48, 40), antialias=True)),
        network="vgg16", loss_network=vgg16_random,
    )
    full = PerceptualLoss(big, network="vgg16", loss_network=vgg16_random)
    for name in loss.style_grams:
        np.testing.assert_allclose(
            _np(loss.style_grams[name]), _np(reference.style_grams[name]), rtol=1e-3, atol=1e-3
        )
    assert not np.allclose(
        _np(loss.style_grams["block1_conv2"]), _np(full.style_grams["block1_conv2"]), rtol=1e-3
    )


def test_perceptual_loss_gradient_is_finite(vgg16_random, painting):
    loss = PerceptualLoss(painting, network="vgg16", loss_network=vgg16_random)
    content, stylized = _image((1, 32, 32, 3), 5), _image((1, 32, 32, 3), 4)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(stylized)
        with tf.GradientTape() as tape:
            total = loss(content, variable)["total"]
        grad = tape.gradient(total, variable).numpy()
    elif backend == "jax":
        import jax

        grad = np.asarray(jax.grad(lambda s: loss(content, s)["total"])(stylized))
    else:
        pytest.skip(f"no gradient helper for {backend}")
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_default_weights_exist_for_both_networks():
    for network in ("vgg16", "vgg19"):
        weights = DEFAULT_LOSS_WEIGHTS[network]
        assert set(weights) == {"content_weight", "style_weight", "tv_weight"}
        assert all(v > 0 for v in weights.values())
        assert 0.1 <= weights["style_weight"] / weights["content_weight"] <= 100


# --------------------------------------------------------------------------- light term


def _gradient_photo(seed=0, size=64):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 230, size, dtype=np.float32)
    base = ramp[None, :, None] * np.ones((size, size, 3), np.float32)
    return np.clip(base + rng.normal(0, 5, (size, size, 3)), 0, 255).astype(np.float32)[None]


def test_the_light_term_ignores_palette_and_contrast_but_not_an_inverted_layout():
    from ml.losses import light_layout_loss

    photo = _gradient_photo()
    # Another palette and contrast with the same light and dark: nearly free.
    recoloured = np.clip(photo * np.array([0.4, 0.7, 1.0], np.float32) * 0.5 + 60, 0, 255)
    inverted = 255.0 - photo
    flat = np.full_like(photo, 128.0)
    same = float(light_layout_loss(photo, photo)[0])
    assert same == pytest.approx(0.0, abs=1e-6)
    assert float(light_layout_loss(photo, recoloured)[0]) < 0.02
    assert float(light_layout_loss(photo, inverted)[0]) > 3.5  # 2 (1 - r), r near -1
    assert 0.8 < float(light_layout_loss(photo, flat)[0]) < 1.0  # no layout at all


def _weighted_term(painting, photo, painted, name, **weight):
    """The ``name`` term of a PerceptualLoss given its ``weight`` setting, once checked
    that the loss without the setting has no such term and that the term adds to the
    total."""
    from ml.losses import PerceptualLoss

    plain = PerceptualLoss(painting, network="vgg16", weights=None)
    weighted = PerceptualLoss(painting, network="vgg16", weights=None,
                              loss_network=plain.loss_network, **weight)
    assert name not in plain.term_names and name in weighted.term_names
    terms_plain, terms_weighted = plain(photo, painted), weighted(photo, painted)
    assert name not in terms_plain
    assert float(terms_weighted["total"]) == pytest.approx(
        float(terms_plain["total"]) + float(terms_weighted[name]), rel=1e-5)
    return float(terms_weighted[name])


def test_the_light_term_is_a_weighted_part_of_the_total_only_when_asked_for(painting):
    photo = _gradient_photo(size=32)
    inverted = 255.0 - photo
    assert _weighted_term(painting, photo, inverted, "light", light_weight=100.0) > 300.0


def test_a_larger_light_size_sees_a_small_dark_spot_the_broad_layout_misses():
    from ml.losses import light_layout_loss

    photo = np.full((1, 128, 128, 3), 150.0, np.float32)
    photo[:, :, :64] = 90.0  # two broad halves
    spotted = photo.copy()
    spotted[:, 60:68, 90:98] = 0.0  # an 8 px black blob in the bright half
    broad = float(light_layout_loss(photo, spotted, size=16)[0])
    fine = float(light_layout_loss(photo, spotted, size=64)[0])
    assert fine > 1.5 * broad


# --------------------------------------------------------------------------- edge term


def _bars_photo(size=128, period=32):
    """Broad vertical bars, light and dark: strong edges every ``period / 2`` px."""
    columns = (np.arange(size) // (period // 2)) % 2
    photo = np.where(columns[None, :, None], 200.0, 60.0) * np.ones((size, size, 3))
    return photo.astype(np.float32)[None]


def test_the_edge_term_leaves_fine_texture_free_but_not_lost_or_moved_edges():
    from ml.losses import edge_layout_loss

    photo = _bars_photo()
    rng = np.random.default_rng(0)
    # The same bars with brush texture 1-2 px across over them and another palette.
    textured = np.clip(photo * np.array([0.5, 0.8, 1.1], np.float32)
                       + rng.normal(0, 25, photo.shape), 0, 255).astype(np.float32)
    flat = np.full_like(photo, float(photo.mean()))  # the edges gone
    moved = np.roll(photo, 8, axis=2)  # every edge half a bar away
    assert float(edge_layout_loss(photo, photo, size=32)[0]) == pytest.approx(0.0, abs=1e-5)
    free = float(edge_layout_loss(photo, textured, size=32)[0])
    assert free < 0.15
    assert float(edge_layout_loss(photo, flat, size=32)[0]) > 0.8
    assert float(edge_layout_loss(photo, moved, size=32)[0]) > 5 * free
    # At full size the same texture costs much more: the shrinking is what frees it.
    assert float(edge_layout_loss(photo, textured, size=128)[0]) > 3 * free


def test_the_edge_term_pulls_a_result_towards_the_photos_edges():
    """Its gradient, followed, brings back the edges of a flattened photo."""
    import tensorflow as tf

    from ml.losses import edge_layout_loss

    photo = _bars_photo(size=64)
    result = keras.Variable(np.clip(0.2 * photo + 100.0 + np.random.default_rng(1).normal(
        0, 3, photo.shape), 0, 255).astype(np.float32))
    optimizer = keras.optimizers.Adam(learning_rate=2.0)
    first = float(edge_layout_loss(photo, result, size=32)[0])
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(edge_layout_loss(photo, result, size=32))
        optimizer.apply_gradients([(tape.gradient(loss, result), result)])
    assert float(edge_layout_loss(photo, result, size=32)[0]) < 0.5 * first


def test_the_edge_term_is_a_weighted_part_of_the_total_only_when_asked_for(painting):
    photo = _bars_photo(size=32, period=8)
    flat = np.full_like(photo, 128.0)
    assert _weighted_term(painting, photo, flat, "edges", edge_weight=100.0,
                          edge_size=16) > 50.0


def test_the_training_configs_edge_settings_reach_its_loss_and_a_new_slot(painting, tmp_path):
    from PIL import Image

    from ml.bank import SLOT_LOSS_SETTINGS
    from ml.config import TrainConfig
    from ml.trainer import build_perceptual_loss

    Image.fromarray(np.asarray(painting, np.uint8)).save(tmp_path / "painting.png")
    config = TrainConfig(painting=str(tmp_path / "painting.png"), loss_network="vgg16",
                         loss_weights=None, edge_weight=2e5, edge_size=32)
    loss = build_perceptual_loss(config)
    assert (loss.edge_weight, loss.edge_size) == (2e5, 32) and "edges" in loss.term_names
    assert "edges" not in build_perceptual_loss(
        TrainConfig(painting=str(tmp_path / "painting.png"), loss_network="vgg16",
                    loss_weights=None)).term_names  # off by default
    assert {"edge_weight", "edge_size"} <= set(SLOT_LOSS_SETTINGS)  # an own style's too
    with pytest.raises(ValueError):
        TrainConfig(edge_weight=-1.0)


# --------------------------------------------------------------------------- spot term


def test_the_spot_term_counts_black_only_where_the_photo_is_light():
    from ml.losses import dark_spot_loss

    photo = np.full((1, 64, 64, 3), 160.0, np.float32)
    photo[:, :, :32] = 30.0  # a dark left half
    painted = np.clip(photo * 0.8 + 20.0, 0, 255)  # darker, nowhere near black
    assert float(dark_spot_loss(photo, painted)[0]) == 0.0
    spotted = painted.copy()
    spotted[:, 28:36, 44:52] = 0.0  # an 8 px black blob in the light half
    in_the_dark = painted.copy()
    in_the_dark[:, 28:36, 8:16] = 0.0  # the same blob where the photo is dark
    blob = float(dark_spot_loss(photo, spotted)[0])
    assert blob == pytest.approx(64 / 64**2, rel=0.05)  # its share of the pixels
    assert float(dark_spot_loss(photo, in_the_dark)[0]) == 0.0
    # Lightening the blob lowers the term: its gradient points that way.
    import tensorflow as tf

    result = tf.Variable(spotted)
    with tf.GradientTape() as tape:
        value = dark_spot_loss(photo, result)[0]
    gradient = tape.gradient(value, result).numpy()
    assert (gradient[:, 28:36, 44:52] < 0).all() and (gradient[:, :, :32] == 0).all()


def test_the_spike_term_counts_a_droplet_and_not_a_busy_map():
    """A map of strong but spread-out detail has no value 6 standard deviations out;
    one spot far stronger than the rest of its map (a droplet) has, and the term's
    gradient lowers that spot."""
    from ml.losses import SPIKE_LIMIT, spike_loss

    rng = np.random.default_rng(0)
    busy = rng.normal(0.0, 5.0, (2, 32, 32, 8)).astype(np.float32)
    busy[:, ::4] += 20.0  # stripes: strong, and a quarter of the map
    assert np.all(np.asarray(spike_loss([busy])) == 0.0)
    droplet = busy.copy()
    droplet[1, 16:18, 16:18, 3] += 500.0
    values = np.asarray(spike_loss([busy, droplet]))
    assert values[0] == 0.0 and values[1] > 0.0  # per image, the mean over the maps
    assert float(spike_loss([droplet])[1]) == pytest.approx(2 * values[1])
    assert SPIKE_LIMIT == 6.0
    import tensorflow as tf

    maps = tf.Variable(droplet)
    with tf.GradientTape() as tape:
        value = spike_loss([maps])[1]
    gradient = tape.gradient(value, maps).numpy()
    assert (gradient[1, 16:18, 16:18, 3] > 0).all()  # descending lowers the spot
    assert (gradient[0] == 0).all()


def test_the_spot_term_is_a_weighted_part_of_the_total_only_when_asked_for(painting):
    from ml.config import TrainConfig

    photo = np.full((1, 32, 32, 3), 180.0, np.float32)
    spotted = photo.copy()
    spotted[:, 8:16, 8:16] = 0.0
    assert _weighted_term(painting, photo, spotted, "spot", spot_weight=1000.0) == pytest.approx(
        1000.0 * 64 / 32**2, rel=0.05)
    with pytest.raises(ValueError, match="spot_weight"):
        TrainConfig(spot_weight=-1.0)


def test_the_training_configs_light_and_spot_settings_reach_its_loss(painting, tmp_path):
    from PIL import Image

    from ml.config import TrainConfig
    from ml.trainer import build_perceptual_loss

    Image.fromarray(np.asarray(painting, np.uint8)).save(tmp_path / "painting.png")
    config = TrainConfig(painting=str(tmp_path / "painting.png"), loss_network="vgg16",
                         loss_weights=None, spot_weight=5e7, light_size=32,
                         shadow_weight=3e5)
    loss = build_perceptual_loss(config)
    assert (loss.spot_weight, loss.light_size, loss.light_weight) == (5e7, 32, 1e6)
    assert loss.shadow_weight == 3e5 and loss.shadow_palettes.shape == (1, 4, 3)
    assert TrainConfig().light_weight == 1e6  # the recipe's default (the 200-step check)


# --------------------------------------------------------------------------- shadow term


def _night_painting():
    """A painting whose shadows are dark blue and dark green, its lights yellow."""
    painting = np.full((64, 64, 3), (230.0, 200.0, 60.0), np.float32)  # yellow
    painting[:16, :32] = (20.0, 30.0, 90.0)  # dark blue
    painting[:16, 32:] = (20.0, 60.0, 30.0)  # dark green
    return painting


def test_the_shadow_palette_is_the_paintings_darkest_colours():
    from ml.losses import shadow_palette

    palette = shadow_palette(_night_painting(), colours=2, share=0.25)
    assert palette.shape == (2, 3) and palette.dtype == np.float32
    found = sorted(map(tuple, np.round(palette).astype(int)))
    assert found == [(20, 30, 90), (20, 60, 30)]  # no yellow: it is not a shadow colour
    again = shadow_palette(_night_painting(), colours=2, share=0.25)
    np.testing.assert_array_equal(palette, again)  # deterministic


def test_the_shadow_term_asks_for_the_paintings_shadow_colours_where_the_photo_is_dark():
    """A flat black part of a photo painted olive costs; painted in either of the
    painting's shadow colours it costs nothing; the light part of the photo is free."""
    from ml.losses import shadow_colour_loss, shadow_palette

    palette = shadow_palette(_night_painting(), colours=2, share=0.25)[None]
    photo = np.full((1, 64, 64, 3), 170.0, np.float32)
    photo[:, 16:48, 8:40] = 0.0  # a flat black square
    painted = np.full_like(photo, 220.0)  # anything in the light: free
    painted[:, 16:48, 8:24] = (20.0, 30.0, 90.0)
    painted[:, 16:48, 24:40] = (20.0, 60.0, 30.0)
    olive = painted.copy()
    olive[:, 20:44, 12:36] = (70.0, 80.0, 20.0)
    assert float(shadow_colour_loss(photo, painted, palette)[0]) < 1e-3
    assert float(shadow_colour_loss(photo, olive, palette)[0]) > 5 * float(
        shadow_colour_loss(photo, painted, palette)[0])
    in_the_light = painted.copy()
    in_the_light[:, 4:12, 48:60] = (70.0, 80.0, 20.0)  # olive where the photo is light
    assert float(shadow_colour_loss(photo, in_the_light, palette)[0]) == pytest.approx(
        float(shadow_colour_loss(photo, painted, palette)[0]), abs=1e-7)
    import tensorflow as tf

    result = tf.Variable(olive)
    with tf.GradientTape() as tape:
        value = shadow_colour_loss(photo, result, palette)[0]
    gradient = tape.gradient(value, result).numpy()[0, 32, 24]
    # Descending moves the olive towards the nearer shadow colour, dark green.
    assert gradient[0] > 0 and gradient[1] > 0 and gradient[2] < 0


def test_the_shadow_term_weighs_only_painted_examples_and_joins_the_total(painting):
    from ml.config import TrainConfig
    from ml.losses import PerceptualLoss

    photo = np.full((2, 32, 32, 3), 170.0, np.float32)
    photo[:, 8:24, 8:24] = 0.0
    result = photo.copy()
    result[:, 8:24, 8:24] = (255.0, 0.0, 255.0)  # magenta: no painting's shadow
    plain = PerceptualLoss(painting, network="vgg16", weights=None)
    shadow = PerceptualLoss(painting, network="vgg16", weights=None,
                            loss_network=plain.loss_network, shadow_weight=100.0)
    assert "shadow" not in plain.term_names and "shadow" in shadow.term_names
    both = shadow(photo, result, style_scale=np.array([1.0, 1.0], np.float32))
    one = shadow(photo, result, style_scale=np.array([1.0, 0.0], np.float32))  # identity
    assert float(both["shadow"]) > 0.0
    assert float(one["shadow"]) == pytest.approx(float(both["shadow"]) / 2, rel=1e-5)
    assert float(both["total"]) == pytest.approx(
        float(plain(photo, result, style_scale=np.array([1.0, 1.0], np.float32))["total"])
        + float(both["shadow"]), rel=1e-5)
    with pytest.raises(ValueError, match="shadow_weight"):
        TrainConfig(shadow_weight=-1.0)
