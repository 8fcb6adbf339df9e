"""The image transform network of Johnson et al. 2016 as a Keras 3 model.

Architecture (``width=1``)::

    9x9 conv 32 -> 3x3/2 conv 64 -> 3x3/2 conv 128 -> 5 residual blocks of 128
    -> upsample x2 + 3x3 conv 64 -> upsample x2 + 3x3 conv 32 -> 9x9 conv 3

All convolutions are reflection padded; instance normalisation and ReLU
follow every convolution but the last; the last is mapped to [0, 255] with
``(tanh(x) + 1) * 127.5``.

Every network is a *bank* of ``num_styles = S >= 2`` slots: every instance
normalisation is conditional (one scale and offset per slot, Dumoulin et al. 2017)
and the net is called with ``style_weights`` ``(batch, S)`` that mix them; all
convolutions are shared. Slot 0 is trained as the identity (the photo itself), so
weights ``(1 - s) * onehot(0) + s * onehot(k)`` give style ``k`` at strength ``s``; a
lone style is a bank of the identity and itself (``S = 2``). The net also takes
``style_params`` ``(batch, style_params_size)``: every conditional norm's scale and
offset given explicitly, one row per image (a style that is no slot of the bank, e.g.
a user's own: docs/design/own-styles.md), added to the slots' mix when
``style_weights`` come too.

Inputs are float32 NHWC RGB images in [0, 255] of any height and width. The
two stride-2 convolutions need sizes that are multiples of 4 to come back to
the same size, so the network pads the input by reflection on the bottom and
right edges to the next multiple of 4 (at most 3 pixels) and crops the output
back to the input size. Reflection matches the padding used by every
convolution. Inputs must be at least 5 pixels on each side.

A trained net can still paint its outermost rows differently from the rest (a
line of neon dashes along the top edge, stripes down the sides): nothing in
training asks the edge of a crop to look like its inside. With ``edge_margin=m``
the net, when not training, first extends the picture by ``m`` pixels of
reflection on every side and crops them off its result, so whatever it paints
at an edge falls outside the photo (at most one pixel less than the picture's
side, rounded down to a multiple of 4; measurements: docs/design/network.md).
Training runs without it: the margin only costs time there.

Why some of it is built the way it is, and timings: docs/design/network.md.
"""

from __future__ import annotations

import keras
from keras import ops

from ml.layers import (
    ConditionalInstanceNormalization,
    ReflectionConv2D,
    ResidualBlock,
    UpsampleConv2D,
    _non_negative_int,
    _slot_count,
    apply_norm,
)

__all__ = ["TransformNet"]

# Filter counts of the full-width network (Johnson et al. 2016, table 1).
BASE_FILTERS = (32, 64, 128)
#: Height and width are padded to a multiple of this (two stride-2 convs).
SIZE_MULTIPLE = 4


def to_pixels(logits):
    """The network's last convolution mapped to [0, 255]: ``(tanh(x) + 1) * 127.5``."""
    return (ops.tanh(logits) + 1.0) * 127.5


