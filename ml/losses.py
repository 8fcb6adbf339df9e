"""Perceptual loss (Johnson et al. 2016) on a frozen ``keras.applications`` VGG.

The loss network maps RGB images in [0, 255] to named VGG feature maps. It
applies the Caffe preprocessing the ImageNet VGG weights expect (RGB -> BGR,
subtract the ImageNet mean pixel) with ``keras.ops``, so it is backend-agnostic.
``keras.applications`` VGG conv layers include their ReLU: the output of
``block1_conv2`` is ``relu1_2`` in the papers' naming.

Normalisation of the three terms (the same as lengstrom/fast-style-transfer,
so its weights transfer to VGG19 directly):

* content: mean over batch, height, width and channels of the squared
  difference of the content-layer features of the photo and the stylized image;
* style: for each style layer, the mean over batch and the C x C entries of the
  squared difference between the Gram matrix of the stylized image and the
  painting's Gram matrix (see :func:`gram_matrix`), summed over the layers;
* total variation: mean squared difference of vertically neighbouring pixels
  plus the same for horizontal neighbours, on [0, 255] images (see
  :func:`total_variation`);
* light (optional, ``light_weight``): the photo's light and dark layout, kept at a
  coarse scale whatever the palette: ``2 (1 - r)`` with ``r`` the correlation of the
  photo's and the result's luminance shrunk to ``light_size`` px (see
  :func:`light_layout_loss`), averaged over the batch;
* edges (optional, ``edge_weight``): the photo's edges, kept where they are whatever
  the brush texture painted over them: ``2 (1 - r)`` with ``r`` the correlation of the
  Sobel gradient magnitudes of the photo's and the result's luminance shrunk to
  ``edge_size`` px (see :func:`edge_layout_loss`), averaged over the batch;
* spot (optional, ``spot_weight``): near-black pixels where the photo is not dark, the
  black blobs a network paints into light, finely textured parts of a photo (see
  :func:`dark_spot_loss`), averaged over the batch;
* shadow (optional, ``shadow_weight``): where the photo is dark, the distance of the
  result's colour from the painting's own shadow colours (see
  :func:`shadow_colour_loss`), averaged over the painted examples of the batch.

Each is multiplied by its weight; ``total`` is the sum of the weighted terms.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

from ml.images import LUMA_WEIGHTS

#: The terms every perceptual loss reports (:attr:`PerceptualLoss.term_names` adds the
#: optional ones and one per style layer).
LOSS_NAMES = ("total", "content", "style", "tv")

__all__ = [
    "DEFAULT_CONTENT_LAYER",
    "DEFAULT_LOSS_WEIGHTS",
    "DEFAULT_STYLE_LAYERS",
    "DEFAULT_STYLE_LAYER_WEIGHTS",
    "LossWeightsUnavailable",
    "PerceptualLoss",
    "VGGPreprocess",
    "build_loss_network",
    "gram_matrix",
    "total_variation",
]

NETWORKS = ("vgg16", "vgg19")

#: Style layers per network: VGG19 as in the thesis (conv1_1 ... conv5_1), VGG16
#: as in Johnson et al. (relu1_2, relu2_2, relu3_3, relu4_3).
DEFAULT_STYLE_LAYERS = {
    "vgg19": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
    "vgg16": ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"),
}
#: Content layer per network: VGG19 conv4_2 (the thesis), VGG16 relu3_3.
#: Why: docs/design/training.md.
DEFAULT_CONTENT_LAYER = {"vgg19": "block4_conv2", "vgg16": "block3_conv3"}

#: Relative weight of each style layer per network, shallow to deep, in the order of
#: :data:`DEFAULT_STYLE_LAYERS`. Why and measurements: docs/design/training.md.
DEFAULT_STYLE_LAYER_WEIGHTS = {
    "vgg19": (1.0, 1.0, 1.0, 1.0, 1.0),
    "vgg16": (1.0, 2.0, 4.0, 8.0),
}

#: Default term weights per network, for the default layers and layer weights above
#: and the normalisation described in the module docstring. Why and measurements:
#: docs/design/training.md.
DEFAULT_LOSS_WEIGHTS = {
    "vgg19": {"content_weight": 7.5, "style_weight": 100.0, "tv_weight": 200.0},
    "vgg16": {"content_weight": 4.0, "style_weight": 5.5, "tv_weight": 0.5},
}

#: ImageNet mean pixel in BGR order (Caffe VGG preprocessing).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class LossWeightsUnavailable(RuntimeError):
    """The loss network's ImageNet weights could not be obtained."""


