"""The Keras model that ``fit`` optimises, and how a run's is built.

:class:`StyleTrainer` wraps the transform net in a small ``keras.Model`` whose
``compute_loss`` is the perceptual loss (``ml.losses``), so Keras' own ``fit`` trains it
on the tensorflow, jax and torch backends. :func:`build_trainer` builds and compiles the
one of a :class:`ml.config.TrainConfig`: the net in the run's precision
(``ml.precision``), a bank's slots (``ml.bank_plan``), the loss, and Adam on
:func:`learning_rate`. :func:`float32_copy` is the trained net as it is saved.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ml import bank
from ml.bank_plan import BankPlan, bank_plan, paintings_of
from ml.config import TrainConfig
from ml.losses import LOSS_NAMES, spike_loss
from ml.model import to_pixels
from ml.precision import resolve_precision

__all__ = [
    "SATURATION_LIMIT",
    "LatestValue",
    "StyleTrainer",
    "build_perceptual_loss",
    "build_trainer",
    "build_transform_net",
    "float32_copy",
    "learning_rate",
]


class LatestValue(keras.metrics.Metric):
    """A metric that reports the value of the last step (not a running mean).

    ``fit`` resets metrics only per epoch; the divergence check and the per-step
    logs need each step's own value.
    """

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="value")

    def update_state(self, value):
        self.value.assign(ops.cast(value, "float32"))

    def result(self):
        return ops.convert_to_tensor(self.value)  # a tensor, not the variable (jax jit)

    def reset_state(self):
        self.value.assign(0.0)


#: Past this, ``tanh`` of the net's last convolution is within 0.7 % of ±1 (pixels
#: under 1.7 or over 253.3 levels): the saturation term's threshold.
SATURATION_LIMIT = 2.5


class StyleTrainer(keras.Model):
    """Wraps the transform net so ``fit`` optimises the perceptual loss.

    Its metrics are every weighted loss term (``perceptual_loss.term_names``) and the
    output image's mean and standard deviation: on TF's CPU kernels a NaN image can
    still give finite VGG losses, so the image itself must be watched.

    Every net is a bank (``ml.bank_plan``): ``painting_of_slot`` maps each slot to its
    painting in the loss (``-1``: the identity slot: no style term, and the ``identity``
    term, its mean squared pixel error against the photo times ``identity_weight``), and
    ``fit`` feeds ``((photos, slots), style_scale)``.
    """

    def __init__(self, transform_net, perceptual_loss, painting_of_slot,
                 identity_weight=0.0, painting_style_scales=None, saturation_weight=0.0,
                 spike_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        self.saturation_weight = float(saturation_weight)
        self.spike_weight = float(spike_weight)
        self.transform_net = transform_net
        self.perceptual_loss = perceptual_loss
        self.painting_of_slot = np.asarray(painting_of_slot, np.int32)
        # Each painting's multiplier of the style weight (1 each by default).
        count = int(self.painting_of_slot.max()) + 1
        scales = np.ones(count, np.float32) if not painting_style_scales else np.asarray(
            painting_style_scales, np.float32)
        if scales.shape != (count,):
            raise ValueError(f"painting_style_scales needs {count} numbers, got {len(scales)}")
        self.painting_style_scales = scales
        self.identity_weight = float(identity_weight)
        # Tracked as an attribute so its (frozen) VGG variables are part of the
        # model state that the jax backend passes through its stateless step.
        self.loss_network = perceptual_loss.loss_network
        self.term_names = (*getattr(perceptual_loss, "term_names", LOSS_NAMES), "identity")
        if self.saturation_weight:
            self.term_names += ("saturation",)
        if self.spike_weight:
            self.term_names += ("spike",)
        self.trackers = {
            name: LatestValue(name=name) for name in (*self.term_names, "output_mean", "output_std")
        }

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        """The pictures; in training with a ``saturation_weight`` or a ``spike_weight``,
        ``(pictures, logits, inner maps)`` (``TransformNet.trace``) for those terms."""
        images, slots = inputs
        args = [images, ops.one_hot(slots, self.transform_net.num_styles)]
        if not (training and (self.saturation_weight or self.spike_weight)):
            return self.transform_net(*args, training=training)
        logits, inner = self.transform_net.trace(*args, training=True)
        return to_pixels(logits), logits, inner

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``y`` is the style scale of each example (the warm-up ramp; see ``fit_input``).

        With a ``saturation_weight``, the ``saturation`` term is that weight times the
        mean of ``max(0, |logit| - SATURATION_LIMIT)²``: where the last convolution goes
        past :data:`SATURATION_LIMIT` the picture is flat black or white (a blob) and
        tanh passes no gradient back from any other term; this one pulls it back.

        With a ``spike_weight``, the ``spike`` term is that weight times the batch mean of
        ``ml.losses.spike_loss`` of the net's inner maps: no droplets."""
        logits = inner = None
        if isinstance(y_pred, (tuple, list)):
            y_pred, logits, inner = y_pred
        stylized = ops.cast(y_pred, "float32")
        photos, slots = x
        painting = ops.take(ops.convert_to_tensor(self.painting_of_slot), slots)
        # Identity examples (painting -1) get no style term, and the painted ones share
        # the batch's style weight, as if the batch were theirs alone.
        painted = ops.cast(painting >= 0, "float32")
        share = ops.cast(ops.shape(painted)[0], "float32") / ops.maximum(ops.sum(painted), 1.0)
        scale = ops.cast(y, "float32") * painted * share * ops.take(
            ops.convert_to_tensor(self.painting_style_scales), ops.maximum(painting, 0))
        photos = ops.cast(photos, "float32")
        terms = self.perceptual_loss(photos, stylized, style_scale=scale,
                                     style_index=ops.maximum(painting, 0))
        # Slot 0 must give the photo back (strength interpolates towards it): the
        # content loss alone leaves its colours free (docs/design/banks.md).
        # (where, not a product: a painted example's error never reaches this term.)
        pixel_error = ops.mean(ops.square(stylized - photos), axis=(1, 2, 3))
        terms["identity"] = self.identity_weight * ops.mean(
            ops.where(painting < 0, pixel_error, 0.0))
        terms["total"] = terms["total"] + terms["identity"]
        if self.saturation_weight and logits is not None:
            excess = ops.relu(ops.abs(ops.cast(logits, "float32")) - SATURATION_LIMIT)
            terms["saturation"] = self.saturation_weight * ops.mean(ops.square(excess))
            terms["total"] = terms["total"] + terms["saturation"]
        if self.spike_weight and inner is not None:
            terms["spike"] = self.spike_weight * ops.mean(spike_loss(inner))
            terms["total"] = terms["total"] + terms["spike"]
        for name in self.term_names:
            self.trackers[name].update_state(terms[name])
        self.trackers["output_mean"].update_state(ops.mean(stylized))
        self.trackers["output_std"].update_state(ops.std(stylized))
        return terms["total"]

    @property
    def painted_slots(self) -> list[int]:
        """The slots this run paints (with a painting in the loss)."""
        return [int(s) for s in np.flatnonzero(self.painting_of_slot >= 0)]

    def preview(self, photos) -> np.ndarray:
        """The net's output for ``photos`` (float32): photo ``i`` painted in the
        ``i``-th painted slot, cycling, so samples and checks see every style."""
        painted = self.painted_slots
        slots = [painted[i % len(painted)] for i in range(len(photos))]
        weights = bank.one_hot(slots, self.transform_net.num_styles)
        return np.asarray(ops.convert_to_numpy(self.transform_net(photos, weights)), np.float32)