@keras.saving.register_keras_serializable(package="prisma")
class TransformNet(keras.Model):
    """Feed-forward style transfer network.

    Args:
        width: multiplies every filter count (``0.5`` gives the half-width
            network of 16/32/64 channels). Counts are rounded, minimum 1.
        num_residual_blocks: number of residual blocks at the bottleneck.
        epsilon: epsilon of every instance normalisation.
        output_kernel_size: kernel of the last convolution, a positive odd
            integer. Johnson et al. use 9; the fast shipped styles use 3 (why and
            timings: docs/design/network.md).
        num_styles: slots, the identity (slot 0) included: at least 2.
        norm_clip_z: None, or robust statistics in every instance normalisation
            (``clip_z`` of :class:`ml.layers.ConditionalInstanceNormalization`).
        edge_margin: pixels of reflection added on every side of the picture outside
            training and cropped off the result (0: none).

    Call it on a float tensor ``(batch, height, width, 3)`` with RGB values in
    [0, 255] and ``style_weights`` ``(batch, num_styles)``, or ``style_params``
    ``(batch, style_params_size)``, or both (see
    :class:`ml.layers.ConditionalInstanceNormalization`); it returns a tensor of the
    same shape with values in [0, 255]. ``style_params`` is laid out norm by norm in
    the order of :meth:`style_norm_layers`, each norm's scale then its offset.

    Raises ``ValueError`` for a bad argument above, for inputs that are not
    ``(batch, height, width, 3)``, when neither ``style_weights`` nor ``style_params``
    come, and for a ``style_params`` row of the wrong length.
    """

    def __init__(
        self, width=1.0, num_residual_blocks=5, epsilon=1e-5, output_kernel_size=9,
        num_styles=2, norm_clip_z=None, edge_margin=0, **kwargs
    ):
        super().__init__(**kwargs)
        width = float(width)
        if not width > 0:
            raise ValueError(f"`width` must be > 0. Received: width={width}")
        self.width = width
        self.num_residual_blocks = _non_negative_int("num_residual_blocks",
                                                     num_residual_blocks)
        self.epsilon = float(epsilon)
        if (
            isinstance(output_kernel_size, bool)
            or not isinstance(output_kernel_size, int)
            or output_kernel_size < 1
            or output_kernel_size % 2 == 0
        ):
            raise ValueError(
                "`output_kernel_size` must be a positive odd integer. "
                f"Received: output_kernel_size={output_kernel_size!r}"
            )
        self.output_kernel_size = output_kernel_size
        self.num_styles = _slot_count(num_styles)
        self.norm_clip_z = None if norm_clip_z is None else float(norm_clip_z)
        self.edge_margin = _non_negative_int("edge_margin", edge_margin)

        f1, f2, f3 = (max(1, int(round(f * width))) for f in BASE_FILTERS)
        self.filters = (f1, f2, f3)
        eps = self.epsilon

        def norm(name):
            return ConditionalInstanceNormalization(num_styles, eps, clip_z=self.norm_clip_z,
                                                    name=name)

        self.conv_in = ReflectionConv2D(f1, 9, name="conv_in")
        self.norm_in = norm("norm_in")
        self.down1 = ReflectionConv2D(f2, 3, strides=2, name="down1")
        self.norm_down1 = norm("norm_down1")
        self.down2 = ReflectionConv2D(f3, 3, strides=2, name="down2")
        self.norm_down2 = norm("norm_down2")
        self.residual_blocks = [
            ResidualBlock(f3, 3, epsilon=eps, num_styles=num_styles, clip_z=self.norm_clip_z,
                          name=f"residual_{i + 1}")
            for i in range(num_residual_blocks)
        ]
        self.up1 = UpsampleConv2D(f2, 3, size=2, name="up1")
        self.norm_up1 = norm("norm_up1")
        self.up2 = UpsampleConv2D(f1, 3, size=2, name="up2")
        self.norm_up2 = norm("norm_up2")
        self.conv_out = ReflectionConv2D(3, output_kernel_size, name="conv_out")

    def build(self, inputs_shape, style_weights_shape=None, style_params_shape=None):
        input_shape = tuple(inputs_shape)
        if len(input_shape) != 4 or input_shape[-1] != 3:
            raise ValueError(
                "TransformNet expects (batch, height, width, 3) RGB inputs. "
                f"Received shape: {input_shape}"
            )
        f1, f2, f3 = self.filters
        batch = input_shape[0]
        shape = (batch, None, None, 3)
        self.conv_in.build(shape)
        self.norm_in.build((batch, None, None, f1))
        self.down1.build((batch, None, None, f1))
        self.norm_down1.build((batch, None, None, f2))
        self.down2.build((batch, None, None, f2))
        self.norm_down2.build((batch, None, None, f3))
        for block in self.residual_blocks:
            block.build((batch, None, None, f3))
        self.up1.build((batch, None, None, f3))
        self.norm_up1.build((batch, None, None, f2))
        self.up2.build((batch, None, None, f2))
        self.norm_up2.build((batch, None, None, f1))
        self.conv_out.build((batch, None, None, f1))
        self.built = True

    def style_norm_layers(self) -> list:
        """The network's normalisations in the order they run (and in which a
        ``style_params`` row lays out their scale and offset)."""
        blocks = [norm for block in self.residual_blocks for norm in (block.norm1, block.norm2)]
        return [self.norm_in, self.norm_down1, self.norm_down2, *blocks, self.norm_up1,
                self.norm_up2]

    @property
    def style_params_size(self) -> int:
        """Length of one image's ``style_params`` row: every norm's scale and offset."""
        f1, f2, f3 = self.filters
        return 2 * (2 * f1 + 2 * f2 + f3 * (1 + 2 * self.num_residual_blocks))

    def _split_params(self, style_params):
        """``style_params`` cut into (first norms, one row per residual block, last norms)."""
        f1, f2, f3 = self.filters
        sizes = [2 * f1, 2 * f2, 2 * f3, *[4 * f3] * self.num_residual_blocks, 2 * f2, 2 * f1]
        parts, start = [], 0
        for size in sizes:
            parts.append(style_params[:, start:start + size])
            start += size
        return parts

    def call(self, inputs, style_weights=None, style_params=None, training=None):
        return to_pixels(self.output_logits(inputs, style_weights, style_params, training))

    def output_logits(self, inputs, style_weights=None, style_params=None, training=None):
        """What :meth:`call` maps to [0, 255] with ``(tanh(x) + 1) * 127.5``: the last
        convolution's output, cropped to the input size. Where it goes far past ±3 the
        picture is flat black or white and no loss on the picture can move it back
        (tanh's gradient vanishes); training watches it (``ml.trainer``'s saturation
        term)."""
        return self.trace(inputs, style_weights, style_params, training)[0]

    def trace(self, inputs, style_weights=None, style_params=None, training=None):
        """``(logits, inner)``: :meth:`output_logits` and the inner feature maps, the
        residual stream after each residual block then the inputs of the two upsampling
        normalisations. An instance-normalised net can learn to put a strong spike into
        them, one spot that dominates a map's statistics and comes out as a blob of
        one colour with a halo (StyleGAN's droplets); training watches them
        (``ml.losses.spike_loss``). Outside training (``training`` not true) the
        picture is extended by the edge margin first, and the logits and every inner
        map are cropped back to the picture."""
        if style_weights is None and style_params is None:
            raise ValueError(
                f"This TransformNet is a bank of {self.num_styles} slots: call it with "
                "images and style_weights of shape (batch, num_styles), or style_params of "
                f"shape (batch, {self.style_params_size})."
            )
        w = style_weights
        if style_params is not None:
            if len(style_params.shape) != 2 or style_params.shape[-1] not in (
                    None, self.style_params_size):
                raise ValueError(
                    f"style_params must have shape (batch, {self.style_params_size}). "
                    f"Received shape: {tuple(style_params.shape)}")
            p_in, p_down1, p_down2, *p_blocks, p_up1, p_up2 = self._split_params(style_params)
        else:
            p_in = p_down1 = p_down2 = p_up1 = p_up2 = None
            p_blocks = [None] * self.num_residual_blocks
        x = ops.cast(inputs, self.compute_dtype)
        shape = ops.shape(x)
        height, width = shape[1], shape[2]
        if self.edge_margin and not training:
            # Reflection needs a margin under the side; a multiple of 4 keeps every
            # inner map's crop on whole pixels.
            top = ops.minimum(self.edge_margin, height - 1) // SIZE_MULTIPLE * SIZE_MULTIPLE
            left = ops.minimum(self.edge_margin, width - 1) // SIZE_MULTIPLE * SIZE_MULTIPLE
            x = ops.pad(x, [[0, 0], [top, top], [left, left], [0, 0]], mode="reflect")
        else:
            top = left = 0
        padded = ops.shape(x)
        pad_h = (SIZE_MULTIPLE - padded[1] % SIZE_MULTIPLE) % SIZE_MULTIPLE
        pad_w = (SIZE_MULTIPLE - padded[2] % SIZE_MULTIPLE) % SIZE_MULTIPLE
        x = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="reflect")

        x = x / 127.5 - 1.0  # [0, 255] -> [-1, 1]
        x = ops.relu(apply_norm(self.norm_in, self.conv_in(x), w, p_in))
        x = ops.relu(apply_norm(self.norm_down1, self.down1(x), w, p_down1))
        x = ops.relu(apply_norm(self.norm_down2, self.down2(x), w, p_down2))
        inner = []
        for block, params in zip(self.residual_blocks, p_blocks):
            x = block(x, w) if params is None else block(x, w, style_params=params)
            inner.append(x)
        for conv, norm, params in ((self.up1, self.norm_up1, p_up1),
                                   (self.up2, self.norm_up2, p_up2)):
            x = conv(x)
            inner.append(x)
            x = ops.relu(apply_norm(norm, x, w, params))
        x = self.conv_out(x)
        if self.edge_margin and not training:
            inner = [_crop(inner_map, top, left, height, width, ops.shape(x)[1]
                           // ops.shape(inner_map)[1]) for inner_map in inner]
        return x[:, top:top + height, left:left + width, :], inner

    def compute_output_shape(self, inputs_shape, style_weights_shape=None,
                             style_params_shape=None):
        return tuple(inputs_shape)

    @property
    def _default_save_signature(self):
        # Keras' TensorFlow backend traces a one-input default signature while a
        # SavedModel is written; the net takes two inputs, and ml.export defines the
        # serving signature itself.
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "width": self.width,
                "num_residual_blocks": self.num_residual_blocks,
                "epsilon": self.epsilon,
                "output_kernel_size": self.output_kernel_size,
                "num_styles": self.num_styles,
            }
        )
        if self.norm_clip_z is not None:
            config["norm_clip_z"] = self.norm_clip_z
        if self.edge_margin:
            config["edge_margin"] = self.edge_margin
        return config


def _crop(inner_map, top, left, height, width, scale):
    """The part of an inner map ``scale`` times smaller than the padded picture that
    covers the picture at ``top``, ``left`` of ``height`` x ``width`` px."""
    return inner_map[:, top // scale:(top + height + scale - 1) // scale,
                     left // scale:(left + width + scale - 1) // scale, :]
