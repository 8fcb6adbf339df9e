"""Styles: the shipped styles registered as ready public ones, publishing a style staff
reviewed, and retraining queued.

Training itself (status while it runs, the new version made live, as a draft) is
``stylize.services.training``.
"""

import copy
import logging
from pathlib import Path

from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ml.images import TRAINING_IMAGE_SUFFIXES
from stylize.models import Style

from . import events, queueing

logger = logging.getLogger(__name__)


def shipped_versions(model_dir: Path) -> list[int]:
    """Version directories of one model under serving/models/ that hold a SavedModel."""
    from ml.export import exported_versions

    return exported_versions(model_dir)


def styles_register_shipped(*, serving_dir: Path) -> list[Style]:
    """Create a ready public style for every style shipped under ``serving_dir``
    (``ml.shipped.shipped_styles``: each painted slot of each shipped network).
    Shipped versions were reviewed before they were shipped: each one made live here
    is published.

    The painting, sample and description (and ``name_zh`` / ``description_zh``, what
    Chinese readers see) come from the style's ``style.json``, whose held-out numbers
    are recorded as the shipped version's. Styles already in the database keep what
    staff changed, and get only what they lack (``_style_fill_shipped``); only a newer
    shipped version is made live, and a style that a shipped bank now paints moves into
    it (its old jobs keep their results). A style whose metadata is missing, or whose
    slot is taken, is skipped with a warning.
    """
    from ml.shipped import shipped_styles

    registered = []
    for shipped in shipped_styles(serving_dir):
        if shipped.painting is None:
            logger.warning("Skipping %s: %s is missing or names no painting.",
                           shipped.key, shipped.meta_file)
            continue
        if not shipped.meta.get("name"):
            logger.warning("Skipping %s: %s gives no name.", shipped.key, shipped.meta_file)
            continue
        try:
            style = _style_register_slot(shipped=shipped, serving_dir=serving_dir)
        except (IntegrityError, OSError, ValueError) as error:
            # A slot held by a style trained here, a painting that cannot be read, a
            # bad value: this style is skipped, the others still register.
            logger.warning("Skipping %s: %s", shipped.key, error)
            continue
        registered.append(style)
    _own_styles_follow({style.model_name for style in registered})
    return registered


def _own_styles_follow(banks) -> None:
    """Announce each shipped bank's live version (``events.bank_went_live``: users' own
    styles of it follow); a receiver's failure is logged, registering goes on."""
    for bank in sorted(banks):
        for receiver, error in events.bank_went_live.send_robust(sender=Style,
                                                                 model_name=bank):
            if isinstance(error, Exception):
                logger.error("After %s was registered, %s failed: %r", bank, receiver, error)


@transaction.atomic
def _style_register_slot(*, shipped, serving_dir: Path) -> Style:
    """A shipped network's slot: its style row (made, or moved in from a network that no
    longer ships) goes live. A row whose live version is another network's, still under
    ``serving_dir`` (staff retrained it into a bank here), stays there."""
    style = Style.objects.select_for_update().filter(slug=shipped.slug).first()
    if style is None:
        style = _style_from_shipped(shipped)
    elif (style.model_name == shipped.model and style.live_version is not None
          and style.live_version >= shipped.version):
        return _style_fill_shipped(style, shipped)  # trained here since, or registered
    elif (style.model_name != shipped.model and style.live_version is not None
          and (serving_dir / "models" / style.model_name / str(style.live_version)
               / "saved_model.pb").is_file()):
        return style
    else:
        _style_fill_shipped(style, shipped)  # before the version changes
    style.model_name = shipped.model
    style.bank_index = shipped.slot
    style.bank_slots = shipped.num_styles
    return _style_go_live(style, shipped.version)


def _style_go_live(style: Style, version: int) -> Style:
    style.live_version = version
    style.status = Style.Status.READY
    style.status_reason = ""
    style.published_at = timezone.now()  # a shipped version: reviewed before it shipped
    style.save()
    return style


def _shipped_metrics(meta: dict, version: int) -> dict:
    """``style.json``'s metrics, its held-out numbers marked as measured on ``version``
    (the shipped one: the admin tells them from a later version's by it)."""
    metrics = copy.deepcopy(meta.get("metrics") or {})
    if isinstance(metrics.get("heldout"), dict):
        metrics["heldout"].setdefault("version", version)
    return metrics


def _style_fill_shipped(style: Style, shipped) -> Style:
    """What a style registered before lacks from its ``style.json``: the Chinese name
    and description where they are empty, and, while it serves the shipped version,
    that version on held-out numbers that name none. Nothing staff set is changed."""
    meta, fields = shipped.meta, []
    for field in ("name_zh", "description_zh"):
        if not getattr(style, field) and isinstance(meta.get(field), str) and meta[field]:
            setattr(style, field, meta[field])
            fields.append(field)
    heldout = style.metrics.get("heldout") if isinstance(style.metrics, dict) else None
    if (isinstance(heldout, dict) and "version" not in heldout
            and style.live_version == shipped.version and style.model_name == shipped.model):
        heldout["version"] = shipped.version
        fields.append("metrics")
    if fields:
        style.save(update_fields=[*fields, "updated_at"])
    return style


