"""The styles shipped under ``serving/``: one entry per painted slot of each shipped
network. Pure Python: no Django, and TensorFlow only when a stylize function is
loaded.

The benches (``bench/stylize_bench/``, ``bench/quality_bench.py``) and the shipped-style
tests (``tests/stylize/test_shipped_styles.py``) all list shipped styles through
:func:`shipped_styles`, which follows what ``stylize.services.styles.styles_register_shipped``
registers:

- every folder ``<serving_dir>/models/<model>/`` with an exported version
  (``ml.export.exported_versions``); only its latest version counts;
- each network (its ``slots.json``) is one style per painted slot (slot 0, the
  identity, is none), its metadata in ``<serving_dir>/styles/<bank>/<slug>/style.json``,
  its slug the slot's in ``slots.json``. A model without ``slots.json`` (exported
  before every network was a bank) is left out with a warning.

Each :class:`ShippedStyle` has the painting and ``style.json`` beside it (``painting``
None and ``meta`` empty when they are missing: callers decide whether that is an error)
and :meth:`ShippedStyle.load_stylize`, ``stylize(images)`` on the exported SavedModel
(with the slot's one-hot ``style_weights``, ``ml.bank.mix_weights``).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ml.bank import mix_weights
from ml.export import exported_versions, read_slots

__all__ = ["ShippedStyle", "shipped_models", "shipped_styles", "select_styles"]

logger = logging.getLogger(__name__)

META_FILE = "style.json"
DEFAULT_PAINTING = "painting.jpg"


@dataclass(frozen=True)
class ShippedStyle:
    """One shipped style: one painted slot of a shipped network."""

    model: str  # the model folder under models/ (the bank's name)
    version: int  # the model's latest exported version
    slot: int  # the slot (1 …)
    num_styles: int  # the bank's S (identity included)
    slug: str  # as registered (Style.slug)
    name: str  # display name (style.json's, else slots.json's, else the slug)
    version_dir: Path  # <serving_dir>/models/<model>/<version>
    meta_file: Path  # <serving_dir>/styles/<model>[/<slug>]/style.json (may be missing)
    meta: dict = field(default_factory=dict, compare=False)  # its contents ({} if missing)
    painting: Path | None = None  # the painting beside style.json (None if missing)

    @property
    def key(self) -> str:
        """Unique among shipped styles: ``<bank>/<slug>``."""
        return f"{self.model}/{self.slug}"

    @property
    def label(self) -> str:
        """For tables: ``paintings v2 slot 3 (great-wave)``."""
        return f"{self.model} v{self.version} slot {self.slot} ({self.slug})"

    def style_weights(self) -> np.ndarray:
        """The slot's ``style_weights`` row at full strength."""
        return mix_weights(self.num_styles, self.slot)

    def load_stylize(self) -> Callable[[np.ndarray], np.ndarray]:
        """``stylize(images)``: uint8 ``[B, H, W, 3]`` (or one ``H×W×3``) -> uint8 of the
        same shape, through the exported SavedModel's signature (for a bank with this
        slot's weights for every image). Versions are loaded once per process."""
        fn = _load_savedmodel(str(self.version_dir))
        if fn.num_styles != self.num_styles:
            raise ValueError(f"{self.version_dir} has {fn.num_styles} slots, "
                             f"slots.json says {self.num_styles}")
        weights = self.style_weights()

        def stylize(images: np.ndarray) -> np.ndarray:
            images = np.asarray(images, dtype=np.uint8)
            out = fn(images, weights)
            return out[0] if images.ndim == 3 else out

        stylize.style = self
        return stylize


_loaded: dict[str, Callable] = {}
_loaded_lock = threading.Lock()


def _load_savedmodel(path: str) -> Callable:
    with _loaded_lock:
        if path not in _loaded:
            from ml.export import load_savedmodel_fn

            _loaded[path] = load_savedmodel_fn(path)
        return _loaded[path]


def shipped_models(serving_dir) -> list[tuple[str, int]]:
    """(model name, latest exported version) of every model under ``serving_dir/models/``,
    a bank counting once."""
    models_dir = Path(serving_dir) / "models"
    if not models_dir.is_dir():
        return []
    shipped = []
    for model_dir in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        versions = exported_versions(model_dir)
        if versions:
            shipped.append((model_dir.name, versions[-1]))
    return shipped


def shipped_styles(serving_dir) -> list[ShippedStyle]:
    """Every shipped style under ``serving_dir``, sorted by model, then slot.

    A model whose ``slots.json`` cannot be read is left out with a warning; a
    ``style.json`` that cannot be read counts as missing (``meta`` empty)."""
    serving_dir = Path(serving_dir)
    styles = []
    for model, version in shipped_models(serving_dir):
        version_dir = serving_dir / "models" / model / str(version)
        meta_root = serving_dir / "styles" / model
        try:
            slots = read_slots(version_dir)
        except (OSError, ValueError) as error:  # unreadable or not JSON
            logger.warning("Leaving out %s: its slots.json cannot be read (%s).", model, error)
            continue
        if slots is None:
            logger.warning("Leaving out %s: it has no slots.json (exported before every "
                           "network was a bank; train it again).", model)
            continue
        try:
            num_styles, listed = int(slots["num_styles"]), list(slots["slots"])
        except (KeyError, TypeError, ValueError) as error:
            logger.warning("Leaving out %s: its slots.json lists no slots (%s).", model, error)
            continue
        for position, slot in enumerate(listed):
            index = int(slot.get("slot", position))
            if index == 0 or slot.get("identity"):
                continue
            slug = str(slot.get("slug"))
            meta_file = meta_root / slug / META_FILE
            meta = _read_meta(meta_file)
            styles.append(ShippedStyle(
                model=model, version=version, slot=index, num_styles=num_styles,
                slug=slug, name=meta.get("name") or slot.get("name") or slug,
                version_dir=version_dir, meta_file=meta_file, meta=meta,
                painting=_painting(meta_file, meta)))
    return styles


def select_styles(styles: Iterable[ShippedStyle], wanted: Iterable[str]) -> list[ShippedStyle]:
    """The styles named in ``wanted``: by key (``paintings/great-wave``),
    slug, or model name (a bank's name gives all its slots). Raises ``KeyError`` naming
    what matched nothing."""
    styles = list(styles)
    wanted = [name for name in wanted if name]
    chosen, unknown = [], []
    for name in wanted:
        matched = [style for style in styles if name in (style.key, style.slug, style.model)]
        if not matched:
            unknown.append(name)
        chosen += [style for style in matched if style not in chosen]
    if unknown:
        raise KeyError(", ".join(unknown))
    return [style for style in styles if style in chosen]  # listing order


def _read_meta(meta_file: Path) -> dict:
    try:
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    except (OSError, ValueError) as error:
        logger.warning("Ignoring %s: it cannot be read (%s).", meta_file, error)
        return {}
    return meta if isinstance(meta, dict) else {}


def _painting(meta_file: Path, meta: dict) -> Path | None:
    if not meta:
        return None
    painting = meta_file.parent / meta.get("painting", DEFAULT_PAINTING)
    return painting if painting.is_file() else None
