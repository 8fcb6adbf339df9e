"""Export a trained TransformNet for TensorFlow Serving, and write models.config.

SavedModel signature ``serving_default`` (the gRPC client relies on these names):

- input ``images``: uint8 ``[batch, height, width, 3]``, RGB, any height and
  width (at least 5 px);
- input ``style_weights``: float32 ``[batch, S]``, each image's mix of the network's S
  slots (slot 0 is the photo itself; a one-hot row is one style);
- output ``stylized``: uint8 ``[batch, height, width, 3]``, RGB, same size
  (the network's [0, 255] floats rounded and clipped inside the signature).

A second signature, ``style_params`` (:data:`PARAMS_SIGNATURE_NAME`),
for a style that is no slot of it (a user's own, docs/design/own-styles.md): inputs
``images``, ``style_weights`` float32 ``[batch, S]`` and ``style_params`` float32
``[batch, P]`` (P = ``TransformNet.style_params_size``: every norm's scale and offset,
one row per image), added to the slots' mix (``style_weights`` all zero: the row alone);
output ``stylized`` as above. ``serving_default`` is unchanged by it.

Each version folder also holds ``slots.json`` (``{"num_styles": S,
"style_params_size": P, "shared_digest": ..., "slots": [{"slot": 0, ...}, ...]}``:
which style each slot paints, its painting and how it was trained, and a digest of the
shared weights, ``ml.bank.shared_digest``) and ``transform_net.keras`` (the Keras
model, so a later run can fine-tune one slot of exactly this version). Serving ignores
both.

Versions live in ``<base_dir>/<integer>/`` as TF Serving expects; a new
version is written to a hidden temporary folder and renamed into place, so
Serving, which polls the folder, never loads a half-written version.
Exporting needs the tensorflow backend.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
WEIGHTS_INPUT_NAME = "style_weights"
#: A bank's second signature, and its input: an explicit row of every norm's maps.
PARAMS_SIGNATURE_NAME = "style_params"
PARAMS_INPUT_NAME = "style_params"
OUTPUT_NAME = "stylized"
SLOTS_FILE = "slots.json"
BANK_MODEL_FILE = "transform_net.keras"


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


def export_savedmodel(model, base_dir, *, slots: list[dict],
                      attempts: int = 5) -> tuple[int, Path]:
    """Write ``model`` (a ``TransformNet``) as the next version under ``base_dir``;
    returns (version, path).

    ``slots`` describes each of its slots (a dict; ``slot`` is added), written to
    ``slots.json`` with the Keras model beside the SavedModel.
    """
    from ml.bank import shared_digest

    base_dir = Path(base_dir)
    num_styles = model.num_styles
    if slots is None or len(slots) != num_styles:
        raise ValueError(f"a network of {num_styles} slots needs {num_styles} slot "
                         "descriptions")
    base_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=base_dir))
    try:
        build_export_archive(model).write_out(str(staging / "model"), verbose=False)
        model.save(staging / "model" / BANK_MODEL_FILE)
        described = [{**slot, "slot": index} for index, slot in enumerate(slots)]
        (staging / "model" / SLOTS_FILE).write_text(json.dumps({
            "num_styles": num_styles, "style_params_size": model.style_params_size,
            "shared_digest": shared_digest(model), "slots": described,
        }, indent=2, default=str))
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
    """A ``keras.export.ExportArchive`` with the uint8 ``serving_default`` and
    ``style_params`` signatures."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    num_styles = model.num_styles

    def to_uint8(stylized):
        stylized = tf.clip_by_value(tf.round(tf.cast(stylized, tf.float32)), 0.0, 255.0)
        return {OUTPUT_NAME: tf.cast(stylized, tf.uint8)}

    images_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)
    def serve(images, style_weights):
        return to_uint8(model(tf.cast(images, tf.float32), style_weights, training=False))

    signature = [images_spec,
                 tf.TensorSpec([None, num_styles], tf.float32, name=WEIGHTS_INPUT_NAME)]

    def serve_params(images, style_weights, style_params):
        return to_uint8(model(tf.cast(images, tf.float32), style_weights,
                              style_params=style_params, training=False))

    archive.add_endpoint(
        name=PARAMS_SIGNATURE_NAME, fn=serve_params,
        input_signature=[*signature, tf.TensorSpec(
            [None, model.style_params_size], tf.float32, name=PARAMS_INPUT_NAME)])
    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve, input_signature=signature)
    return archive


