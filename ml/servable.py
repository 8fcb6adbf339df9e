"""What a servable version records: its slots and how it was trained.

``ml.train.train_servable`` trains a config and exports the network as the next version
under a Serving model's folder (``ml.export.export_savedmodel``), with its
``slots.json``: the identity (:data:`IDENTITY_SLOT`), then each painted slot
(:func:`painted_slot`) with how it was trained (:func:`settings_record`).
``python -m ml.train ... --export-to serving/models/<name>`` names the slots after the
paintings (:func:`described_slots`); the web app (``stylize.services.training``) after
its styles, and then adds its rows and makes the version live. No Django here.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml.config import TrainConfig
    from ml.train import TrainResult

__all__ = [
    "IDENTITY_SLOT",
    "ServableVersion",
    "described_slots",
    "painted_slot",
    "settings_record",
]

#: ``slots.json``'s description of slot 0, the photo itself.
IDENTITY_SLOT = {"slug": None, "name": "The photo itself", "identity": True}

#: The config fields a version's record leaves out: where this machine kept the files.
_LOCAL_PATHS = ("painting", "out_dir", "paintings", "init_weights")


@dataclass(frozen=True)
class ServableVersion:
    """One trained, exported version: the run's result, the version number and folder
    under the model's folder, and how it was trained (:func:`settings_record`)."""

    result: TrainResult
    version: int
    path: Path
    record: dict

    @property
    def num_styles(self) -> int:
        return self.result.model.num_styles


def settings_record(result: TrainResult) -> dict:
    """How a version was trained (``result.config``: the settings as trained, the
    machine's paths left out), as ``slots.json`` and the web app's styles record it."""
    config = result.config
    return {
        **{k: v for k, v in config.as_dict().items() if k not in _LOCAL_PATHS},
        "painting_size": config.painting_size,
        "precision": result.precision,
        "steps_done": result.steps,
        "seconds": round(result.seconds, 1),
        "skipped_photos": result.skipped_photos,
        "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


def painted_slot(slug: str, name: str, painting: str, record: dict) -> dict:
    """``slots.json``'s description of a painted slot: its style, the painting's file
    name and how the version trained it."""
    return {"slug": slug, "name": name, "painting": painting, "settings": record}


def described_slots(config: TrainConfig, record: dict) -> list[dict]:
    """The slots of what ``config`` trains, named after the painting files: for a joint
    run the identity and each painting (its file's stem as slug and name); for a slot
    fine-tune (``train_slot``) the slots of the version ``init_weights`` came from
    (its ``slots.json`` beside it), that slot described anew."""
    from ml.bank_plan import paintings_of  # Keras: the web process imports this module
    from ml.export import read_slots

    if config.train_slot is None:
        return [IDENTITY_SLOT] + [painted_slot(Path(p).stem, Path(p).stem, Path(p).name, record)
                                  for p in paintings_of(config)]
    beside = read_slots(Path(config.init_weights).parent)
    if beside is None:
        raise ValueError(f"{config.init_weights} has no slots.json beside it: export the "
                         "bank it fine-tunes first")
    slots = [{k: v for k, v in slot.items() if k != "slot"} for slot in beside["slots"]]
    painting = Path(config.painting)
    tuned = painted_slot(painting.stem, painting.stem, painting.name, record)
    return [*slots[:config.train_slot], tuned, *slots[config.train_slot + 1:]]