@keras.saving.register_keras_serializable(package="prisma")
class VGGPreprocess(keras.layers.Layer):
    """Caffe VGG preprocessing with ``keras.ops``: RGB [0, 255] -> BGR minus mean."""

    def call(self, inputs):
        x = ops.flip(ops.cast(inputs, self.compute_dtype), axis=-1)
        return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def _check_network(network):
    if network not in NETWORKS:
        raise ValueError(f"`network` must be one of {NETWORKS}. Received: network={network!r}")


def _vgg(network, weights):
    """The convolutional part of VGG16/19 with the requested weights."""
    app = keras.applications.VGG16 if network == "vgg16" else keras.applications.VGG19
    kwargs = {"include_top": False, "input_shape": (None, None, 3)}
    if weights is None:
        return app(weights=None, **kwargs)
    if weights == "imagenet":
        try:
            return app(weights="imagenet", **kwargs)
        except Exception as exc:  # keras raises plain Exception on URL failures
            raise LossWeightsUnavailable(
                f"Downloading the ImageNet {network.upper()} weights failed ({exc}). "
                "On a machine without network access give a local weights file instead: "
                "`--loss-weights FILE` on the command line, or `weights=FILE` in Python "
                "(e.g. a VGG16 file made with `python -m ml.weights vgg16-from-onnx`)."
            ) from exc
    path = Path(weights)
    if not path.is_file():
        raise LossWeightsUnavailable(
            f"Loss network weights file not found: {path}. Pass `weights=None`, "
            "`weights='imagenet'` or an existing file (`--loss-weights FILE`)."
        )
    model = app(weights=None, **kwargs)
    model.load_weights(str(path))
    return model


def build_loss_network(network="vgg19", weights="imagenet", layers=None, dtype=None):
    """Frozen VGG mapping RGB images in [0, 255] to a dict of feature maps.

    Args:
        network: ``"vgg19"`` or ``"vgg16"``.
        weights: ``"imagenet"`` (downloaded and cached by Keras; raises
            :class:`LossWeightsUnavailable` when the download fails), ``None``
            (random weights, for tests) or the path of a weights file for
            ``keras.applications.VGG16/VGG19(include_top=False)`` (``.weights.h5``
            or a legacy ``.h5``).
        layers: names of the VGG layers to output; default: the network's style
            layers plus its content layer.
        dtype: a Keras dtype policy for the VGG, e.g. ``"mixed_bfloat16"`` (its
            features then come out in bfloat16; :class:`PerceptualLoss` casts them
            to float32 before taking any loss term). Default: the global policy.

    Returns:
        A non-trainable ``keras.Model`` taking ``(batch, height, width, 3)``
        float RGB in [0, 255] and returning ``{layer_name: features}``.
    """
    _check_network(network)
    if layers is None:
        layers = list(DEFAULT_STYLE_LAYERS[network]) + [DEFAULT_CONTENT_LAYER[network]]
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise ValueError("`layers` must name at least one VGG layer.")
    if dtype is None:
        return _build_loss_network(network, weights, layers)
    # keras.applications models take no dtype argument: build under the policy.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        return _build_loss_network(network, weights, layers)
    finally:
        keras.config.set_dtype_policy(previous)


