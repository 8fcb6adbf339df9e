"""Account services: sign-up with a confirmed address, the confirmation link, deletion.

An account made by sign-up starts unconfirmed (``Profile.email_confirmed`` off): the
service mails it nothing but the confirmation link until that link is followed. Accounts
that staff make (admin, ``createsuperuser``, ``create_user``) get their profile on demand
from ``Profile.for_user`` and count as confirmed.

Sign-up never says whether an address is taken: a new address gets a confirmation link,
a taken one a note to its owner (or, if that account is itself unconfirmed, its link
again), and the caller shows the same page either way. Every link is built from
``settings.SITE_URL``, never from the request.

Following the link proves the mailbox, and only that: whoever follows it becomes the
account's only holder (``email_confirm``), with the password their own browser chose at
sign-up or one they choose then; every password, session and API token from before is
gone (docs/design/security.md, "Sign-up before the owner").
"""

import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import PasswordResetTokenGenerator, default_token_generator
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_decode, urlsafe_base64_encode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from rest_framework.authtoken.models import Token

from stylize.models import Profile

from . import jobs

logger = logging.getLogger(__name__)

def confirmation_timeout() -> int:
    """How long a confirmation link works, in seconds (``EMAIL_CONFIRMATION_TIMEOUT``)."""
    return settings.EMAIL_CONFIRMATION_TIMEOUT


def resend_seconds() -> int:
    """The least time between two account mails to one account, in seconds."""
    return settings.EMAIL_CONFIRMATION_RESEND_SECONDS


class EmailConfirmationTokenGenerator(PasswordResetTokenGenerator):
    """A signed, expiring token for the confirmation link.

    Its hash holds the confirmed flag and the address, so it works once (confirming
    flips the flag) and not for an address changed since. Logging in does not spoil it
    (an unconfirmed user may log in before following the link).
    """

    key_salt = "stylize.accounts.EmailConfirmationTokenGenerator"

    def _make_hash_value(self, user, timestamp):
        confirmed = Profile.for_user(user).email_confirmed
        return f"{user.pk}{user.email}{confirmed}{timestamp}"

    def check_token(self, user, token):
        if not (user and token):
            return False
        try:
            ts = base36_to_int(token.split("-")[0])
        except ValueError:
            return False
        if self._num_seconds(self._now()) - ts > confirmation_timeout():
            return False
        return any(
            constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        )


confirmation_tokens = EmailConfirmationTokenGenerator()


class _UnconfirmedStateTokens(EmailConfirmationTokenGenerator):
    """The tokens ``EmailConfirmationTokenGenerator`` made while the address was still
    unconfirmed: what a link that has been used was signed as."""

    def _make_hash_value(self, user, timestamp):
        return f"{user.pk}{user.email}False{timestamp}"

    def check_token(self, user, token):  # used links: however old
        try:
            ts = base36_to_int(token.split("-")[0])
        except ValueError:
            return False
        return any(
            constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        )


def _link(view: str, *args) -> str:
    return settings.SITE_URL + reverse(view, args=args)


def confirmation_link(user) -> str:
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return _link("stylize:email_confirm", uidb64, confirmation_tokens.make_token(user))


def _mail_allowed(user) -> bool:
    """At most one account mail per account per ``resend_seconds()`` (via the cache)."""
    return cache.add(f"stylize:account-mail:{user.pk}", True, timeout=resend_seconds())


def _send(message: EmailMessage) -> bool:
    """Send an account mail; a failure is logged, not raised, so that the page shown
    does not depend on it (the user can ask for the link again)."""
    try:
        message.send(fail_silently=False)
    except Exception:  # noqa: BLE001 - SMTP and socket errors alike
        logger.exception("Could not send %r to %s", message.subject, message.to)
        return False
    return True


def _duration(seconds: int) -> str:
    if seconds >= 2 * 86400:
        days = seconds // 86400
        return ngettext("%(count)d day", "%(count)d days", days) % {"count": days}
    if seconds >= 2 * 3600:
        hours = seconds // 3600
        return ngettext("%(count)d hour", "%(count)d hours", hours) % {"count": hours}
    minutes = max(1, seconds // 60)
    return ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes}


def user_language(user) -> str:
    """The language to write to ``user`` in: the one they last browsed in
    (``Profile.language``), else the one active now."""
    language = Profile.objects.filter(user=user).values_list("language", flat=True).first()
    return language or translation.get_language() or settings.LANGUAGE_CODE


def _name(user) -> str:
    return user.get_short_name() or user.get_username()


def _user_mail_send(*, user, write) -> bool:
    """Mail ``user`` at their address the ``(subject, body)`` that ``write(user)``
    returns, called with their language active (``user_language``). False if it could
    not be sent (``_send``: logged, not raised)."""
    with translation.override(user_language(user)):
        subject, body = write(user)
        message = EmailMessage(subject=subject, body=body, to=[user.email])
    return _send(message)


