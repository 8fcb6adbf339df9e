"""Banks: many styles in one conditional TransformNet, and the operations on them.

A bank is a :class:`ml.model.TransformNet` with ``num_styles = S > 1``. Slot 0
(:data:`IDENTITY_SLOT`) is trained on the content loss only, so it gives the photo
back; slots ``1 … S-1`` are paintings. Every convolution is shared; each slot owns
one row of every :class:`ml.layers.ConditionalInstanceNormalization`'s ``scale``
and ``offset``.

- :class:`BankSlot` is where one style is painted (a model version, a slot of it or a
  user's own row): :meth:`BankSlot.inputs` builds a job's model inputs, so no caller
  asks which kind of style or model it has;
- :func:`mix_weights` builds the ``style_weights`` row of a job (strength and blend);
- :func:`grow` adds empty slots (a new style joins a trained bank);
- :func:`freeze_all_but_style_norms` leaves only the per-style rows trainable;
- :func:`splice_slot` takes one slot from a fine-tuned copy and everything else from
  the original, so the other slots' outputs stay bit-identical;
- :func:`slot_params` reads one slot as a ``style_params`` row (a style that lives
  outside the bank, a user's own: docs/design/own-styles.md), :func:`params_mix` builds
  a job's weights and row share for such a style, and :func:`shared_digest` names the
  shared weights, so a row learnt on one version is known to fit another.

Importing this module does not import Keras (the web process and a job's set-up need
only :func:`mix_weights`); the functions that take a network import it themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ml.layers import ConditionalInstanceNormalization

__all__ = [
    "IDENTITY_SLOT",
    "BankSlot",
    "CannotMix",
    "PaintInputs",
    "freeze_all_but_style_norms",
    "grow",
    "mix_weights",
    "one_hot",
    "params_mix",
    "shared_digest",
    "slot_params",
    "splice_slot",
    "style_norms",
]

IDENTITY_SLOT = 0


def one_hot(slots, num_styles: int) -> np.ndarray:
    """float32 ``(len(slots), num_styles)`` with a 1 at each slot."""
    slots = np.asarray(slots, dtype=np.int64).reshape(-1)
    if slots.size and (slots.min() < 0 or slots.max() >= num_styles):
        raise ValueError(f"slots must be in 0..{num_styles - 1}, got {slots.tolist()}")
    return np.eye(num_styles, dtype=np.float32)[slots]


def _check_mix(num_styles, strength, blend, slot, blend_slot) -> None:
    """ValueError unless a bank of ``num_styles`` can paint ``slot`` (None: a
    ``style_params`` row) at ``strength``, mixed with ``blend_slot`` at ``blend``, as
    :func:`mix_weights` and :func:`params_mix` need."""
    if num_styles < 2:
        raise ValueError(f"a bank has the identity slot and at least one style, not {num_styles}")
    if not 0.0 <= strength <= 1.0 or not 0.0 <= blend <= 1.0:  # NaN fails too
        raise ValueError(f"strength and blend must be within [0, 1], got {strength}, {blend}")
    if blend and blend_slot is None:
        raise ValueError("a blend needs a second slot")
    for index in (slot, blend_slot):
        if index is not None and not IDENTITY_SLOT < index < num_styles:
            raise ValueError(f"style slots are 1..{num_styles - 1}, got {index}")


def mix_weights(num_styles: int, slot: int, *, strength: float = 1.0,
                blend_slot: int | None = None, blend: float = 0.0) -> np.ndarray:
    """The ``style_weights`` row that paints ``slot`` at ``strength``, mixed with
    ``blend_slot`` at share ``blend``: ``(1 - strength)`` on the identity slot, the rest
    split between the two styles. float32 ``(num_styles,)``, summing to 1."""
    _check_mix(num_styles, strength, blend, slot, blend_slot)
    weights = np.zeros(num_styles, dtype=np.float32)
    weights[IDENTITY_SLOT] = 1.0 - strength
    weights[slot] += strength * (1.0 - blend)
    if blend_slot is not None:
        weights[blend_slot] += strength * blend
    return weights


class CannotMix(ValueError):
    """Two styles that do not share a network's slots cannot be mixed."""


