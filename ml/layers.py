"""Building blocks of the image transform network (Johnson et al. 2016).

Every layer here is written with ``keras.ops`` only, so the same code runs under
the TensorFlow, JAX and PyTorch Keras backends. Arguments are validated and
stored in ``__init__``, weights are created in ``build`` and ``get_config``
returns everything needed to rebuild the layer (keras-hub style).

All layers take and return channels-last tensors ``(batch, height, width,
channels)`` of any height and width, odd sizes included.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "ReflectionConv2D",
    "InstanceNormalization",
    "ConditionalInstanceNormalization",
    "ResidualBlock",
    "UpsampleConv2D",
]

PACKAGE = "prisma"


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def _non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")
    return value


def _slot_count(value):
    """A network's slot count: at least 2 (slot 0 the identity, then its styles)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError("`num_styles` counts the identity slot and at least one style: it "
                         f"must be an integer of at least 2. Received: num_styles={value!r}")
    return value


def _check_rank4(layer, input_shape):
    if len(input_shape) != 4:
        raise ValueError(
            f"{layer.__class__.__name__} expects a 4D (batch, height, width, channels) "
            f"input. Received shape: {tuple(input_shape)}"
        )
    if input_shape[-1] is None:
        raise ValueError(
            f"{layer.__class__.__name__} needs a known number of channels. "
            f"Received shape: {tuple(input_shape)}"
        )


def _conv_out(size, kernel_size, strides):
    """Spatial size after reflect padding by ``kernel_size // 2`` and a VALID conv."""
    if size is None:
        return None
    pad = kernel_size // 2
    return (size + 2 * pad - kernel_size) // strides + 1


# Padding helpers built from slices and concatenations: exactly the values of
# ``ops.pad`` in "reflect" / "symmetric" mode, faster on TensorFlow's CPU
# (docs/design/network.md).


def _reflect_pad_axis(x, axis, before, after):
    """Reflect ``x`` (edge pixel not repeated) by ``before``/``after`` along ``axis``."""
    if not before and not after:
        return x
    size = x.shape[axis]
    if size is not None and size <= max(before, after):
        # Too small to reflect from slices: let ops.pad raise (or, on backends
        # that allow it, reflect repeatedly) as it always did.
        pad_width = [[0, 0]] * 4
        pad_width[axis] = [before, after]
        return ops.pad(x, pad_width, mode="reflect")
    index = [slice(None)] * 4
    parts = []
    if before:
        index[axis] = slice(1, before + 1)
        parts.append(ops.flip(x[tuple(index)], axis=axis) if before > 1 else x[tuple(index)])
    parts.append(x)
    if after:
        index[axis] = slice(-after - 1, -1)
        parts.append(ops.flip(x[tuple(index)], axis=axis) if after > 1 else x[tuple(index)])
    return ops.concatenate(parts, axis=axis)


def _reflect_pad(x, top, bottom, left, right):
    """``ops.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="reflect")``."""
    x = _reflect_pad_axis(x, 1, top, bottom)
    return _reflect_pad_axis(x, 2, left, right)