def confirmation_send(*, user) -> bool:
    """Mail ``user`` the link that confirms their address. False if nothing was sent."""
    if not user.email:
        return False
    return _user_mail_send(user=user, write=_confirmation_mail)


def _confirmation_mail(user) -> tuple[str, str]:
    """The confirmation mail's subject and body, in the active language."""
    return _("Confirm your email address for Prisma"), _mail_body(
        "confirmation", user, link=confirmation_link(user),
        duration=_duration(confirmation_timeout()))


def _taken_notice_send(*, user) -> bool:
    """Tell the owner of an address someone tried to sign up with it."""
    return _user_mail_send(user=user, write=_taken_notice_mail)


def _taken_notice_mail(user) -> tuple[str, str]:
    """The sign-up notice's subject and body, in the active language."""
    return _("Someone tried to sign up for Prisma with your address"), _mail_body(
        "taken_notice", user, username=user.get_username(), login=_link("stylize:login"),
        reset=_link("stylize:password_reset"))


def _mail_body(name: str, user, **values) -> str:
    """The body of the account mail ``stylize/mail/<name>.txt`` to ``user``, in the
    active language: its greeting and ``values`` filled in."""
    return render_to_string(f"stylize/mail/{name}.txt", {"name": _name(user), **values})


def _account_with_address(email: str):
    users = get_user_model().objects
    return users.filter(Q(email__iexact=email) | Q(username__iexact=email)).order_by("pk").first()


def _address_taken(*, user) -> None:
    """Mail the owner of a taken address: its link again if that account is still
    unconfirmed (nothing else may go to it), otherwise a note. At most once a minute."""
    if not user.email or not _mail_allowed(user):
        return
    if not Profile.for_user(user).email_confirmed:
        confirmation_send(user=user)
    else:
        _taken_notice_send(user=user)


@dataclass(frozen=True)
class SignupResult:
    """What sign-up did; the page shown must not depend on it.

    ``password_hash`` is the password just chosen, hashed afresh whatever happened: the
    browser that signed up keeps it (in its session, never in a link or a mail) and hands
    it to ``email_confirm`` when it follows the link, which makes it the account's only
    password. So the person who proves the mailbox ends up with the password *they*
    chose, even when someone else signed up with the address first."""

    email: str
    created: bool
    password_hash: str


def signup(*, email: str, password: str) -> SignupResult:
    """Make an unconfirmed account for ``email`` (already normalised, e.g. by
    ``SignupForm``) and mail it its confirmation link; if the address is taken, mail the
    existing owner instead and make nothing. Nobody is logged in, and an existing
    account's password is never changed here (a confirmed one's not at all; an
    unconfirmed one's only by ``email_confirm``, from the browser that follows the link).
    Every outcome hashes the password twice, so timing tells nothing either."""
    password_hash = make_password(password)
    existing = _account_with_address(email)
    if existing is None:
        User = get_user_model()
        try:
            with transaction.atomic():
                user = User.objects.create_user(username=email, email=email, password=password)
                Profile.objects.create(user=user, email_confirmed=False)
        except IntegrityError:  # the same address signed up a moment ago
            existing = _account_with_address(email)
        else:
            _mail_allowed(user)  # the first link counts as a mail for the resend limit
            confirmation_send(user=user)
            return SignupResult(email=email, created=True, password_hash=password_hash)
    make_password(password)  # as long as a new account takes, so timing tells nothing
    if existing is not None:
        _address_taken(user=existing)
    return SignupResult(email=email, created=False, password_hash=password_hash)


def confirmation_resend(*, user) -> bool:
    """Mail an unconfirmed user their link again, at most once a minute. False if
    nothing was sent (confirmed already, no address, or asked too recently)."""
    if Profile.for_user(user).email_confirmed or not user.email:
        return False
    if not _mail_allowed(user):
        return False
    return confirmation_send(user=user)


def confirmation_link_used(uidb64: str, token: str) -> bool:
    """Whether this is a genuine confirmation link whose address has been confirmed
    since (by this link or a newer one): opening it again tells its holder so, kindly,
    and logs nobody in. A forged or tampered link is False."""
    try:
        user = get_user_model().objects.get(pk=urlsafe_base64_decode(uidb64).decode())
    except (TypeError, ValueError, OverflowError, get_user_model().DoesNotExist):
        return False
    if not token or not Profile.for_user(user).email_confirmed:
        return False
    return _UnconfirmedStateTokens().check_token(user, token)


