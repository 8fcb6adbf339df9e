from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import (
    DEFAULT_MAX_SIDE,
    DEFAULT_STROKE,
    MAX_MAX_SIDE,
    MIN_MAX_SIDE,
    Preview,
    PreviewImage,
    Stroke,
    Style,
    StyleJob,
)
from ..selectors import (
    job_jobs_ahead,
    job_list_for_owner,
    preview_images,
    preview_list_for,
    style_list_mix_partners,
    style_list_usable,
)
from ..services import webhooks
from ..services.jobs import DEFAULT_BLEND, job_mix_clean
from ..services.own_styles import own_style_progress, own_style_state
from ..services.previews import JOB_PHOTO_CHOICES, preview_expires_at
from ..services.sharing import job_share_is_live, job_share_url
from ..storage import versioned_url
from ..strokes import STROKE_WORKING_SIDES
from ..validators import validate_photo_upload


def _absolute(request, url):
    """``url`` absolute: from the request, or without one (a webhook's body) from
    ``SITE_URL``."""
    if not url:
        return None
    if request is not None:
        return request.build_absolute_uri(url)
    return settings.SITE_URL + url if url.startswith("/") else url



def own_source_job(user, pk):
    """The asker's own job ``pk`` with its photo still stored, whose photo a new job or
    preview paints (``source_job``); a 400 naming it otherwise."""
    job = (job_list_for_owner(owner=user).filter(pk=pk).first()
           if user is not None and user.is_authenticated else None)
    if job is None or not job.input_image:
        raise serializers.ValidationError({"source_job": [_(
            "There is no job “%(id)s” of yours.") % {"id": pk}]})
    return job


class PhotoUploadField(serializers.FileField):
    """An uploaded photo (or painting), checked as every upload is
    (``validators.validate_photo_upload``: JPEG, PNG, WebP, HEIC or AVIF by content,
    ``UPLOAD_MAX_BYTES``, ``UPLOAD_MAX_PIXELS``), a refusal as a 400 with that validator's
    messages and code. An empty file is let through to that validator, which says so."""

    def __init__(self, **kwargs):
        super().__init__(allow_empty_file=True, **kwargs)

    def to_internal_value(self, data):
        upload = super().to_internal_value(data)
        try:
            validate_photo_upload(upload)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages, code=exc.code) from exc
        return upload


class StyleSerializer(serializers.ModelSerializer):
    painting = serializers.SerializerMethodField(
        help_text="The painting; for one of your own styles a link only you can open.")
    sample = serializers.SerializerMethodField(
        help_text="A photo painted in the style; for one of your own, the latest sample its "
        "learning painted (only you can open it), or null.")
    bank = serializers.SerializerMethodField(
        help_text="The network (bank) the style paints with; styles of one bank can be "
        "mixed (mixes_with lists those you may use). A style trained on its own has a bank "
        "of its own."
    )
    mixes_with = serializers.SerializerMethodField(
        help_text="Slugs of the styles this one can be mixed with (a job's `blend_with`)."
    )
    own = serializers.SerializerMethodField(
        help_text="Whether this is one of your own styles (POST /api/v1/styles/): only you "
        "see and use it.")
    status = serializers.SerializerMethodField(
        help_text="ready (usable), or for one of your own: queued, learning, relearning "
        "(learnt again on a new version of its bank; usable meanwhile) or failed (see "
        "`error`).")
    progress = serializers.SerializerMethodField(
        help_text="For one of your own styles being learnt: step, steps, seconds (trained "
        "so far), seconds_left (estimated, or null); null otherwise.")
    error = serializers.SerializerMethodField(
        help_text="Why one of your own styles could not be learnt, or \"\".")

    class Meta:
        model = Style
        fields = ["slug", "name", "description", "painting", "sample", "bank", "mixes_with",
                  "own", "status", "progress", "error"]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "nullable": True})
    def get_bank(self, style):
        return style.bank_name

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_own(self, style) -> bool:
        return style.is_own

    @extend_schema_field({"type": "string", "enum": ["ready", "queued", "learning",
                                                     "relearning", "failed"]})
    def get_status(self, style):
        return own_style_state(style) if style.is_own else "ready"

    @extend_schema_field({"type": "object", "nullable": True})
    def get_progress(self, style):
        if not style.is_own or own_style_state(style) not in ("learning", "relearning"):
            return None
        return {key: value for key, value in own_style_progress(style).items()
                if key != "sample_step"}

    @extend_schema_field(OpenApiTypes.STR)
    def get_error(self, style) -> str:
        return style.status_reason if style.is_own and style.status == Style.Status.FAILED else ""

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_mixes_with(self, style):
        return [partner.slug for partner in style_list_mix_partners(style)]

    @extend_schema_field(OpenApiTypes.URI)
    def get_painting(self, style) -> str:
        if style.is_own:
            return _absolute(self.context.get("request"),
                             reverse("api:style-painting", args=[style.slug]))
        return _absolute(self.context.get("request"), style.painting.url)

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_sample(self, style):
        if style.is_own:
            if not style.private_sample:
                return None
            url = versioned_url(reverse("api:style-sample", args=[style.slug]),
                                style.private_sample)
            return _absolute(self.context.get("request"), url)
        if not style.sample:
            return None
        return _absolute(self.context.get("request"), style.sample.url)


