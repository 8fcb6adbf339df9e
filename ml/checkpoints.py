"""Training checkpoints, written so that the last good one is never replaced by a bad one.

Layout under a run folder::

    checkpoints/latest.json                 {"step": N, "dir": "step-0000000N"}
    checkpoints/step-0000000N/transform_net.weights.h5
    checkpoints/step-0000000N/optimizer.npz  optimizer variables (Adam moments, iterations)
    checkpoints/step-0000000N/state.json     step, losses, config

A checkpoint is written to a temporary folder, checked (finite weights, a non-constant
finite output on the probe photos) and renamed; only then does ``latest.json`` move to
it. A fresh (not resumed) run first moves an earlier run's ``checkpoints/`` to
``checkpoints.previous/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

CHECKPOINT_WEIGHTS = "transform_net.weights.h5"
CHECKPOINT_OPTIMIZER = "optimizer.npz"
CHECKPOINT_STATE = "state.json"
LATEST = "latest.json"


class TrainingDiverged(RuntimeError):
    """Training produced NaN/inf, an exploding loss or a dead (NaN/constant) image."""

    def __init__(self, message: str, last_checkpoint: Path | None = None):
        super().__init__(message)
        self.last_checkpoint = last_checkpoint


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def latest_checkpoint(out_dir) -> Path | None:
    pointer = Path(out_dir) / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    return pointer.parent / json.loads(pointer.read_text())["dir"]


def output_stats(stylize, images) -> tuple[float, float]:
    """Mean and std of ``stylize(images)`` (a trainer's ``preview``)."""
    stylized = np.asarray(stylize(images), dtype=np.float32)
    return float(stylized.mean()), float(stylized.std())


def weights_finite(model) -> bool:
    return all(np.isfinite(np.asarray(v.numpy(), dtype=np.float32)).all() for v in model.weights)


def save_checkpoint(trainer, out_dir, step: int, state: dict, probe_images, monitor,
                    keep: int = 2) -> Path:
    """Write a checkpoint atomically after checking that the weights are healthy.

    ``trainer`` has ``transform_net``, ``optimizer`` and ``preview``; ``monitor`` gives the
    smallest output standard deviation that still counts as a live image.
    Raises ``TrainingDiverged`` (and writes nothing) when they are not healthy.
    """
    net = trainer.transform_net
    if not weights_finite(net):
        raise TrainingDiverged(f"step {step}: the weights hold NaN/inf; checkpoint not written")
    mean, std = output_stats(trainer.preview, probe_images)
    if not (math.isfinite(std) and std >= monitor.min_output_std):
        raise TrainingDiverged(
            f"step {step}: the output image is NaN or constant (mean {mean}, std {std}); "
            "checkpoint not written"
        )
    root = Path(out_dir) / "checkpoints"
    final = root / checkpoint_dir_name(step)
    temp = root / f".{final.name}.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    net.save_weights(temp / CHECKPOINT_WEIGHTS)
    optimizer_store = {}
    trainer.optimizer.save_own_variables(optimizer_store)
    np.savez(temp / CHECKPOINT_OPTIMIZER, **optimizer_store)
    write_json(temp / CHECKPOINT_STATE, {"step": step, **state})
    shutil.rmtree(final, ignore_errors=True)
    temp.rename(final)
    write_json(root / LATEST, {"step": step, "dir": final.name})
    _prune_checkpoints(root, keep=keep, current=final)
    return final


def load_checkpoint(trainer, checkpoint: Path) -> int:
    """Restore net weights and optimizer state; returns the checkpoint's step."""
    trainer.transform_net.load_weights(checkpoint / CHECKPOINT_WEIGHTS)
    with np.load(checkpoint / CHECKPOINT_OPTIMIZER) as store:
        trainer.optimizer.load_own_variables({key: store[key] for key in store.files})
    return int(json.loads((checkpoint / CHECKPOINT_STATE).read_text())["step"])


def set_aside_earlier_checkpoints(out_dir) -> Path | None:
    """Move an earlier run's checkpoints to ``checkpoints.previous/`` before a fresh run.

    A fresh run must not mix its checkpoints with older ones (pruning and
    ``latest.json`` would see both), yet the older run stays recoverable until
    the next fresh run replaces it.
    """
    current = Path(out_dir) / "checkpoints"
    if not current.is_dir():
        return None
    previous = current.with_name("checkpoints.previous")
    shutil.rmtree(previous, ignore_errors=True)
    current.rename(previous)
    return previous


def _prune_checkpoints(root: Path, keep: int, current: Path) -> None:
    steps = sorted(path for path in root.glob("step-*") if path.is_dir())
    for old in steps[: max(0, len(steps) - keep)]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (temp file + rename)."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(temp, path)
