"""Signal receivers of the app, connected in ``StylizeConfig.ready()``.

A password change replaces the user's API token. Whatever changes the password — the
password change page, the reset link, the admin, ``manage.py changepassword``,
``user.set_password(); user.save()`` in a shell — it ends in ``User.save()``, so the one
place that sees them all is the user model's ``pre_save`` (which compares the hash about
to be stored with the one in the database) and ``post_save`` (which replaces the token
once the new hash is written). A user who had a token gets a new one and the old key
stops working at once; a user without one still has none. Signed-in sessions elsewhere
already end with a password change (Django's session hash).

Not a change: Django upgrading a hash to a stronger hasher at log-in (the same password,
saved with ``update_fields=["password"]`` and no raw password set, as
``AbstractBaseUser.check_password`` does), and an update that leaves the hash alone.
"""

from .preview_sessions import session_preview_ids
from .services import own_styles, previews
from .services.accounts import api_token_replace

PASSWORD_CHANGED = "_prisma_password_changed"


def _is_hash_upgrade(instance, update_fields) -> bool:
    return (
        getattr(instance, "_password", None) is None
        and update_fields is not None
        and set(update_fields) == {"password"}
    )


def user_pre_save(sender, instance, raw=False, update_fields=None, **kwargs):
    """Remember on the instance whether this save changes its password."""
    setattr(instance, PASSWORD_CHANGED, False)
    if raw or instance.pk is None:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    stored = (
        sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    )
    if stored is None or stored == instance.password:
        return
    setattr(instance, PASSWORD_CHANGED, not _is_hash_upgrade(instance, update_fields))


def user_post_save(sender, instance, created=False, raw=False, **kwargs):
    """After a password change is written, replace the user's API token."""
    if raw or not getattr(instance, PASSWORD_CHANGED, False):
        return
    setattr(instance, PASSWORD_CHANGED, False)
    api_token_replace(user=instance)


def user_logged_in_claim_previews(sender, request=None, user=None, **kwargs):
    """The previews this browser made without an account become the account's as it
    logs in (the log-in page, or the sign-up's confirmation link in the same browser)."""
    session = getattr(request, "session", None)
    if session is not None and user is not None:
        previews.previews_claim(user=user, preview_ids=session_preview_ids(session))


def preview_files_delete(sender, instance, **kwargs):
    """A preview's files (its photo and working copy) or a painting's image go once the
    deletion is committed, however the row went: the hourly sweep, its owner, the job it
    was made from or the account (a cascade)."""
    files = instance.stored_files if hasattr(instance, "stored_files") else [instance.image]
    previews.preview_files_delete(files)


def own_style_files_delete(sender, instance, **kwargs):
    """A user's own style's private files (painting, latest sample) go once its deletion
    is committed, however the row went (``own_styles.own_style_delete``, the sweep, or
    the owner's account)."""
    if instance.owner_id is not None:
        previews.preview_files_delete(instance.stored_own_files)


def bank_went_live_follow(sender, model_name=None, **kwargs):
    """A bank went live at a new version (``services.events.bank_went_live``): users' own
    styles of it move to it, or are learnt again on it."""
    if model_name:
        own_styles.own_styles_follow_bank(model_name=model_name)