class OwnStyleCreateSerializer(serializers.Serializer):
    """A painting of yours to learn as a style (``services.own_styles.own_style_create``)."""

    painting = PhotoUploadField(
        help_text="The painting: JPEG, PNG, WebP, HEIC or AVIF, checked as photos are "
        "(UPLOAD_MAX_BYTES, UPLOAD_MAX_PIXELS), each side at least OWN_STYLE_MIN_SIDE px.")
    name = serializers.CharField(max_length=100, help_text="What you call it (1–100 "
                                 "characters, none of your other styles' names).")


class JobSerializer(serializers.ModelSerializer):
    style = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    blend_with = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True,
        help_text="The second style mixed in, or null.",
    )
    result_url = serializers.SerializerMethodField()
    progress = serializers.FloatField(
        read_only=True, help_text="The fraction of the painting done, 0 to 1: model passes "
        "(tiles) done out of the photo's total; 1 once painted.")
    stage = serializers.ChoiceField(
        choices=StyleJob.Stage.choices, read_only=True,
        help_text="queued (waiting), painting (the network at work), finishing (the "
        "result upsampled and stored), done (succeeded or failed: see `status`).")
    jobs_ahead = serializers.SerializerMethodField(
        help_text="While queued: how many jobs wait before this one in its queue.")
    share_url = serializers.SerializerMethodField(
        help_text="The live share link (POST …/share/ makes one), or null.")
    share_expires_at = serializers.SerializerMethodField(
        help_text="When the share link stops working, or null.")
    callback_url = serializers.CharField(
        read_only=True, help_text="The webhook the job is POSTed to when it ends, or \"\".")
    callback_delivered_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="When the webhook was delivered (a 2xx answer), or null.")
    callback_error = serializers.CharField(
        read_only=True, help_text="Why the webhook's last attempt failed, or \"\".")

    class Meta:
        model = StyleJob
        fields = [
            "id", "status", "stage", "progress", "jobs_ahead", "error", "result_url",
            "share_url", "share_expires_at", "style", "blend_with", "blend", "stroke",
            "strength", "preserve_colors", "max_side", "created_at", "started_at",
            "finished_at", "callback_url", "callback_delivered_at", "callback_error",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_jobs_ahead(self, job) -> int:
        return job_jobs_ahead(job)

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_share_url(self, job):
        return job_share_url(job)

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_share_expires_at(self, job):
        if not job_share_is_live(job):
            return None
        return serializers.DateTimeField().to_representation(job.share_expires_at)

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_result_url(self, job):
        """Where the owner downloads the result (with the same auth); null until succeeded."""
        if job.status != StyleJob.Status.SUCCEEDED or not job.result_image:
            return None
        return _absolute(self.context.get("request"), reverse("api:job-result", args=[job.pk]))


#: What a job's webhook leaves out of its JSON: how the webhook itself is doing, which
#: would change the body from one attempt to the next.
WEBHOOK_OMITS = ("callback_delivered_at", "callback_error")


def job_api_data(job: StyleJob) -> dict:
    """The job as ``GET /api/v1/jobs/<id>/`` shows it, its links from ``SITE_URL``, less
    ``WEBHOOK_OMITS``: the body of its webhook (``services.webhooks``), the same bytes
    at every attempt."""
    data = JobSerializer(job, context={"request": None}).data
    return {name: value for name, value in data.items() if name not in WEBHOOK_OMITS}


@extend_schema_field(OpenApiTypes.STR)
class OfferedStyleField(serializers.SlugRelatedField):
    default_error_messages = {
        "does_not_exist": _(
            "There is no style “{value}” to use. GET /api/v1/styles/ lists the styles."
        ),
        "invalid": _("Give the style as its slug, e.g. “starry-night”."),
    }

    def get_queryset(self):
        # The offered styles, and the asker's own learnt ones: nobody else's.
        request = self.context.get("request")
        return style_list_usable(getattr(request, "user", None))


_STROKE_SIDES = ", ".join(
    f"{stroke} ({STROKE_WORKING_SIDES[stroke]} px)" for stroke in Stroke.values
)


class StrokeField(serializers.ChoiceField):
    """Documented with its choices, but checked by ``services.jobs.job_mix_clean`` (the one
    rule for the API, the upload page and the CLI), so the message is the same."""

    def to_internal_value(self, data):
        return str(data)


class JobCreateSerializer(serializers.Serializer):
    image = PhotoUploadField(
        required=False,
        help_text="The photo: JPEG, PNG, WebP, HEIC or AVIF (checked by content, not by "
        "name). Or, instead, `preview` or `source_job`: exactly one of the three.",
    )
    preview = serializers.UUIDField(
        required=False,
        help_text="Instead of `image`: the id of one of your previews (POST "
        "/api/v1/previews/): its photo is used, not uploaded again.",
    )
    source_job = serializers.UUIDField(
        required=False,
        help_text="Instead of `image`: the id of one of your jobs, whose photo is used again. "
        "Left out, `style` is that job's, and so are `max_side`, `stroke` and "
        "`preserve_colors`; `strength` and the mix are as given (full strength, no mix).",
    )
    style = OfferedStyleField(slug_field="slug", required=False,
                              help_text="The slug of an offered style (required unless "
                              "`source_job` is given).")
    strength = serializers.FloatField(
        required=False, default=1.0, min_value=0.0, max_value=1.0,
        help_text="How strongly to repaint: 0 keeps the photo, 1 is the full style.",
    )
    preserve_colors = serializers.BooleanField(
        required=False, default=False, help_text="Keep the photo's own colours."
    )
    max_side = serializers.IntegerField(
        required=False, default=DEFAULT_MAX_SIDE, min_value=MIN_MAX_SIDE,
        max_value=MAX_MAX_SIDE, help_text="The result's longer side in pixels, at most.",
    )
    # Checked together, by services.jobs.job_mix_clean (the same rule as the page and the CLI).
    blend_with = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None,
        help_text="The slug of a second style to mix in. It must be one of the style's "
        "`mixes_with` (GET /api/v1/styles/): only styles of one bank can be mixed. "
        "Leave it out for one style.",
    )
    blend = serializers.FloatField(
        required=False, allow_null=True, default=None,
        help_text="The second style's share of the mix, from 0 (only `style`) to 1 (only "
        f"`blend_with`). Left out, it is {DEFAULT_BLEND:g} (an even mix) when `blend_with` "
        "is given, and 0 otherwise; above 0 it needs `blend_with`.",
    )
    stroke = StrokeField(
        choices=Stroke.choices, required=False, default=DEFAULT_STROKE,
        help_text="How big the brush strokes are, by the size the network paints at "
        f"(the longer side): {_STROKE_SIDES}. Photos smaller than that are painted as they are.",
    )

    callback_url = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=True,
        help_text="A webhook: when the job ends (succeeded or failed) its JSON, as GET "
        "/api/v1/jobs/<id>/ shows it, is POSTed here, signed with your webhook secret (the "
        "profile page) in `X-Prisma-Signature: sha256=<hex HMAC-SHA256 of the body>`. "
        "It must be https:// and reach a public address (loopback, private, link-local "
        "and metadata addresses are refused, here and again when it is sent). Failures "
        "are retried with backoff; redirects are not followed. Leave it out for none.",
    )

    def validate_callback_url(self, value):
        try:
            return webhooks.callback_url_clean(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["callback_url"]) from exc

    def validate_strength(self, value):
        if value != value or value in (float("inf"), float("-inf")):  # NaN, ±inf
            raise serializers.ValidationError(_("Strength must be a number from 0 to 1."))
        return value

    def validate(self, attrs):
        attrs = self._photo_source(attrs)
        try:
            mix = job_mix_clean(style=attrs["style"], blend_with=attrs.get("blend_with"),
                                blend=attrs.get("blend"), stroke=attrs.get("stroke"))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        attrs = {**attrs, "blend_with": mix.blend_with, "blend": mix.blend, "stroke": mix.stroke}
        if attrs.get("source_job") is not None:
            # Left out: the source job's (previews.job_create_from_job), not the defaults.
            for name in JOB_PHOTO_CHOICES:
                if name not in self.initial_data:
                    attrs.pop(name, None)
        return attrs

    def _photo_source(self, attrs):
        """Exactly one of ``image``, ``preview`` and ``source_job``; the latter two as the
        asker's own ``Preview`` / ``StyleJob``; ``style`` the source job's when left out."""
        given = [name for name in ("image", "preview", "source_job")
                 if attrs.get(name) is not None]
        if len(given) != 1:
            raise serializers.ValidationError({"image": [_(
                "Send the photo as “image”, or name one of your previews (“preview”) or "
                "jobs (“source_job”) whose photo to use: exactly one of the three.")]})
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if "preview" in given:
            preview = preview_list_for(user=user).filter(pk=attrs["preview"]).first()
            if preview is None:
                raise serializers.ValidationError({"preview": [_(
                    "There is no preview “%(id)s” of yours: previews are deleted an hour "
                    "after they were made.") % {"id": attrs["preview"]}]})
            attrs["preview"] = preview
        if "source_job" in given:
            attrs["source_job"] = job = own_source_job(user, attrs["source_job"])
            if attrs.get("style") is None:
                attrs["style"] = style_list_usable(user).filter(pk=job.style_id).first()
        if attrs.get("style") is None:
            raise serializers.ValidationError({"style": [_(
                "Choose a style: GET /api/v1/styles/ lists them.")]})
        return attrs


