"""Export a trained TransformNet for TensorFlow Serving, and write models.config.

SavedModel signature ``serving_default`` (the gRPC client relies on these names):

- input ``images``: uint8 ``[batch, height, width, 3]``, RGB, any height and
  width (at least 5 px);
- output ``stylized``: uint8 ``[batch, height, width, 3]``, RGB, same size
  (the network's [0, 255] floats rounded and clipped inside the signature).

Versions live in ``<base_dir>/<integer>/`` as TF Serving expects; a new
version is written to a hidden temporary folder and renamed into place, so
Serving, which polls the folder, never loads a half-written version.
Exporting needs the tensorflow backend.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "stylized"


# --------------------------------------------------------------------------- SavedModel


def existing_versions(base_dir) -> list[int]:
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        return []
    return sorted(int(path.name) for path in base_dir.iterdir() if path.name.isdigit())


def exported_versions(base_dir) -> list[int]:
    """The version folders under ``base_dir`` that hold a complete SavedModel."""
    base_dir = Path(base_dir)
    return [
        version for version in existing_versions(base_dir)
        if (base_dir / str(version) / "saved_model.pb").is_file()
    ]


def next_version(base_dir) -> int:
    return max(existing_versions(base_dir), default=0) + 1


def export_savedmodel(model, base_dir, attempts: int = 5) -> tuple[int, Path]:
    """Write ``model`` as the next version under ``base_dir``; returns (version, path)."""
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=base_dir))
    try:
        build_export_archive(model).write_out(str(staging / "model"), verbose=False)
        for _ in range(attempts):
            version = next_version(base_dir)
            target = base_dir / str(version)
            try:
                # rename fails if another exporter took this version meanwhile.
                os.rename(staging / "model", target)
            except OSError:
                continue
            return version, target
        raise RuntimeError(f"could not claim a free version folder under {base_dir}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_export_archive(model):
    """A ``keras.export.ExportArchive`` with the uint8 ``serving_default`` signature."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        stylized = tf.cast(model(tf.cast(images, tf.float32), training=False), tf.float32)
        stylized = tf.clip_by_value(tf.round(stylized), 0.0, 255.0)
        return {OUTPUT_NAME: tf.cast(stylized, tf.uint8)}

    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)],
    )
    return archive


def load_savedmodel_fn(path) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy uint8 batch -> uint8 batch function over an exported version folder."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures[SIGNATURE_NAME]

    def stylize(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 3:
            images = images[None]
        return signature(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()

    stylize.saved_model = loaded  # keeps the loaded graph alive with the function
    return stylize


# --------------------------------------------------------------------------- models.config


def render_models_config(models: Iterable[tuple]) -> str:
    """TF Serving ``model_config_list`` text.

    ``models`` holds ``(name, base_path)`` or ``(name, base_path, versions)``
    tuples, ``versions`` an int or a list of ints. With versions Serving is pinned
    to them through ``model_version_policy { specific { versions: N } }``, so
    exporting a new version does not make it live by itself; without them Serving
    serves the highest version in ``base_path``. An empty list gives a valid, empty
    config.
    """
    lines = ["model_config_list {"]
    for name, base_path, *version in models:
        if not name or not base_path:
            raise ValueError(f"model name and base_path are required, got {(name, base_path)!r}")
        lines += [
            "  config {",
            f"    name: {_text_format_string(name)}",
            f"    base_path: {_text_format_string(str(base_path))}",
            '    model_platform: "tensorflow"',
        ]
        pinned = version[0] if version else None
        if pinned is not None:
            pinned = [pinned] if isinstance(pinned, int) else sorted(set(pinned))
            listed = " ".join(f"versions: {int(v)}" for v in pinned)
            lines.append(f"    model_version_policy {{ specific {{ {listed} }} }}")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(path, models: Iterable[tuple]) -> Path:
    """Write ``render_models_config(models)`` atomically (Serving polls this file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_models_config(models)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, 0o644)  # mkstemp makes it owner-only; Serving may run as another user
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def _text_format_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