def read_slots(version_dir) -> dict | None:
    """A version's ``slots.json``, or None where it has none (a network exported before
    every network was a bank, which nothing paints with any more)."""
    path = Path(version_dir) / SLOTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_savedmodel_fn(path) -> Callable[..., np.ndarray]:
    """``stylize(images, style_weights)`` over an exported version folder: a numpy
    uint8 batch and float32 ``[batch, S]`` weights (or one ``[S]`` row for every image)
    -> uint8 batch. ``stylize.num_styles`` is S. ``ValueError`` for a network exported
    before every network was a bank (it takes no ``style_weights``).

    A version exported with the ``style_params`` signature also gives
    ``stylize.with_params(images, style_weights, style_params)`` (weights ``[batch, S]``
    or one ``[S]`` row, params ``[batch, P]`` or one ``[P]`` row) and
    ``stylize.params_size`` P; a version exported before own styles existed has no such
    signature: ``with_params`` is None and ``params_size`` 0."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures[SIGNATURE_NAME]
    weights_spec = signature.structured_input_signature[1].get(WEIGHTS_INPUT_NAME)
    if weights_spec is None:
        raise ValueError(f"{path} was exported before every network was a bank (it takes "
                         "no style_weights): train its style again")
    num_styles = int(weights_spec.shape[-1])
    params_signature = loaded.signatures.get(PARAMS_SIGNATURE_NAME)
    params_size = 0 if params_signature is None else int(
        params_signature.structured_input_signature[1][PARAMS_INPUT_NAME].shape[-1])

    def stylize(images: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 3:
            images = images[None]
        if style_weights is None:
            raise ValueError(f"{path} has {num_styles} slots: give style_weights")
        return signature(**{
            INPUT_NAME: tf.constant(images),
            WEIGHTS_INPUT_NAME: tf.constant(batch_weights(style_weights, len(images),
                                                          num_styles)),
        })[OUTPUT_NAME].numpy()

    def with_params(images: np.ndarray, style_weights: np.ndarray,
                    style_params: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 3:
            images = images[None]
        return params_signature(**{
            INPUT_NAME: tf.constant(images),
            WEIGHTS_INPUT_NAME: tf.constant(batch_weights(style_weights, len(images),
                                                          num_styles)),
            PARAMS_INPUT_NAME: tf.constant(batch_weights(style_params, len(images),
                                                         params_size, name="style_params")),
        })[OUTPUT_NAME].numpy()

    stylize.num_styles = num_styles
    stylize.params_size = params_size
    stylize.with_params = with_params if params_signature is not None else None

    stylize.saved_model = loaded  # keeps the loaded graph alive with the function
    return stylize


def batch_weights(style_weights, batch: int, num_styles: int,
                  name: str = "style_weights") -> np.ndarray:
    """float32 ``[batch, S]`` from one ``[S]`` row or a ``[batch, S]`` array (also
    the ``[batch, P]`` rows of ``style_params``, ``name`` saying which)."""
    weights = np.asarray(style_weights, dtype=np.float32)
    if weights.ndim == 1:
        weights = np.broadcast_to(weights, (batch, len(weights)))
    if weights.shape != (batch, num_styles) or not np.isfinite(weights).all():
        raise ValueError(
            f"{name} must be finite numbers of shape ({batch}, {num_styles}), "
            f"got shape {weights.shape}")
    return np.ascontiguousarray(weights)


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