def _edge_pad_1(x):
    """Pad height and width by one pixel that repeats the edge pixel."""
    x = ops.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
    return ops.concatenate([x[:, :, :1], x, x[:, :, -1:]], axis=2)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReflectionConv2D(keras.layers.Layer):
    """Reflection padding followed by a ``VALID`` 2D convolution.

    The input is padded by ``kernel_size // 2`` pixels on every side by
    reflection (no zero border, so no dark frame appears in generated images),
    then convolved with stride ``strides``. With an odd ``kernel_size`` and
    ``strides=1`` the output has the input's height and width; with
    ``strides=2`` it has ``ceil(size / 2)``.

    Reflection needs ``height, width > kernel_size // 2``.

    Args:
        filters: number of output channels.
        kernel_size: side of the square kernel (odd).
        strides: convolution stride (same in both directions).
        use_bias: whether to add a learned bias.
        kernel_initializer: initializer of the kernel.
        bias_initializer: initializer of the bias.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        if self.kernel_size % 2 != 1:
            raise ValueError(
                f"`kernel_size` must be odd so that padding is symmetric. "
                f"Received: kernel_size={kernel_size}"
            )
        self.strides = _positive_int("strides", strides)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.pad = self.kernel_size // 2

    def build(self, input_shape):
        _check_rank4(self, input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, input_shape[-1], self.filters),
            initializer=self.kernel_initializer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer
            )
        else:
            self.bias = None

    def call(self, inputs):
        x = inputs
        if self.pad:
            p = self.pad
            x = _reflect_pad(x, p, p, p, p)
        x = ops.conv(x, self.kernel, strides=self.strides, padding="valid")
        if self.bias is not None:
            x = x + self.bias
        return x

    def compute_output_shape(self, input_shape):
        return (
            input_shape[0],
            _conv_out(input_shape[1], self.kernel_size, self.strides),
            _conv_out(input_shape[2], self.kernel_size, self.strides),
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def _positive_epsilon(value) -> float:
    epsilon = float(value)
    if not epsilon > 0:
        raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon}")
    return epsilon


#: Clip-and-measure passes of robust moments: one pixel 200 std out still inflates the
#: standard deviation 1.5x after one pass, 1.04x after two (tests/ml/test_layers.py).
ROBUST_PASSES = 2


def _clip_z(value):
    if value is None:
        return None
    clip_z = float(value)
    if not clip_z > 0:
        raise ValueError(f"`clip_z` must be > 0 or None. Received: clip_z={value}")
    return clip_z


def _instance_moments(inputs, epsilon, clip_z=None):
    """Mean and variance over height and width. With ``clip_z`` they are robust: taken
    again after every value is clipped to ``clip_z`` standard deviations of the mean,
    so a few pixels far out (a "droplet") cannot set a whole map's statistics, and
    the network gains nothing by making one (docs/design/training.md, "droplets")."""
    mean, variance = ops.moments(inputs, axes=[1, 2], keepdims=True)
    if clip_z is None:
        return mean, variance
    for _ in range(ROBUST_PASSES):
        reach = ops.stop_gradient(clip_z * ops.sqrt(variance + epsilon))
        centre = ops.stop_gradient(mean)
        clipped = ops.minimum(ops.maximum(inputs, centre - reach), centre + reach)
        mean, variance = ops.moments(clipped, axes=[1, 2], keepdims=True)
    return mean, variance


def _instance_normalize(inputs, scale, offset, epsilon, clip_z=None):
    """``(x - mean_hw) / sqrt(var_hw + epsilon) * scale + offset``; ``scale`` and
    ``offset`` per channel ``(C,)`` or per image and channel ``(B, 1, 1, C)``; the
    moments robust with ``clip_z`` (:func:`_instance_moments`)."""
    mean, variance = _instance_moments(inputs, epsilon, clip_z)
    if keras.backend.standardize_dtype(inputs.dtype) in ("float16", "bfloat16"):
        # Half precision (mixed-precision training): centre first, as a
        # folded shift could cancel badly against x * scale.
        x = (inputs - mean) * ops.rsqrt(variance + epsilon)
        return x * scale + offset
    # The same map as one per-image, per-channel multiply-add (docs/design/network.md).
    multiplier = ops.rsqrt(variance + epsilon) * scale
    return inputs * multiplier + (offset - mean * multiplier)


@keras.saving.register_keras_serializable(package=PACKAGE)
class InstanceNormalization(keras.layers.Layer):
    """Instance normalisation (Ulyanov et al. 2016) with a learned affine map.

    Each image and channel is normalised with the mean and variance taken over
    its own height and width::

        y = (x - mean_hw(x)) / sqrt(var_hw(x) + epsilon) * scale + offset

    ``scale`` (initialised to 1) and ``offset`` (initialised to 0) are learned
    per channel.

    Args:
        epsilon: added to the variance; guards flat regions against division
            by ~0.
        clip_z: None, or robust statistics: the mean and variance are taken again
            with every value clipped to ``clip_z`` standard deviations of the mean.
    """

    def __init__(self, epsilon=1e-5, clip_z=None, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = _positive_epsilon(epsilon)
        self.clip_z = _clip_z(clip_z)

    def build(self, input_shape):
        _check_rank4(self, input_shape)
        channels = input_shape[-1]
        self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
        self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        return _instance_normalize(inputs, self.scale, self.offset, self.epsilon, self.clip_z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        if self.clip_z is not None:
            config["clip_z"] = self.clip_z
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConditionalInstanceNormalization(keras.layers.Layer):
    """Instance normalisation with one affine map per style (Dumoulin et al. 2017).

    Keeps ``scale`` and ``offset`` of shape ``(num_styles, channels)``. Called with
    the feature maps and ``style_weights`` ``(batch, num_styles)``, it normalises
    each image like :class:`InstanceNormalization` and applies the per-image mix of
    the styles' maps::

        y = (x - mean_hw(x)) / sqrt(var_hw(x) + epsilon) * (w @ scale) + (w @ offset)

    One-hot weights give that style exactly; weights summing to 1 interpolate
    between styles.

    ``style_params`` ``(batch, 2 * channels)`` give each image an explicit map instead
    (a style that is no slot of the layer: ``[:, :channels]`` is its scale,
    ``[:, channels:]`` its offset). Given with ``style_weights`` the two add up::

        scale = w @ scale_slots + params[:, :C],  offset = w @ offset_slots + params[:, C:]

    so a share of an explicit map mixes with shares of the slots (strength towards the
    identity slot, a blend with another style). Without ``style_params`` the layer
    computes exactly what it did before they existed. At least one of the two must be
    given.

    Args:
        num_styles: how many styles (slots) the layer keeps maps for.
        epsilon: added to the variance.
        clip_z: None, or robust statistics as in :class:`InstanceNormalization`.
    """

    def __init__(self, num_styles, epsilon=1e-5, clip_z=None, **kwargs):
        super().__init__(**kwargs)
        self.num_styles = _slot_count(num_styles)
        self.epsilon = _positive_epsilon(epsilon)
        self.clip_z = _clip_z(clip_z)

    @property
    def params_size(self) -> int:
        """Length of one image's ``style_params`` row: a scale and an offset per channel."""
        return 2 * int(self.scale.shape[-1])

    def build(self, inputs_shape, style_weights_shape=None, style_params_shape=None):
        _check_rank4(self, inputs_shape)
        allowed_styles = (None, self.num_styles)
        if style_weights_shape is not None and style_weights_shape[-1] not in allowed_styles:
            raise ValueError(
                f"ConditionalInstanceNormalization(num_styles={self.num_styles}) needs "
                f"style_weights of shape (batch, {self.num_styles}). "
                f"Received shape: {tuple(style_weights_shape)}"
            )
        self._check_params_shape(inputs_shape[-1], style_params_shape)
        shape = (self.num_styles, inputs_shape[-1])
        self.scale = self.add_weight(name="scale", shape=shape, initializer="ones")
        self.offset = self.add_weight(name="offset", shape=shape, initializer="zeros")

    def _check_params_shape(self, channels, style_params_shape):
        if style_params_shape is None:
            return
        if len(style_params_shape) != 2 or style_params_shape[-1] not in (None, 2 * channels):
            raise ValueError(
                f"ConditionalInstanceNormalization over {channels} channels needs "
                f"style_params of shape (batch, {2 * channels}). "
                f"Received shape: {tuple(style_params_shape)}"
            )

    def call(self, inputs, style_weights=None, style_params=None):
        if style_weights is None and style_params is None:
            raise ValueError("ConditionalInstanceNormalization needs style_weights, "
                             "style_params or both.")
        channels = self.scale.shape[-1]
        scale = offset = None
        if style_weights is not None:
            weights = ops.cast(style_weights, self.compute_dtype)
            # (batch, styles) @ (styles, channels) -> (batch, 1, 1, channels)
            scale = ops.matmul(weights, ops.cast(self.scale, self.compute_dtype))
            offset = ops.matmul(weights, ops.cast(self.offset, self.compute_dtype))
        if style_params is not None:
            self._check_params_shape(channels, tuple(style_params.shape))
            params = ops.cast(style_params, self.compute_dtype)
            own_scale, own_offset = params[:, :channels], params[:, channels:]
            scale = own_scale if scale is None else scale + own_scale
            offset = own_offset if offset is None else offset + own_offset
        return _instance_normalize(inputs, scale[:, None, None, :], offset[:, None, None, :],
                                   self.epsilon, self.clip_z)

    def compute_output_shape(self, inputs_shape, style_weights_shape=None,
                             style_params_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"num_styles": self.num_styles, "epsilon": self.epsilon})
        if self.clip_z is not None:
            config["clip_z"] = self.clip_z
        return config