class JobShareSerializer(serializers.Serializer):
    """A job's live share link."""

    share_url = serializers.URLField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)


# --- Previews ---------------------------------------------------------------------------


class PreviewImageSerializer(serializers.ModelSerializer):
    """One style's painting of a preview's photo."""

    style = serializers.SlugRelatedField(slug_field="slug", read_only=True,
                                         help_text="The style's slug.")
    name = serializers.CharField(source="style.local_name", read_only=True,
                                 help_text="The style's name, in the language asked for.")
    status = serializers.ChoiceField(
        choices=PreviewImage.Status.choices, read_only=True,
        help_text="queued (being painted, at these settings), done, or failed (see `error`).")
    image_url = serializers.SerializerMethodField(
        help_text="The painting (about PREVIEW_SIDE px, 320 by default, on the longer side) "
        "as JPEG, or `?format=png`; for you only. While a re-paint is queued, the previous "
        "painting; null before the first.")
    blend_with = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True,
                                              help_text="The second style mixed in, or null.")

    class Meta:
        model = PreviewImage
        fields = ["style", "name", "status", "image_url", "strength", "blend_with", "blend",
                  "preserve_colors", "error"]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_image_url(self, image):
        if not image.image:
            return None
        url = reverse("api:preview-style-image",
                      kwargs={"pk": image.preview_id, "slug": image.style.slug})
        return _absolute(self.context.get("request"), versioned_url(url, image.image))


