"""Where a style's network lives on disk, and which version of a bank is live.

Every style names a TF Serving model (``Style.model_name``); its exported versions are
the folders ``SERVING_DIR/models/<model_name>/<version>`` (:func:`model_dir`). A *bank*
is one such model whose styles are slots (``Style.bank_index``); its members share one
live version (:func:`bank_live_version`, :func:`bank_live_dir`). A training run works
in ``VAR_DIR/training/<model_name>`` (a bank's joint run), or in
``VAR_DIR/training/<bank>/slots/<slug>`` for one slot's fine-tune (:func:`training_dir`,
:func:`slot_dir`).

These only read rows and look at paths; :func:`local_copy` alone writes (a local copy
of a stored file for a run to read). Nothing here loads TensorFlow.
"""

import shutil
from pathlib import Path

from django.conf import settings

from stylize.models import Style


def training_dir(style: Style) -> Path:
    """Checkpoints, TensorBoard logs and samples of one style's training runs: its
    slot's fine-tunes in a bank it shares, else its bank's joint runs."""
    if [member.pk for member in bank_members(style.model_name)] not in ([], [style.pk]):
        return slot_dir(style.model_name, style)
    return settings.VAR_DIR / "training" / style.model_name


def slot_dir(model_name: str, style: Style) -> Path:
    """Where one slot's fine-tunes run, apart from the bank's joint run folder."""
    return settings.VAR_DIR / "training" / model_name / "slots" / style.slug


def model_dir(style: Style) -> Path:
    """The folder of the style's Serving model: one subfolder per exported version."""
    return settings.SERVING_DIR / "models" / style.model_name


def bank_members(model_name: str) -> list[Style]:
    """The styles of a bank, by slot."""
    return list(Style.objects.filter(model_name=model_name, bank_index__isnull=False)
                .order_by("bank_index"))


def bank_live_version(model_name: str) -> int | None:
    """The bank's live version (its members share it), if it has one."""
    return live_version(bank_members(model_name))


def live_version(members) -> int | None:
    """The newest live version among ``members`` (styles), if any has one."""
    return max((s.live_version for s in members if s.live_version is not None), default=None)


def bank_live_dir(model_name: str, version: int | None = None) -> Path | None:
    """The folder of the bank's live version (or of ``version``), if it can be fine-tuned."""
    from ml.export import BANK_MODEL_FILE

    version = bank_live_version(model_name) if version is None else version
    if version is None:
        return None
    path = settings.SERVING_DIR / "models" / model_name / str(version)
    return path if (path / BANK_MODEL_FILE).is_file() else None


def bank_name_check(model_name: str, lineup: list[Style]) -> None:
    """A bank must not take the name (the Serving model) of a style outside ``lineup``
    that is no slot of it yet (a draft whose own bank would be ``model_name``):
    ``ValueError`` if there is one."""
    clash = (Style.objects.filter(model_name=model_name, bank_index__isnull=True,
                                  owner__isnull=True)
             .exclude(pk__in=[s.pk for s in lineup]).first())
    if clash is not None:
        raise ValueError(f"{model_name} is the model name of the style {clash.name}; "
                         "choose another bank name.")


def local_copy(field_file, folder: Path, stem: str = "painting") -> Path:
    """A file on local disk with the stored file's content (storage may be S3):
    ``folder/<stem><suffix>``, ``folder`` made if missing, an older copy replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}{Path(field_file.name).suffix.lower()}"
    with field_file.open("rb") as source, open(target, "wb") as copy:
        shutil.copyfileobj(source, copy)
    return target