def build_transform_net(config: TrainConfig, num_styles: int, dtype=None) -> keras.Model:
    """A built ``TransformNet`` of ``config``'s shape with ``num_styles`` slots, in the
    dtype policy ``dtype`` (default: Keras' global one); its weights are fresh."""
    from ml.model import TransformNet

    kwargs = {"dtype": dtype} if dtype else {}
    net = TransformNet(
        width=config.width,
        num_residual_blocks=config.num_residual_blocks,
        output_kernel_size=config.output_kernel_size,
        num_styles=num_styles,
        norm_clip_z=config.norm_clip_z,
        edge_margin=config.edge_margin,
        **kwargs,
    )
    net.build((None, None, None, 3))
    return net


def build_perceptual_loss(config: TrainConfig, dtype=None):
    """``config``'s ``PerceptualLoss``: its paintings, loss network and term weights."""
    from ml.losses import PerceptualLoss, build_loss_network

    network = config.loss_network
    weights = {
        name: getattr(config, name)
        for name in ("content_weight", "style_weight", "tv_weight", "style_layer_weights")
        if getattr(config, name) is not None
    }
    return PerceptualLoss(
        paintings_of(config),
        network=network,
        style_size=config.painting_size,
        # Its default layers: the network's style layers and content layer.
        loss_network=build_loss_network(network, config.loss_weights, dtype=dtype),
        light_weight=config.light_weight,
        light_size=config.light_size,
        edge_weight=config.edge_weight,
        edge_size=config.edge_size,
        spot_weight=config.spot_weight,
        shadow_weight=config.shadow_weight,
        **weights,
    )


def build_trainer(config: TrainConfig, plan: BankPlan | None = None) -> StyleTrainer:
    """The compiled trainer of ``config``; ``plan`` is its :func:`bank_plan` if known
    (then ``config`` must already carry its shape: ``plan.applied_to(config)``)."""
    policy = resolve_precision(config)
    dtype = None if policy == "float32" else policy
    if plan is None:
        plan = bank_plan(config)
        config = plan.applied_to(config)
    net = build_transform_net(config, plan.num_styles, dtype=dtype)
    if plan.base_weights is not None:
        net.set_weights(plan.base_weights)
        bank.freeze_all_but_style_norms(net)
    trainer = StyleTrainer(net, build_perceptual_loss(config, dtype=dtype),
                           painting_of_slot=plan.painting_of_slot,
                           identity_weight=config.identity_weight,
                           saturation_weight=config.saturation_weight,
                           spike_weight=config.spike_weight,
                           painting_style_scales=(config.painting_style_scales
                                                  if plan.base_weights is None else None),
                           **({"dtype": dtype} if dtype else {}))
    # A mixed_float16 trainer gets a LossScaleOptimizer from compile().
    trainer.compile(optimizer=keras.optimizers.Adam(
        learning_rate=learning_rate(config), global_clipnorm=config.clipnorm))
    # Built here, not inside the first traced step: that would trace it twice,
    # and load_checkpoint needs the optimizer variables to exist.
    trainer.optimizer.build(trainer.trainable_variables)
    trainer.precision = policy
    return trainer


def learning_rate(config: TrainConfig):
    """``config.lr``, or a cosine decay from it to a tenth of it over ``config.steps``.

    The schedule runs on the optimizer's iteration count, which checkpoints keep, so a
    resumed run continues where it left off.
    """
    if config.lr_schedule == "constant":
        return config.lr
    return keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=config.steps, alpha=0.1)


def float32_copy(config: TrainConfig, net: keras.Model) -> keras.Model:
    """The trained net as a float32 model (what is exported and served)."""
    if net.dtype_policy.name == "float32":
        return net
    copy = build_transform_net(config, net.num_styles)
    copy.set_weights([np.asarray(w, dtype=np.float32) for w in net.get_weights()])
    return copy
