from django.apps import AppConfig


class StylizeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "stylize"
    verbose_name = "Style transfer"
