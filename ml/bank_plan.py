"""What a bank run trains: its slots, which painting each slot learns, and for a slot
fine-tune the bank it starts from.

Every network is a bank (``ml.bank``). One trained from scratch has one slot per
painting plus slot 0, the identity: a lone painting (``--style``) is a bank of the
identity and itself, so strength and the identity work the same for every style. A slot
fine-tune (``--init-weights BANK --train-slot N``) loads the bank,
grows it by one slot when ``N`` is the next free one, and paints only slot ``N``; its
:class:`BankPlan` carries the bank's weights and shape, which the run keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ml import bank
from ml.config import TrainConfig

__all__ = ["BankPlan", "bank_plan", "paintings_of"]


def paintings_of(config: TrainConfig) -> list[str]:
    """The paintings a run learns, in slot order (slot ``i + 1`` learns painting ``i``):
    ``paintings``, or the lone ``painting``."""
    return list(config.paintings) or [config.painting]


@dataclass
class BankPlan:
    """What a bank run trains: how many slots, which slot has which painting, and
    for a slot fine-tune the (grown) starting weights everything else keeps."""

    num_styles: int
    painting_of_slot: list[int]
    base_weights: list[np.ndarray] | None = None  # fine-tune: the bank it starts from
    architecture: dict | None = None  # fine-tune: the bank's shape and norms

    def applied_to(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the network shape of the bank being fine-tuned."""
        return config.replace(**self.architecture) if self.architecture else config

    @property
    def choices(self) -> list[int]:
        """The slots examples are drawn from."""
        if self.base_weights is None:
            return list(range(self.num_styles))
        return [slot for slot, painting in enumerate(self.painting_of_slot) if painting >= 0]


def bank_plan(config: TrainConfig) -> BankPlan:
    """The bank ``config`` trains: its paintings (``paintings``, or the lone ``painting``)
    after the identity slot, or one slot of the bank in ``init_weights``
    (``train_slot``)."""
    if config.train_slot is None:
        paintings = paintings_of(config)
        return BankPlan(len(paintings) + 1, [-1, *range(len(paintings))])
    from ml.model import TransformNet  # registers the class load_model looks up

    try:
        start = keras.saving.load_model(config.init_weights, compile=False)
    except (TypeError, ValueError) as error:  # e.g. saved before every network was a bank
        raise ValueError(f"{config.init_weights} cannot be loaded as a bank ({error}): train "
                         "its paintings again") from error
    if not isinstance(start, TransformNet):
        raise ValueError(f"{config.init_weights} is not a TransformNet")
    slot = config.train_slot
    if slot > start.num_styles:
        raise ValueError(f"the bank has {start.num_styles} slots: --train-slot may be at "
                         f"most {start.num_styles} (the next free one), got {slot}")
    if slot == start.num_styles:
        start = bank.grow(start, slot + 1)
    painting_of_slot = [-1] * start.num_styles
    painting_of_slot[slot] = 0
    shape = ("width", "num_residual_blocks", "output_kernel_size", "norm_clip_z", "edge_margin")
    return BankPlan(start.num_styles, painting_of_slot,
                    [np.asarray(w, np.float32) for w in start.get_weights()],
                    {name: getattr(start, name) for name in shape})
