"""The dtype policy a run trains in, from the machine it runs on.

:func:`resolve_precision` turns ``TrainConfig.precision`` into a Keras dtype policy
name, resolving ``auto`` from :func:`gpu_available` (the Keras backend sees a GPU) and
:func:`cpu_has_bf16` (the CPU's flags in ``/proc/cpuinfo``). Nothing here changes the
global policy; ``ml.trainer.build_trainer`` builds its layers in the policy chosen.
"""

from __future__ import annotations

from pathlib import Path

import keras

from ml.config import TrainConfig

__all__ = ["cpu_has_bf16", "gpu_available", "resolve_precision"]


def gpu_available() -> bool:
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(device.platform == "gpu" for device in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # a broken GPU stack means: train on the CPU
        return False
    return False


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(config: TrainConfig) -> str:
    """The dtype policy a run trains in: ``config.precision`` with ``auto`` resolved.

    ``auto``: ``mixed_float16`` on a GPU; ``mixed_bfloat16`` on a CPU with native
    bfloat16 under TensorFlow; otherwise ``float32``. Why and measurements:
    docs/design/training.md.
    """
    if config.precision != "auto":
        return config.precision
    if gpu_available():
        return "mixed_float16"
    if keras.backend.backend() == "tensorflow" and cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"
