import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import storages
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from . import strokes

MIN_MAX_SIDE = 64
MAX_MAX_SIDE = 4096
DEFAULT_MAX_SIDE = 1024


def private_storage():
    """Where users' photos and results live: ``STORAGES["private"]``, which no URL
    route serves (files are read through the owner-checked views and API only)."""
    return storages["private"]


def _random_name(folder: str, filename: str) -> str:
    """``<folder>/<32 random hex digits>.<ext>``: nothing of the uploader's own name,
    nothing a stranger could guess."""
    suffix = Path(filename).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ""
    return f"{folder}/{uuid.uuid4().hex}{suffix}"


def own_style_file_name(instance, filename: str) -> str:
    """``own-styles/<random>.<ext>``: a user's own painting and its training samples, in
    the private storage."""
    return _random_name("own-styles", filename)


class Style(models.Model):
    """An art style: its painting and the trained network that paints in it.

    A style with an ``owner`` is that user's own (docs/design/own-styles.md): their
    painting (``private_painting``, in the private storage), learnt as one row of the
    maps of ``model_name``'s bank (``style_params``) on its version ``live_version``,
    which has ``bank_slots`` slots. It is never public, never published and no slot of
    the bank: only its owner's pages, API calls and jobs use it
    (``selectors.style_list_usable``).
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft (no trained model)")
        TRAINING = "training", _("Training")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Training failed")

    # Unique among the staff's styles; a user's own names need only differ from each other.
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # What Chinese readers see instead (local_name, local_description); empty: the English.
    name_zh = models.CharField("name (Chinese)", max_length=100, blank=True,
                               help_text="Shown to readers of the Chinese pages; empty: the name.")
    description_zh = models.TextField("description (Chinese)", blank=True,
                                      help_text="Shown to readers of the Chinese pages; empty: "
                                      "the description.")
    # Empty for a user's own style, whose painting is private (private_painting).
    painting = models.ImageField("painting", upload_to="styles/paintings/", blank=True)
    model_name = models.SlugField(
        max_length=100,
        blank=True,
        help_text="The name TF Serving knows the model by: the style's own network, or "
        "the bank (one conditional network) it shares with other styles. Left empty, "
        "the slug.",
    )
    bank_index = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="The style's slot in its network (slot 0 is the photo itself); empty "
        "until it is trained, and for a user's own style.",
    )
    bank_slots = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="How many slots (identity included) the bank's live version has.",
    )
    live_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Model version users get; empty until trained."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    status_reason = models.TextField(blank=True, help_text="Why training failed, if it did.")
    training_settings = models.JSONField(
        default=dict, blank=True, help_text="How the live version was trained."
    )
    metrics = models.JSONField(
        default=dict, blank=True, help_text="Training and held-out losses of the live version."
    )
    sample = models.ImageField(upload_to="styles/examples/", blank=True)
    training_progress = models.JSONField(
        default=dict, blank=True,
        help_text="The run going now, or the last one: step, steps, loss terms, seconds, "
        "time left, and the loss history the admin draws as curves.",
    )
    training_sample = models.ImageField(
        upload_to="styles/training/", blank=True,
        help_text="The latest sample the running (or last) training run painted.",
    )
    training_sheet = models.ImageField(
        upload_to="styles/training/", blank=True,
        help_text="The last finished run's contact sheet: held-out photos in the style.",
    )
    is_public = models.BooleanField(
        default=True,
        help_text="Untick to hide a published style from users. Ticking it shows nothing "
        "that staff have not published.",
    )
    # Empty: a draft, which no user page, API call or job offers. Only
    # services.styles.style_publish sets it (after a held-out evaluation of the live
    # version); a new live version from training empties it again.
    published_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When staff published the live version; empty while it is a draft.",
    )
    # --- A user's own style (services.own_styles; docs/design/own-styles.md) -----------
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
        related_name="own_styles", editable=False,
        help_text="Set for a user's own style: only they see it, use it and its painting.",
    )
    private_painting = models.ImageField(
        upload_to=own_style_file_name, storage=private_storage, blank=True, editable=False,
        help_text="An own style's painting, in the private storage (no URL serves it).")
    private_sample = models.ImageField(
        upload_to=own_style_file_name, storage=private_storage, blank=True, editable=False,
        help_text="The latest sample an own style's training painted, in the private storage.")
    style_params = models.BinaryField(
        null=True, blank=True, editable=False,
        help_text="An own style's learnt row of the bank's maps (float32, little-endian): "
        "what the network's style_params signature paints with.")
    removed_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When its owner deleted an own style that old jobs still name; the sweep "
        "deletes the row once none does.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=Q(owner__isnull=True),
                                    name="style_name_unique",
                                    violation_error_message="A style with this name exists."),
            models.UniqueConstraint(
                fields=["owner", "name"], condition=Q(owner__isnull=False, removed_at__isnull=True),
                name="own_style_name_unique_per_owner",
                violation_error_message="You already have a style with this name."),
            models.CheckConstraint(
                condition=Q(owner__isnull=False) | ~Q(painting=""),
                name="style_has_a_painting",
                violation_error_message="A style needs its painting."),
            # A user's own style is theirs alone: never public, never published, and its
            # painting never in the public media storage.
            models.CheckConstraint(
                condition=Q(owner__isnull=True)
                | Q(is_public=False, published_at__isnull=True, painting="",
                    bank_index__isnull=True),
                name="own_style_is_private"),
            models.CheckConstraint(
                condition=Q(owner__isnull=True) | ~Q(status="ready")
                | Q(style_params__isnull=False, bank_slots__isnull=False),
                name="own_style_ready_has_its_row"),
            models.CheckConstraint(
                condition=~Q(status="ready") | Q(live_version__isnull=False),
                name="style_ready_has_live_version",
            ),
            # Every network is a bank: a staff style that paints has a slot of one.
            models.CheckConstraint(
                condition=Q(owner__isnull=False) | Q(live_version__isnull=True)
                | Q(bank_index__isnull=False),
                name="style_live_version_is_a_slot",
            ),
            models.CheckConstraint(
                condition=Q(published_at__isnull=True) | Q(live_version__isnull=False),
                name="style_published_has_live_version",
            ),
            models.CheckConstraint(condition=~Q(model_name=""), name="style_has_model_name"),
            models.UniqueConstraint(
                fields=["model_name"],
                condition=Q(bank_index__isnull=True, owner__isnull=True),
                name="style_single_model_name_unique",
            ),
            models.UniqueConstraint(
                fields=["model_name", "bank_index"], name="style_bank_slot_unique"
            ),
            models.CheckConstraint(
                condition=Q(bank_index__isnull=True) | Q(bank_index__gte=1),
                name="style_bank_index_not_identity",
            ),
            models.CheckConstraint(
                condition=Q(bank_index__isnull=True, bank_slots__isnull=True)
                | Q(bank_index__isnull=False, bank_slots__gt=F("bank_index"))
                # An own style paints with a version of bank_slots slots, in none of them.
                | Q(owner__isnull=False, bank_index__isnull=True, bank_slots__gte=2),
                name="style_bank_slots_hold_its_slot",
            ),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if not self.model_name:  # e.g. made in the shell: the slug names its network
            self.model_name = self.slug
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "model_name"}
        super().save(*args, **kwargs)

    @property
    def is_own(self) -> bool:
        """Whether this is a user's own style (``owner``), painted from its row."""
        return self.owner_id is not None

    @property
    def bank_name(self) -> str | None:
        """The network the style paints with (a slot of it, or an own style's row on it:
        an own style names its bank from the start), or None for a staff style never
        trained: styles of one network mix."""
        return self.model_name if self.live_version is not None or self.is_own else None

    @property
    def painting_url(self) -> str:
        """Where a page shows the painting: the public media URL, or for an own style the
        owner-checked page that streams it from the private storage."""
        if self.is_own:
            from django.urls import reverse

            return reverse("stylize:own_style_painting", args=[self.slug])
        return self.painting.url

    @property
    def own_row(self):
        """An own style's learnt row (numpy float32 ``(P,)``), or None before it is learnt."""
        if self.style_params is None:
            return None
        import numpy as np

        return np.frombuffer(bytes(self.style_params), dtype="<f4").astype(np.float32)

    @property
    def paint_slot(self):
        """Where this style is painted (``ml.bank.BankSlot``: its network's live version
        and slot, or an own style's row), or None while it has nothing to paint with
        (never trained, or an own style not learnt yet)."""
        from ml.bank import BankSlot

        if self.live_version is None or not self.bank_slots:
            return None
        if self.is_own:
            row = self.own_row
            return None if row is None else BankSlot(self.model_name, self.live_version,
                                                      self.bank_slots, row=row)
        if self.bank_index is None:  # an unsaved row: a saved one cannot be live without
            return None
        return BankSlot(self.model_name, self.live_version, self.bank_slots, self.bank_index)

    @property
    def stored_own_files(self) -> list:
        """An own style's files in the private storage (what deleting it deletes)."""
        return [f for f in (self.private_painting, self.private_sample) if f]

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY and self.live_version is not None

    @property
    def is_published(self) -> bool:
        """Whether staff published the live version (users may be offered it); a new or
        retrained style is a draft until then."""
        return self.published_at is not None

    @property
    def local_name(self) -> str:
        """The name in the active language: ``name_zh`` on Chinese pages (and mails)
        when there is one, else ``name`` (docs/design/i18n.md)."""
        return self.name_zh if self.name_zh and _chinese_active() else self.name

    @property
    def local_description(self) -> str:
        """The description in the active language, as ``local_name``."""
        return (self.description_zh if self.description_zh and _chinese_active()
                else self.description)