@dataclass(frozen=True)
class PaintInputs:
    """What one model call needs to paint a photo in a style: ``style_weights`` (float32
    ``(S,)``) and ``style_params`` (a user's own row times its share, or None). Strength
    and mixing are in them: nothing is left to do on the pixels."""

    style_weights: np.ndarray
    style_params: np.ndarray | None


@dataclass(frozen=True, eq=False)
class BankSlot:
    """Where one style is painted: version ``version`` of the network ``model``, which
    has ``slots`` slots (slot 0 the identity), in slot ``index`` — or, for a user's own
    style (``index`` None), with its own ``row`` of γ and β learnt on that version.
    """

    model: str
    version: int
    slots: int
    index: int | None = None
    row: np.ndarray | None = None

    @property
    def call_key(self) -> tuple:
        """Styles with the same key are painted in one batched model call: the same
        network version, through the same signature (a row or slot weights)."""
        return (self.model, self.version, self.row is not None)

    def mixes_with(self, other: BankSlot) -> bool:
        """Whether ``other`` is a painted slot of the network this style is painted
        with (a second style of a job's mix)."""
        return (other.model == self.model and other.index is not None
                and IDENTITY_SLOT < other.index < self.slots)

    def inputs(self, *, strength: float = 1.0, blend_with: BankSlot | None = None,
               blend: float = 0.0) -> PaintInputs:
        """The model inputs that paint this style at ``strength`` (0 gives the photo
        back), mixed with ``blend_with`` at share ``blend``. ``CannotMix`` if
        ``blend_with`` is not a slot of this network, ``ValueError`` for a strength or
        blend outside [0, 1]."""
        if blend_with is not None and not self.mixes_with(blend_with):
            raise CannotMix(f"{blend_with.model} slot {blend_with.index} is not a style of "
                            f"{self.model}'s {self.slots} slots")
        blend_slot = None if blend_with is None else blend_with.index
        blend = blend if blend_with is not None else 0.0
        if self.row is not None:
            weights, share = params_mix(self.slots, strength=strength, blend_slot=blend_slot,
                                        blend=blend)
            return PaintInputs(weights, (share * self.row).astype(np.float32))
        return PaintInputs(mix_weights(self.slots, self.index, strength=strength,
                                       blend_slot=blend_slot, blend=blend), None)


def style_norms(net) -> list[ConditionalInstanceNormalization]:
    """Every conditional normalisation of ``net``, in a fixed order."""
    from ml.layers import ConditionalInstanceNormalization

    return [layer for layer in net._flatten_layers(include_self=False)
            if isinstance(layer, ConditionalInstanceNormalization)]


def _check_bank(net) -> None:
    if getattr(net, "num_styles", 1) < 2:
        raise ValueError("expected a bank (a TransformNet with num_styles > 1)")


def grow(net, num_styles: int):
    """A built copy of bank ``net`` with ``num_styles`` slots (at least as many).

    Existing slots keep their maps; each new slot starts as the mean of the painted
    slots (``1 …``), a painting-like start that fine-tuning moves to its own style.
    """
    from ml.model import TransformNet

    _check_bank(net)
    if num_styles < net.num_styles:
        raise ValueError(f"cannot shrink a bank of {net.num_styles} slots to {num_styles}")
    config = {**net.get_config(), "num_styles": num_styles}
    config.pop("name", None)
    grown = TransformNet.from_config(config)
    grown.build((None, None, None, 3))
    for target, source in zip(grown.weights, net.weights):
        value = np.asarray(source.numpy())
        if target.shape != value.shape:  # a conditional norm's (slots, channels) map
            extra = value[1:].mean(axis=0, keepdims=True)
            value = np.concatenate([value, np.repeat(extra, num_styles - len(value), axis=0)])
        target.assign(value)
    return grown


def freeze_all_but_style_norms(net) -> None:
    """Make every layer of ``net`` untrainable except its conditional norms."""
    from ml.layers import ConditionalInstanceNormalization

    _check_bank(net)
    for layer in net._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, ConditionalInstanceNormalization):
            layer.trainable = True
        elif not layer._layers:  # a leaf layer that owns variables (a convolution)
            layer.trainable = False


