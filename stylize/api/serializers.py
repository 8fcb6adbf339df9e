from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import DEFAULT_MAX_SIDE, MAX_MAX_SIDE, MIN_MAX_SIDE, Style, StyleJob
from ..selectors import style_list_offered
from ..validators import validate_photo_upload


def _absolute(request, url):
    if not url:
        return None
    return request.build_absolute_uri(url) if request is not None else url


class StyleSerializer(serializers.ModelSerializer):
    painting = serializers.SerializerMethodField()
    sample = serializers.SerializerMethodField()

    class Meta:
        model = Style
        fields = ["slug", "name", "description", "painting", "sample"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_painting(self, style) -> str:
        return _absolute(self.context.get("request"), style.style_image.url)

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_sample(self, style):
        if not style.example_image:
            return None
        return _absolute(self.context.get("request"), style.example_image.url)


class JobSerializer(serializers.ModelSerializer):
    style = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    result_url = serializers.SerializerMethodField()

    class Meta:
        model = StyleJob
        fields = [
            "id", "status", "error", "result_url", "style", "strength", "preserve_colors",
            "max_side", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_result_url(self, job):
        """Where the owner downloads the result (with the same auth); null until succeeded."""
        if job.status != StyleJob.Status.SUCCEEDED or not job.result_image:
            return None
        return _absolute(self.context.get("request"), reverse("api:job-result", args=[job.pk]))


@extend_schema_field(OpenApiTypes.STR)
class OfferedStyleField(serializers.SlugRelatedField):
    default_error_messages = {
        "does_not_exist": (
            "There is no style “{value}” to use. GET /api/v1/styles/ lists the styles."
        ),
        "invalid": "Give the style as its slug, e.g. “starry-night”.",
    }

    def get_queryset(self):
        return style_list_offered()


class JobCreateSerializer(serializers.Serializer):
    image = serializers.FileField(
        allow_empty_file=True,  # the shared validator says "The file is empty."
        help_text="The photo: JPEG, PNG or WebP (checked by content, not by name).",
    )
    style = OfferedStyleField(slug_field="slug", help_text="The slug of an offered style.")
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

    def validate_strength(self, value):
        if value != value or value in (float("inf"), float("-inf")):  # NaN, ±inf
            raise serializers.ValidationError("Strength must be a number from 0 to 1.")
        return value

    def validate_image(self, image):
        try:
            validate_photo_upload(image)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages, code=exc.code) from exc
        return image