def _chinese_active() -> bool:
    return (translation.get_language() or "").lower().startswith("zh")


def job_photo_name(job, filename: str) -> str:
    return _random_name("photos", filename)


def job_result_name(job, filename: str) -> str:
    return _random_name("results", filename)


class Stroke(models.TextChoices):
    """How big the brush strokes are: the size the network paints at
    (``strokes.STROKE_WORKING_SIDES``)."""

    FINE = "fine", _("Fine")
    MEDIUM = "medium", _("Medium")
    BOLD = "bold", _("Bold")


DEFAULT_STROKE = Stroke(strokes.DEFAULT_STROKE)


class StyleJob(models.Model):
    """One photo to repaint in one style, from upload to emailed result."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    FINISHED = (Status.SUCCEEDED, Status.FAILED)
    IN_FLIGHT = (Status.QUEUED, Status.RUNNING)

    class Stage(models.TextChoices):
        """Where a job is within its run, finer than its status."""

        QUEUED = "queued", _("Waiting in the queue")
        PAINTING = "painting", _("Painting")
        FINISHING = "finishing", _("Finishing")
        DONE = "done", _("Done")

    class CostClass(models.TextChoices):
        """How much work a job is, decided at upload; each class has its own queue."""

        SMALL = "small", _("Small")
        LARGE = "large", _("Large")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="style_jobs"
    )
    style = models.ForeignKey(Style, on_delete=models.PROTECT, related_name="jobs")
    input_image = models.ImageField(upload_to=job_photo_name, storage=private_storage)
    input_filename = models.CharField(
        max_length=100, blank=True, help_text="The photo's name on the uploader's side, cleaned."
    )
    result_image = models.ImageField(
        upload_to=job_result_name, storage=private_storage, blank=True
    )
    # The result in the other download formats, each made the first time it is asked
    # for (stylize.services.job_files.job_result_copy) and deleted with the job.
    result_png = models.FileField(upload_to=job_result_name, storage=private_storage,
                                  blank=True, editable=False)
    result_webp = models.FileField(upload_to=job_result_name, storage=private_storage,
                                   blank=True, editable=False)
    strength = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    blend_with = models.ForeignKey(
        Style,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="blended_jobs",
        help_text="A second style of the same bank mixed into the first.",
    )
    blend = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="The second style's share of the mix, 0 to 1.",
    )
    stroke = models.CharField(max_length=8, choices=Stroke.choices, default=DEFAULT_STROKE)
    preserve_colors = models.BooleanField(default=False)
    max_side = models.PositiveIntegerField(
        default=DEFAULT_MAX_SIDE,
        validators=[MinValueValidator(MIN_MAX_SIDE), MaxValueValidator(MAX_MAX_SIDE)],
    )
    # The photo's size upright, from its header at upload (empty for older jobs): what
    # the job page says max_side and the strokes will do for it (imaging.stroke_size.size_plan).
    photo_width = models.PositiveIntegerField(null=True, blank=True, editable=False)
    photo_height = models.PositiveIntegerField(null=True, blank=True, editable=False)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    cost_class = models.CharField(
        max_length=8, choices=CostClass.choices, default=CostClass.SMALL,
        help_text="Small or large by the pixels painted (JOB_SMALL_MAX_PIXELS); picks the "
        "queue the job waits in (JOB_QUEUES).",
    )
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.QUEUED)
    progress = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="The fraction of the painting done (tiles or passes), 0 to 1.",
    )
    callback_url = models.URLField(
        max_length=2000, blank=True,
        help_text="Where the job's JSON is POSTed when it ends (a program's webhook).",
    )
    callback_attempts = models.PositiveIntegerField(default=0)
    callback_error = models.TextField(blank=True, help_text="Why the last delivery failed.")
    callback_delivered_at = models.DateTimeField(null=True, blank=True)
    share_token = models.CharField(
        max_length=64, unique=True, null=True, blank=True,
        help_text="The random token of the result's share link; empty when not shared.",
    )
    share_expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the job was last put on the queue."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(strength__gte=0.0) & Q(strength__lte=1.0),
                name="job_strength_between_0_and_1",
            ),
            models.CheckConstraint(
                condition=Q(max_side__gte=MIN_MAX_SIDE) & Q(max_side__lte=MAX_MAX_SIDE),
                name="job_max_side_in_range",
            ),
            models.CheckConstraint(
                condition=Q(blend__gte=0.0) & Q(blend__lte=1.0),
                name="job_blend_between_0_and_1",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["succeeded", "failed"]) | Q(finished_at__isnull=True),
                name="job_finished_at_only_when_finished",
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(error=""),
                name="job_failed_has_error",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0.0) & Q(progress__lte=1.0),
                name="job_progress_between_0_and_1",
            ),
        ]

    def __str__(self):
        return f"{self.style} for {self.owner} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def stored_files(self) -> list:
        """The job's files in the private storage, each once it exists: its photo, its
        result and the result's copies in other formats (what deleting the job deletes)."""
        fields = (self.input_image, self.result_image, self.result_png, self.result_webp)
        return [field for field in fields if field]

    @property
    def photo_download_name(self) -> str:
        """The uploaded photo's own name when it is downloaded (its cleaned display name)."""
        suffix = Path(self.input_image.name).suffix.lower()
        stem = Path(self.input_filename).stem or "photo"
        return f"{stem}{suffix}"

    @property
    def result_download_name(self) -> str:
        """What the result is called when it is downloaded or attached to an email."""
        suffix = Path(self.result_image.name).suffix.lower() or ".jpg"
        return f"prisma-{self.style.slug}-{str(self.pk)[:8]}{suffix}"