def apply_norm(norm, x, style_weights, style_params=None):
    """Call a :class:`ConditionalInstanceNormalization` with a slot mix, ``style_params``
    (that norm's own slice of an explicit row) or both."""
    if style_params is None:
        return norm(x, style_weights)
    return norm(x, style_weights, style_params=style_params)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(keras.layers.Layer):
    """Johnson-style residual block with an identity skip.

    ``x + IN(conv(relu(IN(conv(x)))))`` where both convolutions are
    :class:`ReflectionConv2D` with ``filters`` channels, so the input must
    have ``filters`` channels too. No activation follows the addition.

    Args:
        filters: channels of the input, of both convolutions and of the output.
        kernel_size: side of both convolution kernels.
        epsilon: epsilon of both instance normalisations.
        num_styles: slots of both :class:`ConditionalInstanceNormalization` layers
            (at least 2). The block is called with ``style_weights``
            ``(batch, num_styles)`` as second argument, and ``style_params``
            ``(batch, 4 * filters)`` (the two norms' explicit rows, ``norm1``'s first)
            as a keyword instead of or beside them.
        clip_z: robust statistics in both normalisations (:class:`InstanceNormalization`).
    """

    def __init__(self, filters, kernel_size=3, epsilon=1e-5, num_styles=2, clip_z=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.epsilon = float(epsilon)
        self.num_styles = _slot_count(num_styles)
        self.clip_z = _clip_z(clip_z)
        self.conv1 = ReflectionConv2D(self.filters, self.kernel_size, name="conv1")
        self.norm1 = ConditionalInstanceNormalization(self.num_styles, self.epsilon,
                                                      clip_z=self.clip_z, name="norm1")
        self.conv2 = ReflectionConv2D(self.filters, self.kernel_size, name="conv2")
        self.norm2 = ConditionalInstanceNormalization(self.num_styles, self.epsilon,
                                                      clip_z=self.clip_z, name="norm2")

    @property
    def params_size(self) -> int:
        """Length of the block's ``style_params`` row: both norms' scales and offsets."""
        return 4 * self.filters

    def build(self, inputs_shape, style_weights_shape=None, style_params_shape=None):
        _check_rank4(self, inputs_shape)
        if inputs_shape[-1] != self.filters:
            raise ValueError(
                f"ResidualBlock(filters={self.filters}) needs an input with "
                f"{self.filters} channels for its identity skip. "
                f"Received shape: {tuple(inputs_shape)}"
            )
        shape = tuple(inputs_shape)
        self.conv1.build(shape)
        self.norm1.build(shape)
        self.conv2.build(shape)
        self.norm2.build(shape)

    def call(self, inputs, style_weights=None, style_params=None):
        first = second = None
        if style_params is not None:
            half = 2 * self.filters
            first, second = style_params[:, :half], style_params[:, half:]
        x = self.conv1(inputs)
        x = ops.relu(apply_norm(self.norm1, x, style_weights, first))
        x = apply_norm(self.norm2, self.conv2(x), style_weights, second)
        return inputs + x

    def compute_output_shape(self, inputs_shape, style_weights_shape=None,
                             style_params_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size,
                       "epsilon": self.epsilon, "num_styles": self.num_styles})
        if self.clip_z is not None:
            config["clip_z"] = self.clip_z
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class UpsampleConv2D(keras.layers.Layer):
    """Nearest-neighbour upsampling followed by a :class:`ReflectionConv2D`.

    Each pixel is repeated ``size`` times along height and width (exact
    nearest-neighbour resize, any input size), then convolved with stride 1.
    Used instead of a transposed convolution, which causes checkerboard
    artefacts (Odena et al. 2016).

    Args:
        filters: output channels.
        kernel_size: side of the convolution kernel.
        size: integer upsampling factor.
    """

    def __init__(self, filters, kernel_size=3, size=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.size = _positive_int("size", size)
        self.conv = ReflectionConv2D(self.filters, self.kernel_size, name="conv")

    def build(self, input_shape):
        _check_rank4(self, input_shape)
        self.conv.build(self._upsampled_shape(input_shape))

    def _upsampled_shape(self, input_shape):
        def up(size):
            return None if size is None else size * self.size

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def call(self, inputs):
        if self.size == 2 and self.kernel_size == 3:
            return self._subpixel_call(inputs)
        x = inputs
        if self.size > 1:
            x = ops.repeat(x, self.size, axis=1)
            x = ops.repeat(x, self.size, axis=2)
        return self.conv(x)

    def _subpixel_call(self, inputs):
        """``conv(reflect_pad(repeat2(x)))`` (``size=2``, ``kernel_size=3``) computed
        at the input resolution: one 2x2 convolution of ``x`` edge-padded by one pixel
        with the four phase kernels stacked as ``4 * filters`` channels, a
        depth-to-space and a one-pixel crop. Same output shape and values (to float
        rounding). Derivation: docs/design/network.md.
        """
        kernel = self.conv.kernel

        def fold(k, axis):
            # Plain indexing, not ops.take: its TensorFlow gradient is sparse.
            k0, k1, k2 = (k[(slice(None),) * axis + (i,)] for i in range(3))
            return (
                ops.stack([k0 + k1, k2], axis=axis),  # odd output pixel 2j-1
                ops.stack([k0, k1 + k2], axis=axis),  # even output pixel 2j
            )

        phases = []
        for rows in fold(kernel, 0):
            phases.extend(fold(rows, 1))
        kernel = ops.concatenate(phases, axis=-1)  # (2, 2, in, 4 * filters)

        x = ops.conv(_edge_pad_1(inputs), kernel, padding="valid")
        if self.conv.bias is not None:
            x = x + ops.tile(self.conv.bias, [4])
        x = ops.depth_to_space(x, 2)
        return x[:, 1:-1, 1:-1]

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(self._upsampled_shape(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update(
            {"filters": self.filters, "kernel_size": self.kernel_size, "size": self.size}
        )
        return config