def _build_loss_network(network, weights, layers):
    vgg = _vgg(network, weights)
    known = {layer.name for layer in vgg.layers}
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ValueError(f"Unknown {network} layers: {unknown}. Available: {sorted(known)}")
    vgg.trainable = False
    features = keras.Model(
        vgg.input, {name: vgg.get_layer(name).output for name in layers}, name=f"{network}_features"
    )
    inputs = keras.Input(shape=(None, None, 3), name="rgb_0_255")
    outputs = features(VGGPreprocess(name="vgg_preprocess")(inputs))
    model = keras.Model(inputs, outputs, name=f"{network}_loss_network")
    model.trainable = False
    return model


def gram_matrix(features):
    """Gram matrices of a batch of feature maps.

    ``G[b, c, d] = sum_{h, w} F[b, h, w, c] * F[b, h, w, d] / (H * W * C)``

    The division by ``H * W * C`` (Johnson et al.) makes the value independent of
    the image size and comparable between layers of different depth.

    Args:
        features: ``(batch, height, width, channels)`` tensor.

    Returns:
        ``(batch, channels, channels)`` tensor.
    """
    features = ops.convert_to_tensor(features)
    shape = ops.shape(features)
    channels = shape[-1]
    flat = ops.reshape(features, (shape[0], -1, channels))
    gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat)
    size = ops.cast(shape[1] * shape[2] * channels, gram.dtype)
    return gram / size


def total_variation(images):
    """Total variation regulariser.

    ``mean((x[:, 1:, :] - x[:, :-1, :])**2) + mean((x[:, :, 1:] - x[:, :, :-1])**2)``
    over batch, positions and channels, on images in the scale given
    (our networks output [0, 255]).

    Args:
        images: ``(batch, height, width, channels)`` tensor.

    Returns:
        A scalar tensor.
    """
    images = ops.convert_to_tensor(images)
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return ops.mean(ops.square(dy)) + ops.mean(ops.square(dx))


def light_layout_loss(photos, stylized, size=16, epsilon=4.0):
    """Per image, ``2 (1 - r)``: ``r`` the correlation between the luminance of
    ``photos`` and of ``stylized`` (both ``(batch, H, W, 3)`` in [0, 255]), each shrunk
    to ``size x size`` (antialiased) so only the coarse light and dark layout counts.

    0 when the result keeps the photo's layout, whatever its brightness, contrast or
    palette; 2 for no relation; 4 for the layout inverted. Each map is standardised
    with ``epsilon`` (levels) added to its standard deviation, so in a flat part of a
    photo the term asks the result to stay flat there too rather than amplify noise.
    Returns float32 ``(batch,)``.
    """
    difference = (_standardised(_small_luma(stylized, size), epsilon)
                  - _standardised(_small_luma(ops.stop_gradient(photos), size), epsilon))
    return ops.mean(ops.square(difference), axis=(1, 2, 3))


def _standardised(maps, epsilon):
    """Each ``(batch, h, w, 1)`` map less its mean, over its standard deviation plus
    ``epsilon``."""
    centred = maps - ops.mean(maps, axis=(1, 2, 3), keepdims=True)
    spread = ops.sqrt(ops.mean(ops.square(centred), axis=(1, 2, 3), keepdims=True))
    return centred / (spread + epsilon)


def _small_luma(images, size):
    """The luminance of ``images`` shrunk (antialiased) to ``size x size``, float32
    ``(batch, size, size, 1)``."""
    weights = ops.convert_to_tensor(LUMA_WEIGHTS, dtype="float32")
    luma = ops.sum(ops.cast(images, "float32") * weights, axis=-1, keepdims=True)
    return ops.image.resize(luma, (size, size), interpolation="bilinear", antialias=True)


#: Sobel kernels (d/dy, d/dx) as one ``(3, 3, 1, 2)`` convolution kernel.
_SOBEL = np.stack([np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32),
                   np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)],
                  axis=-1)[:, :, None, :]


