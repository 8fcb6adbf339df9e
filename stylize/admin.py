from django.contrib import admin, messages
from django.utils.html import format_html

from .models import Style, StyleJob
from .services.styles import styles_retrain
from .services.training import training_config


def _thumbnail(image_field):
    if not image_field:
        return "—"
    return format_html('<img src="{}" alt="" style="max-height:48px">', image_field.url)


@admin.register(Style)
class StyleAdmin(admin.ModelAdmin):
    list_display = ["name", "painting", "status", "model_name", "bank_index", "live_version",
                    "is_public", "updated_at"]
    list_filter = ["status", "is_public", "model_name"]
    search_fields = ["name", "slug", "model_name", "description"]
    prepopulated_fields = {"slug": ["name"], "model_name": ["name"]}
    # Bank slots change only by training (manage.py train_bank / train_style, Retrain).
    readonly_fields = ["bank_index", "bank_slots", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.in_bank:
            fields.append("model_name")  # the bank's: moving one slot out would break it
        return fields
    actions = ["retrain"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "painting", "is_public"]}),
        ("Model", {"fields": ["model_name", "bank_index", "bank_slots", "live_version", "status",
                              "status_reason"]}),
        ("Live version", {"fields": ["training_settings", "metrics", "sample"]}),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.action(description="Retrain the selected styles (training queue; a bank style "
                              "retrains only its own slot)")
    def retrain(self, request, queryset):
        # The task builds the config from the settings in force where it runs.
        config = training_config()
        queued = styles_retrain(styles=queryset)
        self.message_user(
            request,
            f"Queued training for {queued} style(s) "
            f"({config.preset} preset, {config.steps} steps on {config.data_dir}).",
            messages.SUCCESS,
        )

    @admin.display(description="Painting")
    def painting(self, obj):
        return _thumbnail(obj.painting)


@admin.register(StyleJob)
class StyleJobAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "style", "blend_with", "stroke", "status", "attempts",
                    "created_at", "finished_at"]
    list_filter = ["status", "style", "stroke", "preserve_colors"]
    search_fields = ["id", "owner__username", "owner__email", "style__name", "error"]
    list_select_related = ["owner", "style"]
    # Users' photos and results are private (stylize.storage): staff see that they
    # exist, not what they show, and cannot replace them.
    exclude = ["input_image", "result_image"]
    readonly_fields = [
        "id", "photo", "input_filename", "result", "created_at", "enqueued_at", "started_at",
        "finished_at", "emailed_at", "attempts",
    ]
    date_hierarchy = "created_at"
    raw_id_fields = ["owner"]

    def has_add_permission(self, request):
        return False  # a job starts from a user's upload

    @admin.display(description="Photo")
    def photo(self, obj):
        return "stored (private)" if obj.input_image else "—"

    @admin.display(description="Result")
    def result(self, obj):
        return "stored (private)" if obj.result_image else "—"