class Profile(models.Model):
    """A user's preferences; made on demand by ``Profile.for_user``."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prisma_profile"
    )
    email_results = models.BooleanField(
        _("email me my results"),
        default=True,
        help_text=_("Send the finished painting (or why it failed) to your account's address."),
    )
    email_confirmed = models.BooleanField(
        default=True,
        help_text="Whether the address is known to be the user's. Sign-up sets it off "
        "until the emailed link is followed; accounts staff make count as confirmed. "
        "Nothing but that link is mailed to an unconfirmed address.",
    )
    language = models.CharField(
        max_length=16, blank=True, choices=settings.LANGUAGES,
        help_text="The language the user last chose or browsed in; their emails use it.",
    )
    webhook_secret = models.CharField(
        max_length=64, blank=True,
        help_text="The key job webhooks are signed with (X-Prisma-Signature); made on "
        "first use, rotatable from the profile page.",
    )

    def __str__(self):
        return f"Profile of {self.user}"

    @classmethod
    def for_user(cls, user) -> "Profile":
        profile, _ = cls.objects.get_or_create(user=user)
        return profile


def preview_file_name(instance, filename: str) -> str:
    """``previews/<random>.<ext>``: a preview's photo, its working copy and its paintings."""
    return _random_name("previews", filename)