def edge_layout_loss(photos, stylized, size, epsilon=4.0):
    """Per image, ``2 (1 - r)``: ``r`` the correlation between the Sobel gradient
    magnitude of the luminance of ``photos`` and of ``stylized`` (both
    ``(batch, H, W, 3)`` in [0, 255]), each shrunk to ``size x size`` (antialiased)
    first, as ``ml.quality.edge_correlation`` measures a result (64 px of a 384 px
    photo: about 43 px of a 256 px crop).

    0 when the result keeps the photo's edges where they are, however strong and in
    whatever colour; 2 for no relation. Texture finer than a cell of the shrunk map
    averages out, so the term holds the photo's outlines and leaves the brush texture
    free, where the content term (VGG features at full resolution) holds the photo's
    own fine texture too. Each magnitude map is standardised with ``epsilon`` added to
    its standard deviation, so a photo with no edges asks for none. Returns float32
    ``(batch,)``.
    """
    kernel = ops.convert_to_tensor(_SOBEL)

    def magnitude(images):
        gradients = ops.conv(_small_luma(images, size), kernel, padding="valid")
        return ops.sqrt(ops.sum(ops.square(gradients), axis=-1, keepdims=True) + 1e-6)

    difference = (_standardised(magnitude(stylized), epsilon)
                  - _standardised(magnitude(ops.stop_gradient(photos)), epsilon))
    return ops.mean(ops.square(difference), axis=(1, 2, 3))


def _local_photo_luma(photos):
    """The photos' luminance averaged over 5x5 px, ``(batch, H, W, 1)``, no gradient:
    where a photo is dark or light, not its thin lines."""
    weights = ops.convert_to_tensor(LUMA_WEIGHTS, dtype="float32")
    luma = ops.sum(ops.cast(ops.stop_gradient(photos), "float32") * weights, axis=-1,
                   keepdims=True)
    return ops.average_pool(luma, pool_size=5, strides=1, padding="same")


#: A result pixel under :data:`DARK_SPOT` levels of luminance where its photo is over
#: :data:`LIGHT_PHOTO` is a dark spot (the measure: ``ml.bank_run.dark_spots``).
DARK_SPOT = 24.0
LIGHT_PHOTO = 64.0


def dark_spot_loss(photos, stylized):
    """Per image, the mean over pixels of ``w * (max(0, DARK_SPOT - y) / DARK_SPOT)²``:
    ``y`` the result's luminance, ``w`` how far the photo is from dark there (0 at or
    under :data:`LIGHT_PHOTO` levels, rising to 1 at twice that, on the photo's
    luminance averaged over 5x5 px so a thin dark line beside a light area does not
    count). 0 when the result keeps near-black to where the photo is dark; at most 1.
    ``photos`` and ``stylized``: ``(batch, H, W, 3)`` in [0, 255]. Returns float32
    ``(batch,)``."""
    weights = ops.convert_to_tensor(LUMA_WEIGHTS, dtype="float32")
    photo_luma = _local_photo_luma(photos)
    light = ops.clip((photo_luma - LIGHT_PHOTO) / LIGHT_PHOTO, 0.0, 1.0)
    luma = ops.sum(ops.cast(stylized, "float32") * weights, axis=-1, keepdims=True)
    darkness = ops.relu(DARK_SPOT - luma) / DARK_SPOT
    return ops.mean(light * ops.square(darkness), axis=(1, 2, 3))


#: The share of a painting's pixels, darkest first, whose colours are its shadow
#: palette, and how many colours that palette has (:func:`shadow_palette`).
SHADOW_SHARE = 0.2
SHADOW_COLOURS = 4
#: A photo under this many levels of luminance (averaged over 5x5 px) is in shadow for
#: the shadow term, fully so at half of it (:func:`shadow_colour_loss`).
SHADOW_PHOTO = 48.0


