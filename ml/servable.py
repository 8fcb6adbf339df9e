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
    "painting_slug",
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
    slots: list[dict]  # as slots.json describes them, slot 0 first

    @property
    def num_styles(self) -> int:
        return len(self.slots)


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


def painting_slug(painting) -> str:
    """The slug a painting file names: its stem, or its folder's name for a file called
    ``painting`` (``training/bank/styles/<slug>/painting.png``)."""
    path = Path(painting)
    return path.parent.name if path.stem == "painting" and path.parent.name else path.stem


def with_slot(slots: list[dict], slot: int, description: dict) -> list[dict]:
    """A version's slots (``slots.json``'s list) with slot ``slot`` described anew, or
    added after the last; their ``slot`` numbers dropped (the export numbers them)."""
    kept = [{k: v for k, v in entry.items() if k != "slot"} for entry in slots]
    return [*kept[:slot], description, *kept[slot + 1:]]


def fine_tuned_slots(init_weights) -> list[dict]:
    """The slots of the version a fine-tune starts from (``slots.json`` beside
    ``init_weights``); ``ValueError`` if it has none."""
    from ml.export import read_slots

    beside = read_slots(Path(init_weights).parent)
    if beside is None:
        raise ValueError(f"{init_weights} has no slots.json beside it: export the bank it "
                         "fine-tunes first")
    return beside["slots"]


def described_slots(config: TrainConfig, record: dict) -> list[dict]:
    """The slots of what ``config`` trains, named after the painting files
    (:func:`painting_slug`): for a joint run the identity and each painting; for a slot
    fine-tune (``train_slot``) the slots of the version ``init_weights`` came from (its
    ``slots.json`` beside it), that slot's painting and settings anew (its slug and name
    kept; a new slot named after its painting). ``ValueError`` if two slots would share a
    slug."""
    from ml.bank_plan import paintings_of  # Keras: the web process imports this module

    if config.train_slot is None:
        slots = [IDENTITY_SLOT] + [
            painted_slot(painting_slug(p), painting_slug(p), Path(p).name, record)
            for p in paintings_of(config)]
    else:
        before = fine_tuned_slots(config.init_weights)
        slot, painting = config.train_slot, Path(config.painting)
        old = before[slot] if slot < len(before) else {}
        slug = old.get("slug") or painting_slug(painting)
        slots = with_slot(before, slot,
                          painted_slot(slug, old.get("name") or slug, painting.name, record))
    slugs = [slot["slug"] for slot in slots if slot.get("slug")]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"two slots would share a slug ({', '.join(slugs)}): name the "
                         "painting files apart")
    return slots