def _style_from_shipped(shipped) -> Style:
    """A new (unsaved) style with the shipped painting, sample and description."""
    meta = shipped.meta
    style = Style(
        model_name=shipped.model,
        name=meta["name"],
        slug=shipped.slug,
        description=meta.get("description", ""),
        name_zh=meta.get("name_zh", ""),
        description_zh=meta.get("description_zh", ""),
        training_settings=meta.get("training", {}),
        metrics=_shipped_metrics(meta, shipped.version),
        is_public=meta.get("is_public", True),
    )
    with open(shipped.painting, "rb") as painting:
        style.painting.save(shipped.painting.name, File(painting), save=False)
    if meta.get("sample"):
        sample_path = shipped.meta_file.parent / meta["sample"]
        with open(sample_path, "rb") as sample:
            style.sample.save(Path(meta["sample"]).name, File(sample), save=False)
    return style


class StylePublishRefused(Exception):
    """A style cannot be published yet; the message says why, fit to show staff."""


def style_publish_refusal(*, style: Style) -> str | None:
    """Why ``style`` cannot be published as it stands, fit to show staff; None if it can.

    It needs a trained live version and a held-out evaluation of that very version
    (``metrics["heldout"]["version"]``, from ``manage.py evaluate_style``, whose contact
    sheet and numbers staff see on the style's admin page)."""
    if style.is_own:
        return _("%(style)s is a user's own style: it is theirs alone and is never "
                 "published.") % {"style": style.name}
    if style.live_version is None or style.status not in (Style.Status.READY,
                                                           Style.Status.TRAINING):
        return _("%(style)s has no trained version to publish: train it first.") % {
            "style": style.name}
    heldout = style.metrics.get("heldout") if isinstance(style.metrics, dict) else None
    if not isinstance(heldout, dict) or heldout.get("version") != style.live_version:
        return _("%(style)s cannot be published before version %(version)s is evaluated on "
                 "held-out photos: run manage.py evaluate_style %(slug)s --images <photos>, "
                 "then review its contact sheet and numbers.") % {
            "style": style.name, "version": style.live_version, "slug": style.slug}
    return None


@transaction.atomic
def style_publish(*, style: Style) -> Style:
    """Publish ``style``'s live version: from now on users are offered it (unless staff
    hid it, ``is_public``). Returns the style, fresh from the database.

    Refused with ``StylePublishRefused`` (nothing changed) for the reason
    :func:`style_publish_refusal` gives. A published style stays as it is. The row is
    locked and checked afresh: a retrain going live meanwhile
    (``training.style_training_succeed``, which makes the new version a draft) is either
    seen here, and its version has no evaluation yet, or comes after and drafts the
    style again.
    """
    style = Style.objects.select_for_update().get(pk=style.pk)
    if refusal := style_publish_refusal(style=style):
        raise StylePublishRefused(refusal)
    if style.published_at is None:
        style.published_at = timezone.now()
        style.save(update_fields=["published_at", "updated_at"])
    return style


class RetrainRefused(Exception):
    """A retrain would fail at once; the message says what to run first, fit to show staff."""


def styles_retrain_refusal(*, config) -> str | None:
    """Why a retrain with ``config`` (``training.training_config()``) would fail as soon
    as it starts, saying what to run first, or None. Checks what is cheap to check in
    the web process: the photo folder has photos, and a loss-weights file given by path
    exists (the worker's ``ml.preflight.check_can_train`` checks the rest)."""
    folder = Path(config.data_dir) if config.data_dir else None
    if folder is None or not folder.is_dir():
        return _("Nothing was queued: the training photos are missing (%(folder)s does not "
                 "exist). On this machine run “make photos” first (244 photos from Debian "
                 "packages and scikit-image, a few minutes), or set TRAINING_DATA_DIR to a "
                 "folder of JPEG or PNG photos.") % {"folder": config.data_dir or "—"}
    if not any(path.suffix.lower() in TRAINING_IMAGE_SUFFIXES
               for path in folder.rglob("*") if path.is_file()):
        return _("Nothing was queued: %(folder)s holds no JPEG or PNG photos. Run “make "
                 "photos” first, or set TRAINING_DATA_DIR to a folder of photos.") % {
            "folder": folder}
    weights = config.loss_weights
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        return _("Nothing was queued: the loss network's weights %(file)s are missing. Run "
                 "“make vgg16-weights” first.") % {"file": weights}
    return None


def styles_retrain(*, styles, config=None) -> int:
    """Queue a retrain of each of ``styles`` once the transaction commits (the training
    queue; ``stylize.tasks.style_train``). The task builds its config from the settings
    in force where it runs. Returns how many were queued.

    Raises ``RetrainRefused`` (nothing queued) when ``config`` (default: the settings'
    ``training.training_config()``) could not start: ``styles_retrain_refusal``."""
    from .training import training_config

    if refusal := styles_retrain_refusal(config=config or training_config()):
        raise RetrainRefused(refusal)
    styles = list(styles)
    for style in styles:
        queueing.style_train_send(style_id=style.pk, overrides={})
    return len(styles)
