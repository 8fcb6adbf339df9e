from django.apps import AppConfig


class StylizeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "stylize"
    verbose_name = "Style transfer"

    def ready(self):
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_in
        from django.db.models.signals import post_delete, post_save, pre_save

        from . import signals, tasks  # noqa: F401  (tasks: in the Celery registry, for services.queueing)

        # A password change, however it is made, replaces the API token (stylize.signals).
        pre_save.connect(signals.user_pre_save, sender=settings.AUTH_USER_MODEL,
                         dispatch_uid="stylize.user_pre_save")
        post_save.connect(signals.user_post_save, sender=settings.AUTH_USER_MODEL,
                          dispatch_uid="stylize.user_post_save")
        # Previews: a visitor's become the account's at log-in; files go with their rows.
        user_logged_in.connect(signals.user_logged_in_claim_previews,
                               dispatch_uid="stylize.user_logged_in_claim_previews")
        for model in ("Preview", "PreviewImage"):
            post_delete.connect(signals.preview_files_delete, sender=f"stylize.{model}",
                                dispatch_uid=f"stylize.{model}_files_delete")
        # A user's own style: its private painting and sample go with its row (the owner's
        # account deleted, the sweep), once that is committed.
        post_delete.connect(signals.own_style_files_delete, sender="stylize.Style",
                            dispatch_uid="stylize.own_style_files_delete")
        # A bank's new live version: users' own styles of it follow (services.events).
        from .services import events

        events.bank_went_live.connect(signals.bank_went_live_follow,
                                      dispatch_uid="stylize.bank_went_live_follow")