def splice_slot(original_weights: list[np.ndarray], tuned_net, slot: int) -> list[np.ndarray]:
    """``original_weights`` (of a net shaped like ``tuned_net``) with row ``slot`` of
    every conditional norm taken from ``tuned_net``: only that slot changes."""
    _check_bank(tuned_net)
    norm_paths = {variable.path for layer in style_norms(tuned_net) for variable in layer.weights}
    spliced = []
    for original, variable in zip(original_weights, tuned_net.weights):
        value = np.array(original, copy=True)
        if variable.path in norm_paths:
            value[slot] = np.asarray(variable.numpy(), dtype=value.dtype)[slot]
        spliced.append(value)
    return spliced


def params_mix(num_styles: int, *, strength: float = 1.0, blend_slot: int | None = None,
               blend: float = 0.0) -> tuple[np.ndarray, float]:
    """How a style given as a ``style_params`` row is painted at ``strength``, mixed with
    slot ``blend_slot`` at share ``blend``: ``(style_weights, share)``, the weights
    ``(num_styles,)`` float32 holding the identity slot's ``1 - strength`` and the other
    style's ``strength * blend``, and ``share`` (``strength * (1 - blend)``) the factor
    of the row itself. Weights and share sum to 1, as :func:`mix_weights`' do."""
    _check_mix(num_styles, strength, blend, None, blend_slot)
    weights = np.zeros(num_styles, dtype=np.float32)
    weights[IDENTITY_SLOT] = 1.0 - strength
    if blend_slot is not None:
        weights[blend_slot] += strength * blend
    return weights, float(strength * (1.0 - blend))


def slot_params(net, slot: int) -> np.ndarray:
    """Slot ``slot`` of bank ``net`` as one ``style_params`` row (float32
    ``(net.style_params_size,)``): every norm's scale then offset, in the order of
    ``net.style_norm_layers()``. ``net(x, style_params=row)`` paints what the one-hot
    weights of the slot paint."""
    _check_bank(net)
    if not 0 <= slot < net.num_styles:
        raise ValueError(f"the bank has slots 0..{net.num_styles - 1}, not {slot}")
    parts = []
    for norm in net.style_norm_layers():
        scale, offset = (np.asarray(w.numpy(), np.float32) for w in (norm.scale, norm.offset))
        parts += [scale[slot], offset[slot]]
    return np.concatenate(parts)


def shared_digest(net) -> str:
    """A SHA-256 (hex) of every weight of bank ``net`` but its per-style rows: equal for
    two versions whose shared convolutions are the same, so a row learnt on one paints
    the same on the other (a slot fine-tune keeps it; a joint retrain changes it)."""
    _check_bank(net)
    norm_paths = {variable.path for layer in style_norms(net) for variable in layer.weights}
    digest = hashlib.sha256()
    for variable in net.weights:
        if variable.path in norm_paths:
            continue
        value = np.ascontiguousarray(np.asarray(variable.numpy(), np.float32))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


#: The loss settings a bank records for its painted slots (``slots.json``'s ``settings``)
#: that a new slot of it learns with too (:func:`slot_loss_settings`).
SLOT_LOSS_SETTINGS = ("content_weight", "style_weight", "style_layer_weights", "style_size",
                      "light_weight", "light_size", "edge_weight", "edge_size", "spot_weight",
                      "saturation_weight", "spike_weight", "shadow_weight")


def slot_loss_settings(slots: dict, style_scale: float = 1.0) -> dict:
    """The loss settings (:data:`SLOT_LOSS_SETTINGS`) the bank's painted slots were
    trained with, from ``slots.json`` (``slots``: ``ml.export.read_slots``'s dict): the
    first painted slot that records them, its style weight times ``style_scale`` (as the
    bank run scales a painting's, ``style.json``'s ``style_scale``). A new slot (a user's
    own style) learns with the balance its neighbours were trained to, not the
    single-style defaults. ``{}`` when the bank records none."""
    for slot in slots.get("slots", []):
        recorded = slot.get("settings") or {}
        if not slot.get("identity") and recorded:
            found = {name: recorded[name] for name in SLOT_LOSS_SETTINGS
                     if recorded.get(name) is not None}
            if "style_weight" in found:
                found["style_weight"] = found["style_weight"] * style_scale
            return found
    return {}