def shadow_palette(painting, colours=SHADOW_COLOURS, share=SHADOW_SHARE, size=256,
                   iterations=12) -> np.ndarray:
    """The painting's shadow colours: ``(colours, 3)`` float32 RGB in [0, 255], the
    k-means centres of its darkest ``share`` of pixels (luminance, at most ``size`` px
    on the longer side). Deterministic: the centres start at luminance quantiles.
    ``painting``: ``HxWx3`` (or ``1xHxWx3``) in [0, 255], or an image path."""
    image = np.asarray(ops.convert_to_numpy(_as_image_batch(painting)), np.float32)[0]
    step = max(1, int(np.ceil(max(image.shape[:2]) / size)))
    pixels = image[::step, ::step].reshape(-1, 3)
    luma = pixels @ np.asarray(LUMA_WEIGHTS, np.float32)
    order = np.argsort(luma, kind="stable")
    darkest = pixels[order[:max(colours, int(round(share * len(pixels))))]]
    # ``darkest`` is sorted by luminance: start each centre at one quantile of it.
    starts = ((np.arange(colours) + 0.5) * len(darkest) / colours).astype(int)
    centres = darkest[starts].copy()
    for _ in range(iterations):
        nearest = np.argmin(((darkest[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        for k in range(colours):
            members = darkest[nearest == k]
            if len(members):
                centres[k] = members.mean(0)
    return centres.astype(np.float32)


def shadow_colour_loss(photos, stylized, palettes):
    """Per image, the mean over pixels of ``w * d²``: ``d`` the distance (RGB, in
    units of 255 levels, over the three channels) from the result's local colour
    (averaged over 4x4 px, so brush texture is free) to the nearest colour of its
    painting's shadow palette, ``w`` how deep the photo is in shadow there (0 at or
    over :data:`SHADOW_PHOTO` levels of luminance averaged over 5x5 px, rising to 1 at
    half of it). 0 where the photo is not dark, or where its dark parts are painted in
    the painting's own shadow colours; a flat black part of a photo painted in a
    colour the painting never puts in its shadows (an olive disc in *The Starry
    Night*) costs the most.

    ``photos``, ``stylized``: ``(batch, H, W, 3)`` in [0, 255]; ``palettes``:
    ``(batch, colours, 3)`` (:func:`shadow_palette` of each example's painting).
    Returns float32 ``(batch,)``."""
    photo_luma = _local_photo_luma(photos)
    shadow = ops.clip((SHADOW_PHOTO - photo_luma) / (SHADOW_PHOTO / 2), 0.0, 1.0)
    local = ops.average_pool(ops.cast(stylized, "float32"), pool_size=4, strides=1,
                             padding="same")
    palettes = ops.cast(palettes, "float32")[:, None, None]  # (batch, 1, 1, K, 3)
    distance = ops.mean(ops.square((local[..., None, :] - palettes) / 255.0), axis=-1)
    nearest = ops.min(distance, axis=-1, keepdims=True)
    return ops.mean(shadow * nearest, axis=(1, 2, 3))


#: A value of an inner feature map further than this many standard deviations from its
#: map's mean is a spike (the spike term's threshold). A sharp droplet reaches 20-40;
#: held under 10, the bank spread its droplets into broader blobs at 13-17, so the
#: limit is where about 0.1 % of a healthy map's values lie (docs/design/training.md).
SPIKE_LIMIT = 6.0


def spike_z(feature, epsilon=1e-3):
    """``|feature - mean| / std`` over each map (per image and channel) of ``(batch, H, W,
    C)`` features, in float32."""
    feature = ops.cast(feature, "float32")
    mean = ops.mean(feature, axis=(1, 2), keepdims=True)
    variance = ops.var(feature, axis=(1, 2), keepdims=True)
    return ops.abs(feature - mean) / ops.sqrt(variance + epsilon)


def spike_loss(features, limit=SPIKE_LIMIT):
    """Per image, the mean over ``features`` (a list of ``(batch, H, W, C)`` maps, e.g.
    ``TransformNet.trace``'s inner maps) of the mean over each map's values of
    ``max(0, z - limit)²``, ``z`` from :func:`spike_z`. 0 while no value is a spike; it
    grows with a droplet, one spot the net makes far stronger than the rest of the map
    so that it dominates the map's instance-norm statistics and is painted as a blob of
    one colour with a halo. Returns float32 ``(batch,)``."""
    terms = [ops.mean(ops.square(ops.relu(spike_z(feature) - limit)), axis=(1, 2, 3))
             for feature in features]
    return ops.sum(ops.stack(terms), axis=0) / len(terms)


def _as_image_batch(image):
    """Painting as a float32 (1, H, W, 3) array in [0, 255]."""
    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as img:
            image = np.asarray(img.convert("RGB"))
    array = ops.convert_to_numpy(image) if not isinstance(image, np.ndarray) else image
    array = np.asarray(array, dtype="float32")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] != 1 or array.shape[-1] != 3:
        raise ValueError(f"The style image must be one HxWx3 RGB image. Received {array.shape}")
    return array


class PerceptualLoss:
    """Content + style + total-variation loss against one painting, or several.

    The paintings' Gram matrices are computed once, here. With several paintings
    (a bank), :meth:`loss` takes each example's painting as ``style_index``. Call
    :meth:`loss` (or the object itself) with a batch of content photos and the
    network's stylized versions of them, both ``(batch, height, width, 3)``
    RGB in [0, 255]. Uses ``keras.ops`` only, so it works in a custom training
    step on every backend.

    Args:
        painting: the painting: ``HxWx3`` (or ``1xHxWx3``) array in [0, 255],
            or a path to an image file; or a list of them (a bank's paintings).
        network: ``"vgg19"`` or ``"vgg16"``.
        weights: loss network weights, as in :func:`build_loss_network`.
        content_layer: VGG layer of the content term; default
            :data:`DEFAULT_CONTENT_LAYER` of the network.
        style_layers: VGG layers of the style term; default
            :data:`DEFAULT_STYLE_LAYERS` of the network.
        style_layer_weights: relative weight of each style layer (same order);
            default :data:`DEFAULT_STYLE_LAYER_WEIGHTS` for the default layers,
            equal weights for other layers.
        content_weight, style_weight, tv_weight: term weights; ``None`` takes
            :data:`DEFAULT_LOSS_WEIGHTS` of the network.
        style_size: if given, the painting is resized (aspect kept) so that its
            longer side has this many pixels before its Gram matrices are taken.
        light_weight: weight of the ``light`` term (:func:`light_layout_loss`); 0 (the
            default) leaves the term out.
        light_size: the side (px) both luminance maps are shrunk to for the ``light``
            term: 16 compares the broad layout; larger sizes see smaller spots too.
        edge_weight: weight of the ``edges`` term (:func:`edge_layout_loss`); 0 (the
            default) leaves the term out.
        edge_size: the side (px) both luminance maps are shrunk to for the ``edges``
            term before their gradients are taken (``ml.config.TrainConfig``'s default:
            43 of a 256 px crop).
        spot_weight: weight of the ``spot`` term (:func:`dark_spot_loss`); 0 (the
            default) leaves the term out.
        shadow_weight: weight of the ``shadow`` term (:func:`shadow_colour_loss`
            against each painting's :func:`shadow_palette`); 0 (the default) leaves
            the term out.
        loss_network: an already built :func:`build_loss_network` model with the
            needed layers, to share one between losses (``network`` and
            ``weights`` are then ignored).
    """

    def __init__(
        self,
        painting,
        network="vgg19",
        weights="imagenet",
        content_layer=None,
        style_layers=None,
        style_layer_weights=None,
        content_weight=None,
        style_weight=None,
        tv_weight=None,
        style_size=None,
        loss_network=None,
        light_weight=0.0,
        light_size=16,
        spot_weight=0.0,
        shadow_weight=0.0,
        edge_weight=0.0,
        edge_size=43,
    ):
        _check_network(network)
        self.network = network
        self.content_layer = content_layer or DEFAULT_CONTENT_LAYER[network]
        self.style_layers = tuple(style_layers or DEFAULT_STYLE_LAYERS[network])
        if style_layer_weights is None:
            default_layers = self.style_layers == DEFAULT_STYLE_LAYERS[network]
            style_layer_weights = (
                DEFAULT_STYLE_LAYER_WEIGHTS[network] if default_layers
                else (1.0,) * len(self.style_layers)
            )
        style_layer_weights = tuple(float(w) for w in style_layer_weights)
        if len(style_layer_weights) != len(self.style_layers) or not all(
            w >= 0 for w in style_layer_weights
        ):
            raise ValueError(
                f"`style_layer_weights` needs one weight >= 0 per style layer "
                f"{self.style_layers}. Received: {style_layer_weights}"
            )
        self.style_layer_weights = dict(zip(self.style_layers, style_layer_weights))
        defaults = DEFAULT_LOSS_WEIGHTS[network]
        self.content_weight = float(
            defaults["content_weight"] if content_weight is None else content_weight
        )
        self.style_weight = float(
            defaults["style_weight"] if style_weight is None else style_weight
        )
        self.tv_weight = float(defaults["tv_weight"] if tv_weight is None else tv_weight)
        self.light_weight = float(light_weight)
        self.spot_weight = float(spot_weight)
        self.shadow_weight = float(shadow_weight)
        if not isinstance(light_size, int) or light_size < 2:
            raise ValueError(f"`light_size` must be an int >= 2. Received: {light_size!r}")
        self.light_size = light_size
        self.edge_weight = float(edge_weight)
        if not isinstance(edge_size, int) or edge_size < 4:
            raise ValueError(f"`edge_size` must be an int >= 4. Received: {edge_size!r}")
        self.edge_size = edge_size
        for name in ("content_weight", "style_weight", "tv_weight", "light_weight",
                     "spot_weight", "shadow_weight", "edge_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {getattr(self, name)}")
        if style_size is not None and (not isinstance(style_size, int) or style_size < 16):
            raise ValueError(f"`style_size` must be an int >= 16. Received: {style_size!r}")
        self.style_size = style_size

        layers = list(self.style_layers) + [self.content_layer]
        if loss_network is None:
            loss_network = build_loss_network(network, weights, layers)
        missing = [name for name in layers if name not in loss_network.output]
        if missing:
            raise ValueError(f"`loss_network` does not output the layers {missing}.")
        self.loss_network = loss_network

        paintings = painting if isinstance(painting, (list, tuple)) else [painting]
        if not paintings:
            raise ValueError("At least one style image is needed.")
        paintings = [_as_image_batch(painting) for painting in paintings]
        grams = [self._painting_grams(painting) for painting in paintings]
        #: Painting Gram matrices, ``{layer: (paintings, C, C)}``, float32.
        self.style_grams = {
            name: ops.concatenate([g[name] for g in grams], axis=0) for name in self.style_layers
        }
        #: Each painting's :func:`shadow_palette`, ``(paintings, colours, 3)``, with a
        #: ``shadow_weight``; else None.
        self.shadow_palettes = None if not self.shadow_weight else ops.convert_to_tensor(
            np.stack([shadow_palette(painting) for painting in paintings]))

    def _painting_grams(self, painting) -> dict:
        style = _as_image_batch(painting)
        if self.style_size is not None:
            height, width = style.shape[1:3]
            scale = self.style_size / max(height, width)
            new_size = (max(1, round(height * scale)), max(1, round(width * scale)))
            style = ops.image.resize(
                style, new_size, interpolation="bilinear", antialias=True
            )
            style = ops.clip(style, 0.0, 255.0)
        features = self.loss_network(style, training=False)
        return {
            name: ops.stop_gradient(gram_matrix(ops.cast(features[name], "float32")))
            for name in self.style_layers
        }

    @property
    def term_names(self) -> tuple[str, ...]:
        """The keys :meth:`loss` returns: totals, then one ``style_<layer>`` each (and
        ``light``, ``edges``, ``spot`` and ``shadow`` when their weights are not 0)."""
        light = ("light",) if self.light_weight else ()
        edges = ("edges",) if self.edge_weight else ()
        spot = ("spot",) if self.spot_weight else ()
        shadow = ("shadow",) if self.shadow_weight else ()
        return (*LOSS_NAMES, *light, *edges, *spot, *shadow,
                *(f"style_{n}" for n in self.style_layers))

    def loss(self, content_batch, stylized_batch, style_scale=1.0, style_index=None):
        """Weighted loss terms.

        Args:
            content_batch: photos, ``(batch, H, W, 3)`` in [0, 255].
            stylized_batch: the network outputs for them, same shape.
            style_scale: multiplies every style term: a scalar (the training
                warm-up ramps it from 0 to 1) or one value per example (0 for a
                bank's identity examples, which get the content loss only).
            style_index: which painting each example is compared with, int
                ``(batch,)``; default: the first (the only one when one painting trains).

        Returns:
            float32 scalar tensors, every one already multiplied by its weights:
            ``content``, ``tv``, ``style`` (the sum of the per-layer terms),
            ``style_<layer>`` for each style layer, and ``total`` =
            content + style + tv. (See :attr:`term_names`.)
        """
        content_batch = ops.cast(content_batch, "float32")
        stylized_batch = ops.cast(stylized_batch, "float32")
        batch = ops.shape(content_batch)[0]
        features = self.loss_network(
            ops.concatenate([content_batch, stylized_batch], axis=0), training=False
        )
        # Every term in float32, whatever precision the VGG runs in.
        features = {name: ops.cast(value, "float32") for name, value in features.items()}
        target = ops.stop_gradient(features[self.content_layer][:batch])
        content = ops.mean(ops.square(features[self.content_layer][batch:] - target))
        terms = {"content": self.content_weight * content}
        style = 0.0
        scale = ops.reshape(ops.cast(style_scale, "float32"), (-1,))  # (1,) or (batch,)
        for name in self.style_layers:
            gram = gram_matrix(features[name][batch:])
            target = self.style_grams[name]
            target = target[:1] if style_index is None else ops.take(target, style_index, axis=0)
            per_example = ops.mean(ops.square(gram - target), axis=(1, 2))
            layer_weight = self.style_weight * self.style_layer_weights[name]
            layer = layer_weight * ops.mean(scale * per_example)
            terms[f"style_{name}"] = layer
            style = style + layer
        terms["style"] = style
        terms["tv"] = self.tv_weight * total_variation(stylized_batch)
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        if self.light_weight:
            terms["light"] = self.light_weight * ops.mean(
                light_layout_loss(content_batch, stylized_batch, size=self.light_size))
            terms["total"] = terms["total"] + terms["light"]
        if self.edge_weight:
            terms["edges"] = self.edge_weight * ops.mean(
                edge_layout_loss(content_batch, stylized_batch, size=self.edge_size))
            terms["total"] = terms["total"] + terms["edges"]
        if self.spot_weight:
            terms["spot"] = self.spot_weight * ops.mean(
                dark_spot_loss(content_batch, stylized_batch))
            terms["total"] = terms["total"] + terms["spot"]
        if self.shadow_weight:
            palettes = self.shadow_palettes[:1] if style_index is None else ops.take(
                self.shadow_palettes, style_index, axis=0)
            palettes = ops.broadcast_to(palettes, (batch, *self.shadow_palettes.shape[1:]))
            # Only painted examples: a bank's identity examples (style scale 0) give
            # the photo back and are held to it by their own term.
            painted = ops.cast(scale > 0, "float32")
            per_example = shadow_colour_loss(content_batch, stylized_batch, palettes)
            terms["shadow"] = self.shadow_weight * ops.mean(painted * per_example)
            terms["total"] = terms["total"] + terms["shadow"]
        return terms

    __call__ = loss