def confirmation_user(uidb64: str, token: str):
    """The user a confirmation link is for, if the link is genuine, unused and unexpired."""
    try:
        pk = urlsafe_base64_decode(uidb64).decode()
        user = get_user_model().objects.get(pk=pk)
    except (TypeError, ValueError, OverflowError, get_user_model().DoesNotExist):
        return None
    return user if confirmation_tokens.check_token(user, token) else None


@transaction.atomic
def email_confirm(*, user, password_hash: str | None = None) -> bool:
    """Mark the user's address confirmed and make whoever followed the link the
    account's only holder. False, and nothing changed, if it already was confirmed.

    Anyone could have signed up with the address before its owner and logged in (an
    unconfirmed account can), so nothing set before now survives: the password becomes
    ``password_hash`` (what the browser following the link chose at sign-up,
    ``SignupResult.password_hash``) or, without one, a random one nobody knows (the
    confirmer then chooses one: ``password_set_path``); as the password's hash changes,
    every session logged in before ends at its next request (Django checks the session's
    auth hash); every API token is deleted and the webhook secret is dropped (a new one
    is made when next asked for)."""
    profile = Profile.for_user(user)
    if not Profile.objects.filter(pk=profile.pk, email_confirmed=False).update(
            email_confirmed=True, webhook_secret=""):
        return False
    user.password = password_hash or make_password(secrets.token_urlsafe(32))
    user.save(update_fields=["password"])
    Token.objects.filter(user=user).delete()  # after the save, whose signal replaces it
    return True


def password_set_path(*, user) -> str:
    """The page where the holder of a just-confirmed address chooses the account's
    password (``views.EmailConfirmPasswordView``: Django's "choose a new password" form
    naming the address, with a fresh reset token, spoilt by the password it sets), then
    is logged in and lands on the upload page."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("stylize:email_confirm_password",
                   args=[uidb64, default_token_generator.make_token(user)])


def email_is_confirmed(user) -> bool:
    return Profile.for_user(user).email_confirmed


@transaction.atomic
def account_delete(*, user) -> None:
    """Delete the user with everything of theirs: each job through
    ``jobs.job_delete`` (its photo and result go once this is committed), then the
    user, whose profile and API token go with it."""
    for job in user.style_jobs.all():
        jobs.job_delete(job=job)
    user.delete()


def api_token_create(*, user) -> Token:
    """A new API token for ``user``; the old one, if any, stops working."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_replace(*, user) -> Token | None:
    """A new API token for ``user`` if they had one (the old key stops working)."""
    with transaction.atomic():
        had_token = Token.objects.filter(user=user).delete()[0] > 0
        return Token.objects.create(user=user) if had_token else None


def profile_update(*, user, email_results: bool) -> Profile:
    """The user's settings on the profile page: whether results are emailed."""
    profile = Profile.for_user(user)
    profile.email_results = email_results
    profile.save(update_fields=["email_results"])
    return profile


#: The webhook secret's random bytes (43 URL-safe characters).
WEBHOOK_SECRET_BYTES = 32


def profile_webhook_secret(*, user) -> str:
    """The key the user's job webhooks are signed with (``X-Prisma-Signature``), made
    the first time it is asked for."""
    profile = Profile.for_user(user)
    if not profile.webhook_secret:
        Profile.objects.filter(pk=profile.pk, webhook_secret="").update(
            webhook_secret=secrets.token_urlsafe(WEBHOOK_SECRET_BYTES))
        profile.refresh_from_db(fields=["webhook_secret"])  # ours, or one made at once
    return profile.webhook_secret


def profile_webhook_secret_rotate(*, user) -> str:
    """A new webhook secret for ``user``: webhooks are signed with it from now on, and
    no longer with the old one."""
    profile = Profile.for_user(user)
    profile.webhook_secret = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
    profile.save(update_fields=["webhook_secret"])
    return profile.webhook_secret


def profile_language_set(*, user, language: str) -> bool:
    """Remember ``language`` (a code of ``settings.LANGUAGES``) as the one the user's
    emails are written in. False if it is not one of them or was already set."""
    if language not in dict(settings.LANGUAGES) or user.pk is None:  # None: just deleted
        return False
    profiles = Profile.objects.filter(user_id=user.pk)
    if profiles.exists():
        return bool(profiles.exclude(language=language).update(language=language))
    if not get_user_model().objects.filter(pk=user.pk).exists():
        return False
    Profile.for_user(user)
    return bool(profiles.update(language=language))


@transaction.atomic
def account_ensure(*, username: str, password: str, reset_password: bool, **fields):
    """The account ``username``, made with ``fields`` and ``password`` if it is missing;
    an existing one gets ``password`` only with ``reset_password``. For
    ``manage.py ensure_accounts``."""
    user, created = get_user_model().objects.get_or_create(username=username, defaults=fields)
    if created or reset_password:
        user.set_password(password)
        user.save()
    return user