class Preview(models.Model):
    """A photo painted small in every offered style before any job is made: the grid of
    the upload page and of the job page's "Try another style" (``services.previews``;
    docs/design/previews.md). Deleted, with its files, ``PREVIEW_RETENTION_SECONDS``
    after it was made."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
        related_name="style_previews",
        help_text="Empty when made without an account: then only the browser session that "
        "made it sees it, until that browser logs in or signs up.",
    )
    source_job = models.ForeignKey(
        StyleJob, on_delete=models.CASCADE, null=True, blank=True, related_name="previews",
        help_text="The job whose photo is painted; then the preview has no photo of its own.",
    )
    photo = models.ImageField(upload_to=preview_file_name, storage=private_storage,
                              blank=True)
    photo_filename = models.CharField(
        max_length=100, blank=True, help_text="The photo's name on the uploader's side, cleaned.")
    working_photo = models.ImageField(
        upload_to=preview_file_name, storage=private_storage, blank=True, editable=False,
        help_text="The photo upright at PREVIEW_SIDE (PNG), made by the first paint: what "
        "every later paint reads.",
    )
    error = models.TextField(blank=True, help_text="Why the photo could not be read, if so.")
    language = models.CharField(
        max_length=16, blank=True,
        help_text="The language the preview was asked in: its errors are written in it.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(photo="") | Q(source_job__isnull=False),
                name="preview_has_a_photo",
            ),
        ]

    def __str__(self):
        return f"Preview {self.pk} of {self.owner or 'a visitor'}"

    @property
    def stored_files(self) -> list:
        """The preview's own files (not its paintings'): its photo and working copy."""
        return [field for field in (self.photo, self.working_photo) if field]


class PreviewImage(models.Model):
    """One style's painting of a preview's photo, at the settings last asked for."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    preview = models.ForeignKey(Preview, on_delete=models.CASCADE, related_name="images")
    style = models.ForeignKey(Style, on_delete=models.CASCADE, related_name="+")
    strength = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    blend_with = models.ForeignKey(Style, on_delete=models.CASCADE, null=True, blank=True,
                                   related_name="+")
    blend = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    preserve_colors = models.BooleanField(default=False)
    # Each re-paint asks for a new revision; a paint finished for an older one is dropped.
    revision = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    image = models.FileField(upload_to=preview_file_name, storage=private_storage,
                             blank=True)
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["style__name"]
        constraints = [
            models.UniqueConstraint(fields=["preview", "style"],
                                    name="preview_image_one_per_style"),
            models.CheckConstraint(
                condition=Q(strength__gte=0.0) & Q(strength__lte=1.0)
                & Q(blend__gte=0.0) & Q(blend__lte=1.0),
                name="preview_image_strength_and_blend_between_0_and_1",
            ),
        ]

    def __str__(self):
        return f"{self.style} for {self.preview_id} ({self.status})"