class PreviewSerializer(serializers.ModelSerializer):
    """A photo painted small in every offered style."""

    expires_at = serializers.SerializerMethodField(
        help_text="When the preview, its photo and paintings are deleted (an hour after).")
    source_job = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The job whose photo it paints, or null.")
    done = serializers.SerializerMethodField(
        help_text="Whether every style's painting is done or failed (nothing queued).")
    styles = serializers.SerializerMethodField(
        help_text="Every style offered when the preview was made, by name.")

    class Meta:
        model = Preview
        fields = ["id", "created_at", "expires_at", "source_job", "done", "styles"]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "format": "date-time"})
    def get_expires_at(self, preview):
        return serializers.DateTimeField().to_representation(preview_expires_at(preview))

    def _images(self, preview):
        cache = self.context.setdefault("_preview_images", {})
        if preview.pk not in cache:
            cache[preview.pk] = list(preview_images(preview))
        return cache[preview.pk]

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_done(self, preview) -> bool:
        return all(image.status != PreviewImage.Status.QUEUED for image in self._images(preview))

    @extend_schema_field(PreviewImageSerializer(many=True))
    def get_styles(self, preview):
        return PreviewImageSerializer(self._images(preview), many=True,
                                      context=self.context).data


class PreviewCreateSerializer(serializers.Serializer):
    image = PhotoUploadField(
        required=False,
        help_text="The photo: JPEG, PNG, WebP, HEIC or AVIF (checked as a job's upload is).",
    )
    source_job = serializers.UUIDField(
        required=False,
        help_text="Instead of `image`: one of your jobs, whose photo is painted (no upload).",
    )

    def validate(self, attrs):
        if (attrs.get("image") is None) == (attrs.get("source_job") is None):
            raise serializers.ValidationError({"image": [_(
                "Send the photo as “image”, or name one of your jobs (“source_job”) whose "
                "photo to paint: one of the two.")]})
        if attrs.get("source_job") is not None:
            user = getattr(self.context.get("request"), "user", None)
            attrs["source_job"] = own_source_job(user, attrs["source_job"])
        return attrs


class PreviewPaintSerializer(serializers.Serializer):
    """A style of a preview painted again: checked by ``previews.preview_image_repaint``
    (the mix by ``jobs.job_mix_clean``, as for a job)."""

    strength = serializers.FloatField(
        required=False, default=1.0, min_value=0.0, max_value=1.0,
        help_text="How strongly to repaint: 0 keeps the photo, 1 is the full style.")
    preserve_colors = serializers.BooleanField(required=False, default=False,
                                               help_text="Keep the photo's own colours.")
    blend_with = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None,
        help_text="The slug of a second style of the same bank to mix in (the style's "
        "`mixes_with`), or left out.")
    blend = serializers.FloatField(
        required=False, allow_null=True, default=None,
        help_text="The second style's share of the mix, 0 to 1 (left out: an even mix).")
