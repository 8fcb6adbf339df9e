"""The web pages: gallery, accounts, upload, job page with live status, "my jobs", and
the person's own styles (their paintings, learnt: docs/design/own-styles.md)."""

import functools
import json
import math
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.authtoken.models import Token

from .api.throttles import (
    JobCreateThrottle,
    PasswordResetClientThrottle,
    PasswordResetEmailThrottle,
    PreviewAnonymousThrottle,
)
from .downloads import UnknownDownloadFormat, result_file_response
from .forms import (
    ALLOWED_CONTENT_TYPES,
    AccountDeleteForm,
    JobAgainForm,
    OwnStyleForm,
    PasswordResetForm,
    ProfileForm,
    SignupForm,
    UploadForm,
)
from .imaging.stroke_size import size_plan
from .models import Profile, Stroke, StyleJob
from .preview_sessions import (
    session_pending,
    session_pending_clear,
    session_pending_set,
    session_preview_ids,
    session_preview_remember,
)
from .selectors import (
    job_for_share_token,
    job_jobs_ahead,
    job_list_for_owner,
    own_style_list_for,
    preview_list_for,
    style_list_offered,
)
from .services import accounts, jobs, own_styles, previews, sharing
from .services.job_files import DOWNLOAD_CHOICES, job_expires_at
from .services.jobs import DEFAULT_BLEND
from .storage import private_file_response, versioned_url
from .strokes import STROKE_WORKING_SIDES
from .validators import upload_max_bytes

#: What this browser signed up with ({"email", "password_hash"}), until it follows the
#: link: the password it chose becomes the account's (accounts.email_confirm).
SIGNUP_SESSION_KEY = "stylize_signup"
POLL_INTERVAL_MS = 1500


def _status_json(view):
    """A page's polled ``status.json``: for a logged-in GET, the dict ``view`` returns as
    JSON, never cached."""

    @require_GET
    @login_required
    @functools.wraps(view)
    def status_json(request, *args, **kwargs):
        response = JsonResponse(view(request, *args, **kwargs))
        response["Cache-Control"] = "no-store"
        return response

    return status_json


def home(request):
    return render(request, "stylize/home.html", {"styles": style_list_offered()})


# --- Accounts ------------------------------------------------------------------------


def signup(request):
    if request.user.is_authenticated:
        return redirect("stylize:upload")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        # The same page whether the address was new or taken (its owner gets a mail).
        result = accounts.signup(
            email=form.cleaned_data["email"], password=form.cleaned_data["password1"]
        )
        # Kept in this browser only, whatever the outcome (the page must not tell): the
        # link logs in only the browser that signed up, with the password chosen here.
        request.session[SIGNUP_SESSION_KEY] = {
            "email": result.email, "password_hash": result.password_hash}
        return render(request, "registration/signup_done.html", {"email": result.email})
    return render(request, "registration/signup.html", {"form": form})


def _signup_password_hash(request, user) -> str | None:
    """The password this browser chose when it signed up with ``user``'s address."""
    pending = request.session.get(SIGNUP_SESSION_KEY)
    if isinstance(pending, dict) and str(pending.get("email", "")).casefold() == (
            user.email.casefold()):
        return pending.get("password_hash") or None
    return None


def email_confirm(request, uidb64, token):
    """The emailed link: confirms the address and makes whoever followed it the
    account's only holder (``accounts.email_confirm``). The browser that signed up with
    the address is logged in with the password it chose then; any other browser (the
    link opened elsewhere, or sent by someone else) is logged into nothing and goes on
    to choose the account's password."""
    user = accounts.confirmation_user(uidb64, token)
    if user is None or not user.is_active:
        if request.user.is_authenticated and accounts.email_is_confirmed(request.user):
            messages.info(request, _("Your email address is already confirmed."))
            return redirect("stylize:upload")
        if accounts.confirmation_link_used(uidb64, token):
            return _email_confirmed_already(request)
        return render(request, "registration/email_confirm_invalid.html", status=400)
    password_hash = _signup_password_hash(request, user)
    if not accounts.email_confirm(user=user, password_hash=password_hash):
        return _email_confirmed_already(request)  # a moment ago, by the same link
    if password_hash is None:
        if request.user.pk == user.pk:
            logout(request)  # a log-in with the password that is gone
        messages.success(request, _(
            "Your email address is confirmed. Choose a password to log in with."))
        return redirect(accounts.password_set_path(user=user))
    request.session.pop(SIGNUP_SESSION_KEY, None)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, _(
        "Your email address is confirmed. Welcome to Prisma! Upload a photo to repaint it."))
    return redirect("stylize:upload")


def _email_confirmed_already(request):
    """A used confirmation link opened again: the address is confirmed; nobody is logged
    in by it (log in with your password, or choose one)."""
    return render(request, "registration/email_confirmed_already.html")


class EmailConfirmPasswordView(auth_views.PasswordResetConfirmView):
    """Where the holder of a just-confirmed address who did not sign up in this browser
    chooses the account's password (``accounts.password_set_path``): Django's reset
    form, naming the address it is for, then logged in and on to the upload page, as
    the browser that signed up is by the link itself."""

    template_name = "registration/prisma_password_reset_confirm.html"
    success_url = reverse_lazy("stylize:upload")
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if self.validlink:
            context["account_email"] = self.user.email or self.user.get_username()
        return context

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, _(
            "Your password is set. Welcome to Prisma! Upload a photo to repaint it."))
        return response


@require_POST
@login_required
def email_confirm_resend(request):
    if accounts.email_is_confirmed(request.user):
        messages.info(request, _("Your email address is already confirmed."))
    elif accounts.confirmation_resend(user=request.user):
        messages.success(request, _("We have sent a new link to %(email)s.")
                         % {"email": request.user.email})
    else:
        messages.error(
            request, _("We could not send a new link just now. Please wait a minute and try again.")
        )
    return redirect("stylize:profile")


@login_required
def account_delete(request):
    """Delete the account and everything in it, once the password is given again."""
    form = AccountDeleteForm(request.POST if request.method == "POST" else None,
                             user=request.user)
    if request.method == "POST" and form.is_valid():
        accounts.account_delete(user=request.user)
        logout(request)
        messages.success(request, _("Your account, your jobs and their images are deleted."))
        return redirect("stylize:home")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/account_delete.html", {"form": form}, status=status)


@never_cache  # it shows the API token: no copy in any cache, the browser's included
@login_required
def profile(request):
    profile = Profile.for_user(request.user)
    form = ProfileForm(request.POST if request.method == "POST" else None, instance=profile)
    if request.method == "POST" and form.is_valid():
        accounts.profile_update(user=request.user, **form.cleaned_data)
        messages.success(request, _("Your settings are saved."))
        return redirect("stylize:profile")
    token = Token.objects.filter(user=request.user).first()
    return render(
        request,
        "registration/profile.html",
        {"form": form, "token": token, "email_confirmed": profile.email_confirmed,
         "webhook_secret": accounts.profile_webhook_secret(user=request.user)},
    )


@require_POST
@login_required
def api_token_create(request):
    """A new API token for programs; the old one, if any, stops working."""
    accounts.api_token_create(user=request.user)
    messages.success(request, _("Your new API token is below. The old one no longer works."))
    return redirect(reverse("stylize:profile") + "#api-token")


@require_POST
@login_required
def webhook_secret_rotate(request):
    """A new key for signing the user's webhooks; the old one no longer signs any."""
    accounts.profile_webhook_secret_rotate(user=request.user)
    messages.success(request, _(
        "Your new webhook secret is below. Webhooks are signed with it from now on."))
    return redirect(reverse("stylize:profile") + "#webhook-secret")


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a log-in while locked out (``AXES_LOCKOUT_CALLABLE``)."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME * 60))
    response = render(
        request,
        "registration/locked_out.html",
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes},
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset page, throttled, with its link built from ``SITE_URL``.

    A valid request counts against its client address (``client_ip``: ``REMOTE_ADDR``
    unless ``NUM_PROXIES``) and against the address asked for, at the
    ``password_reset_client`` and ``password_reset_email`` rates. Over either, nothing is
    sent and the form comes back with a 429 and a readable message. The counts don't
    depend on whether an account has the address, so the refusal tells nothing about
    accounts (the "done" page stays the same for known and unknown addresses). The email's
    link comes from ``settings.SITE_URL``, never from the request's Host header.
    """

    form_class = PasswordResetForm  # an unconfirmed address gets its link instead

    def form_valid(self, form):
        throttles = [
            PasswordResetClientThrottle(),
            PasswordResetEmailThrottle(form.cleaned_data["email"]),
        ]
        for throttle in throttles:  # in turn: a client over its limit counts no address
            if not throttle.allow_request(self.request, self):
                return self.throttled(form, throttle.wait())
        site = urlsplit(settings.SITE_URL)
        form.save(
            domain_override=site.netloc,
            use_https=site.scheme == "https",
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            html_email_template_name=self.html_email_template_name,
            extra_email_context={**(self.extra_email_context or {}),
                                 "site_url": settings.SITE_URL},
        )
        return redirect(self.get_success_url())

    def throttled(self, form, wait):
        minutes = max(1, math.ceil((wait or 60) / 60))
        form.add_error(
            None,
            ngettext(
                "Too many password reset requests. Nothing was sent; please try again in "
                "%(minutes)d minute.",
                "Too many password reset requests. Nothing was sent; please try again in "
                "%(minutes)d minutes.", minutes) % {"minutes": minutes},
        )
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(minutes * 60)
        return response


# --- Jobs ----------------------------------------------------------------------------


def _per_period(count: int, seconds: int) -> str:
    """"at most 20 an hour" and the like, for a throttle's rate."""
    periods = {1: _("a second"), 60: _("a minute"), 3600: _("an hour"), 86400: _("a day")}
    period = periods.get(seconds) or _("%(seconds)d seconds") % {"seconds": seconds}
    return _("at most %(count)d %(period)s") % {"count": count, "period": period}


def _upload_refused(request, form, message: str, retry_after: int | None = None):
    """The upload page again with ``message`` on the form, as a 429."""
    if not form.is_bound:
        form.cleaned_data = {}  # add_error needs it; an unbound form is never cleaned
    form.add_error(None, message)
    response = _upload_page(request, form, status=429)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def upload(request):
    """The upload page: choose a photo (its preview in every style comes at once:
    previews.js and the API), a style and options, and a job is made. Without an account
    the page works as far as the previews; asking for the job keeps the preview and the
    choices in the session and sends the visitor to sign up (or log in), after which
    this page shows them again (docs/design/previews.md)."""
    owned = preview_list_for(user=request.user,
                             session_preview_ids=session_preview_ids(request.session))
    if request.method == "POST":
        if request.user.is_authenticated:
            # The API's job_create throttle, the same counter per user: page and API
            # uploads count together. Checked before the photo is even looked at.
            throttle = JobCreateThrottle()
            if not throttle.allow_request(request, None):
                wait = math.ceil(throttle.wait() or 60)
                minutes = max(1, math.ceil(wait / 60))
                return _upload_refused(
                    request, UploadForm(initial={"style": request.POST.get("style")},
                                        previews=owned, user=request.user),
                    ngettext(
                        "You have uploaded too many photos: %(rate)s. Nothing was uploaded; "
                        "please try again in %(minutes)d minute.",
                        "You have uploaded too many photos: %(rate)s. Nothing was uploaded; "
                        "please try again in %(minutes)d minutes.", minutes,
                    ) % {"rate": _per_period(throttle.num_requests, throttle.duration),
                         "minutes": minutes},
                    retry_after=wait,
                )
        form = UploadForm(request.POST, request.FILES, previews=owned, user=request.user)
        if form.is_valid():
            if not request.user.is_authenticated:
                return _upload_kept_for_signup(request, form)
            choices = form.cleaned_data
            try:  # job_create rewinds the photo the form's check has read
                if choices.get("preview") is not None:
                    job = previews.job_create_from_preview(
                        owner=request.user, preview=choices["preview"], choices=choices)
                else:
                    job = jobs.job_create_from(owner=request.user, choices=choices)
            except jobs.JobLimitExceeded as exc:
                return _upload_refused(request, form, str(exc))
            session_pending_clear(request.session)
            return redirect("stylize:job", pk=job.pk)
        status = 400
    else:
        initial = {}
        if request.GET.get("style"):
            initial["style"] = request.GET["style"]
        pending = session_pending(request.session)
        if pending and owned.filter(pk=pending["preview"]).exists():
            # Asked for before signing up or logging in: the same photo and choices.
            initial.update(pending["choices"], preview=pending["preview"])
        form = UploadForm(initial=initial, previews=owned, user=request.user)
        status = 200
    return _upload_page(request, form, status=status)


#: What the session keeps of an upload form's choices for a visitor (JSON: slugs).
_KEPT_CHOICES = ("strength", "preserve_colors", "max_side", "blend", "stroke")


def _upload_kept_for_signup(request, form):
    """A visitor asked for the job: their preview (made now from the photo if the
    page's script did not) and choices wait in the session for their account."""
    choices = form.cleaned_data
    preview = choices.get("preview")
    if preview is None:
        throttle = PreviewAnonymousThrottle()
        if not throttle.allow_request(request, None):
            wait = max(1, math.ceil(throttle.wait() or 60))
            minutes = max(1, math.ceil(wait / 60))
            return _upload_refused(request, form, ngettext(
                "Without an account, your address can preview one photo every few minutes. "
                "Please try again in %(minutes)d minute, or sign up or log in to preview "
                "more.",
                "Without an account, your address can preview one photo every few minutes. "
                "Please try again in %(minutes)d minutes, or sign up or log in to preview "
                "more.", minutes) % {"minutes": minutes}, retry_after=wait)
        preview = previews.preview_create(photo=choices["image"],
                                          language=translation.get_language() or "")
        session_preview_remember(request.session, preview.pk)
    kept = {name: choices.get(name) for name in _KEPT_CHOICES}
    kept["style"] = choices["style"].slug
    kept["blend_with"] = choices["blend_with"].slug if choices.get("blend_with") else ""
    session_pending_set(request.session, preview_id=preview.pk, choices=kept)
    messages.info(request, _(
        "Sign up, or log in, to have your photo painted at full size. Your photo and your "
        "choices are kept for an hour: the upload page shows them again once you are in."))
    return redirect("stylize:signup")


def _upload_page(request, form, *, status):
    preview_id = form["preview"].value() if not form.errors.get("image") else None
    return render(
        request,
        "stylize/upload.html",
        {
            "form": form,
            "max_bytes": upload_max_bytes(),
            "max_mb": upload_max_bytes() / (1024 * 1024),
            "allowed_types": ",".join(ALLOWED_CONTENT_TYPES),
            "preview_id": preview_id or "",
            "preview_side": settings.PREVIEW_SIDE,
            # size-plan.js: each stroke's working side and name, for "what it will do".
            "stroke_plan": json.dumps({value: {"side": STROKE_WORKING_SIDES[value],
                                               "label": str(label).lower()}
                                       for value, label in Stroke.choices}),
        },
        status=status,
    )


def _own_job(request, pk) -> StyleJob:
    """The job if it belongs to the user; anyone else's (or none) is a 404."""
    return get_object_or_404(job_list_for_owner(owner=request.user), pk=pk)


def _job_status(job: StyleJob) -> dict:
    return {
        "id": str(job.pk),
        "status": job.status,
        "status_display": job.get_status_display(),
        "stage": job.stage,
        "stage_display": job.get_stage_display(),
        "progress": job.progress,
        "jobs_ahead": job_jobs_ahead(job),
        "finished": job.is_finished,
        "error": job.error,
        "result_url": reverse("stylize:job_result", args=[job.pk])
        if job.status == StyleJob.Status.SUCCEEDED and job.result_image
        else None,
    }


@login_required
def job_detail(request, pk):
    return _job_page(request, _own_job(request, pk))


def _job_page(request, job: StyleJob, *, again_form=None, status: int = 200):
    """The job page; ``again_form``: a refused "Try another style" (its errors shown)."""
    if again_form is None:
        again_form = JobAgainForm(user=request.user, initial={
            "style": job.style.slug, "strength": job.strength,
            "blend_with": job.blend_with.slug if job.blend_with else "",
            "blend": job.blend if job.blend_with else DEFAULT_BLEND})
    return render(
        request,
        "stylize/job.html",
        {
            "job": job,
            "status": _job_status(job),
            "poll_interval_ms": POLL_INTERVAL_MS,
            "expires_at": job_expires_at(job),
            "retention_days": settings.JOB_RETENTION_DAYS,
            "share_url": sharing.job_share_url(job),
            "share_days": settings.SHARE_LINK_DAYS,
            "download_formats": list(DOWNLOAD_CHOICES.items()),
            "again_form": again_form,
            **_job_page_details(job),
        },
        status=status,
    )


def _job_page_details(job: StyleJob) -> dict:
    """What the job page says of this photo's size and strokes (``size_notes``), the
    result's size to show it at no more than its own (``result_size``), and the title a
    share sheet gets (``share_title``)."""
    plan = None
    if job.photo_width and job.photo_height:
        plan = size_plan(job.photo_width, job.photo_height, max_side=job.max_side,
                                 stroke=job.stroke)
    return {"size_notes": _size_notes(job, plan) if plan else [],
            "result_size": (plan.width, plan.height) if plan else None,
            "share_title": _("A photo painted as %(name)s") % {"name": job.style.local_name}}


def _size_notes(job: StyleJob, plan) -> list[str]:
    """What ``max_side`` and the strokes do for this very photo, in sentences (the
    upload page's script says the same before the upload: size-plan.js)."""
    notes = [_("Your photo is %(width)d × %(height)d px.") % {
        "width": job.photo_width, "height": job.photo_height}]
    longer = max(job.photo_width, job.photo_height)
    if plan.shrunk:
        notes.append(_("The result is %(width)d × %(height)d px: at most %(side)d px on "
                       "the longer side, as you chose.") % {
            "width": plan.width, "height": plan.height, "side": job.max_side})
    elif job.max_side > longer:
        notes.append(_("The result keeps that size: photos are never enlarged, so the "
                       "%(side)d px you chose makes no difference.") % {"side": job.max_side})
    notes.append(_("It is painted at %(side)d px on the longer side.") % {
        "side": plan.painted_side})
    labels = dict(Stroke.choices)
    alike = [str(labels[option]) for option in plan.same_strokes]
    if len(alike) == 3:
        notes.append(_("On a photo this small, fine, medium and bold brush strokes all "
                       "look the same."))
    elif len(alike) == 2:
        notes.append(_("On a photo this small, %(one)s and %(other)s brush strokes look "
                       "the same.") % {"one": alike[0].lower(), "other": alike[1].lower()})
    return notes


@require_POST
@login_required
def job_again(request, pk):
    """A new job of this job's photo, not uploaded again, in the style, strength and mix
    chosen (the job page's "Try another style" and its strength: "Apply"); the upload
    limits count it as an upload."""
    source = _own_job(request, pk)
    form = JobAgainForm(request.POST, user=request.user)
    throttle = JobCreateThrottle()
    if not throttle.allow_request(request, None):
        wait = math.ceil(throttle.wait() or 60)
        minutes = max(1, math.ceil(wait / 60))
        form.is_valid()
        form.add_error(None, ngettext(
            "You have asked for too many paintings: %(rate)s. Please try again in "
            "%(minutes)d minute.",
            "You have asked for too many paintings: %(rate)s. Please try again in "
            "%(minutes)d minutes.", minutes)
            % {"rate": _per_period(throttle.num_requests, throttle.duration),
               "minutes": minutes})
        response = _job_page(request, source, again_form=form, status=429)
        response["Retry-After"] = str(wait)
        return response
    if not form.is_valid():
        return _job_page(request, source, again_form=form, status=400)
    try:
        job = previews.job_create_from_job(owner=request.user, source_job=source,
                                           choices=form.cleaned_data)
    except jobs.JobLimitExceeded as exc:
        form.add_error(None, str(exc))
        return _job_page(request, source, again_form=form, status=429)
    return redirect("stylize:job", pk=job.pk)


@_status_json
def job_status(request, pk):
    return _job_status(_own_job(request, pk))


@require_GET
@login_required
def job_image(request, pk, which):
    """The owner's photo or result, through a check of who asks (``?download`` saves it,
    ``?format=jpeg|png|webp`` picks the result's format)."""
    job = _own_job(request, pk)
    field = job.result_image if which == "result" else job.input_image
    if not field:
        raise Http404(_("No such image."))
    if which == "result":
        return _result_response(request, job)
    return private_file_response(field, filename=job.photo_download_name,
                                 download="download" in request.GET)


def _result_response(request, job: StyleJob, filename: str | None = None):
    try:
        return result_file_response(job, format_name=request.GET.get("format"),
                                    download="download" in request.GET, filename=filename)
    except UnknownDownloadFormat as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")


@require_POST
@login_required
def job_share(request, pk):
    """Make (or renew) the result's share link; the job page then shows it."""
    job = _own_job(request, pk)
    try:
        sharing.job_share(job=job)
    except sharing.NothingToShare as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Anyone with the link below can now see the result "
                                    "(not your photo)."))
    return redirect(reverse("stylize:job", args=[job.pk]) + "#share")


@require_POST
@login_required
def job_unshare(request, pk):
    job = _own_job(request, pk)
    if sharing.job_unshare(job=job):
        messages.success(request, _("The share link no longer works."))
    return redirect(reverse("stylize:job", args=[job.pk]) + "#share")


def _shared_job(token) -> StyleJob:
    job = job_for_share_token(token)
    if job is None:
        raise Http404(_("This link does not exist, was revoked or has expired."))
    return job


def _not_indexed(response):
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"  # the token never leaves in a Referer
    response["Cache-Control"] = "private, no-store"
    return response


def _share_link_throttled(request):
    """A readable 429 once this client address has asked for share links more often
    than ``SHARE_LINK_RATE`` (counted before the token is looked up), else None."""
    throttle = sharing.ShareLinkThrottle()
    if throttle.allow_request(request, None):
        return None
    seconds = max(1, math.ceil(throttle.wait() or 60))
    response = HttpResponse(
        ngettext("Too many requests for shared results from your address. Please try "
                 "again in %(seconds)d second.",
                 "Too many requests for shared results from your address. Please try "
                 "again in %(seconds)d seconds.", seconds) % {"seconds": seconds},
        status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return _not_indexed(response)


@require_GET
def shared_result(request, token):
    """A share link's page: the result and its style's name, nothing else of the owner's.
    Its ``og:`` tags name a small rendition of the result (``shared_result_preview``),
    so a link pasted into a chat shows a card of it."""
    if refused := _share_link_throttled(request):
        return refused
    job = _shared_job(token)
    return _not_indexed(render(request, "stylize/shared.html", {
        "style": job.style, "token": token, "expires_at": job.share_expires_at,
        "share_url": sharing.job_share_url(job),
        "preview_url": settings.SITE_URL + reverse("stylize:shared_preview", args=[token]),
        "preview_size": sharing.share_preview_size(job),
    }))


@require_GET
def shared_result_image(request, token):
    """A share link's result, as ``?format=`` asks (its PNG or WebP made once, then kept)."""
    if refused := _share_link_throttled(request):
        return refused
    job = _shared_job(token)  # named by its style only: nothing of the job's id
    return _not_indexed(_result_response(request, job, filename=f"prisma-{job.style.slug}.jpg"))


@require_GET
def shared_result_preview(request, token):
    """The share page's og:image: a small JPEG of the result (``sharing.share_preview``),
    at the link's own unguessable address, under its throttle, gone with the link."""
    if refused := _share_link_throttled(request):
        return refused
    job = _shared_job(token)
    try:
        data = sharing.share_preview(job)
    except (OSError, ValueError) as exc:  # the result went with its job a moment ago
        raise Http404(_("No such image.")) from exc
    response = HttpResponse(data, content_type="image/jpeg")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f'inline; filename="prisma-{job.style.slug}-preview.jpg"'
    return _not_indexed(response)


@login_required
def job_list(request):
    owned = job_list_for_owner(owner=request.user)
    page = Paginator(owned, 24).get_page(request.GET.get("page"))
    return render(request, "stylize/job_list.html", {"page": page, "jobs": page.object_list})


@require_http_methods(["GET", "POST"])
@login_required
def job_delete(request, pk):
    """GET: the page that asks whether to delete the job (the job page's and "My jobs"'
    Delete lead here; nothing is deleted by one click). POST: delete it with its photo,
    result and share link, then back to "My jobs"."""
    job = _own_job(request, pk)
    if request.method == "GET":
        return render(request, "stylize/job_delete.html", {
            "job": job, "shared": sharing.job_share_is_live(job),
            "back_url": _back_url(request) or reverse("stylize:job", args=[job.pk])})
    jobs.job_delete(job=job)
    messages.success(request, _("The %(style)s job and its images are deleted.")
                     % {"style": job.style.local_name})
    return redirect("stylize:job_list")


def _back_url(request) -> str | None:
    """``?next=`` when it is a path on this site ("My jobs", a page of it), else None."""
    candidate = request.GET.get("next", "")
    if url_has_allowed_host_and_scheme(candidate, allowed_hosts=None) and candidate.startswith(
            "/") and not candidate.startswith("//"):
        return candidate
    return None



# --- Own styles (services.own_styles, docs/design/own-styles.md) ---------------------

#: How often an own style's page asks how far learning is (ms).
OWN_STYLE_POLL_MS = 2000


def _own_style(request, slug):
    """The user's own style ``slug``; anyone else's (or none) is a 404."""
    return get_object_or_404(own_style_list_for(owner=request.user), slug=slug)


def _own_style_file(request, slug, field: str):
    """The private file ``field`` (its painting, its latest sample) of the user's own style
    ``slug``; a 404 while it has none, or for anyone else's style."""
    field_file = getattr(_own_style(request, slug), field)
    if not field_file:
        raise Http404(_("No such image."))
    return field_file


@login_required
def own_style_list(request):
    """"My styles": the person's own styles with their state, and the form that uploads a
    painting to learn as a new one (a 400, 429 or 503 with the reason when refused)."""
    form = OwnStyleForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                style = own_styles.own_style_create(owner=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            except own_styles.OwnStylesUnavailable as exc:
                form.add_error(None, str(exc))
                status = 503
            except own_styles.OwnStyleLimitExceeded as exc:
                form.add_error(None, str(exc))
                status = 429
            else:
                messages.success(request, _(
                    "Your painting is being learnt: this page shows how far it is. It joins "
                    "your styles on the upload page when it is ready."))
                return redirect("stylize:own_style", slug=style.slug)
    styles = [(style, own_styles.own_style_state(style))
              for style in own_style_list_for(owner=request.user)]
    return render(request, "stylize/own_styles.html", {
        "form": form, "styles": styles, "unavailable": own_styles.own_styles_refusal(),
        "max_mb": upload_max_bytes() / (1024 * 1024), "min_side": settings.OWN_STYLE_MIN_SIDE,
        "daily_limit": settings.OWN_STYLE_DAILY_LIMIT,
        "max_minutes": math.ceil(settings.OWN_STYLE_MAX_SECONDS / 60),
    }, status=status)


def _own_style_status(style) -> dict:
    """What the own style's page shows, and its script polls (``own_style_status``)."""
    state = own_styles.own_style_state(style)
    progress = own_styles.own_style_progress(style)
    step, steps = progress.get("step") or 0, progress.get("steps") or 0
    texts = {
        own_styles.QUEUED: _("Waiting for its turn on the training worker."),
        own_styles.LEARNING: _("Learning your painting."),
        own_styles.RELEARNING: _("Learning it again on a new version of the styles' network; "
                                 "you can use it meanwhile."),
        own_styles.READY: _("Ready: it is among your styles on the upload page."),
        own_styles.FAILED: _("It could not be learnt."),
    }
    detail = ""
    if state in (own_styles.LEARNING, own_styles.RELEARNING) and steps:
        detail = _("Step %(step)d of %(steps)d.") % {"step": step, "steps": steps}
        left = progress.get("seconds_left")
        if left is not None:
            minutes = max(1, math.ceil(left / 60))
            detail += " " + ngettext("About %(minutes)d minute left.",
                                     "About %(minutes)d minutes left.", minutes) % {
                "minutes": minutes}
    sample_url = None
    if style.private_sample:
        sample_url = versioned_url(reverse("stylize:own_style_sample", args=[style.slug]),
                                   style.private_sample)
    return {
        "slug": style.slug, "state": state, "state_text": str(texts[state]), "detail": detail,
        "step": step, "steps": steps, "fraction": (step / steps) if steps else 0.0,
        "seconds_left": progress.get("seconds_left"), "sample_url": sample_url,
        "error": style.status_reason if state == own_styles.FAILED else "",
        "finished": state in (own_styles.READY, own_styles.FAILED),
    }


@login_required
def own_style_detail(request, slug):
    """One own style: its painting, how far learning is (a progress bar, the time left,
    the latest sample), and once ready a link to use it."""
    style = _own_style(request, slug)
    return render(request, "stylize/own_style.html", {
        "style": style, "status": _own_style_status(style), "poll_interval_ms": OWN_STYLE_POLL_MS})


@_status_json
def own_style_status(request, slug):
    return _own_style_status(_own_style(request, slug))


@require_GET
@login_required
def own_style_painting(request, slug):
    """The owner's painting, from the private storage."""
    painting = _own_style_file(request, slug, "private_painting")
    suffix = painting.name.rsplit(".", 1)[-1]
    return private_file_response(painting, filename=f"painting.{suffix}")


@require_GET
@login_required
def own_style_sample(request, slug):
    """The latest sample the learning painted (training photos in the style)."""
    return private_file_response(_own_style_file(request, slug, "private_sample"),
                                 filename="sample.png")


@require_http_methods(["GET", "POST"])
@login_required
def own_style_delete(request, slug):
    """GET: the page that asks whether to delete the style. POST: delete it (jobs made
    with it keep their results), then back to "My styles"."""
    style = _own_style(request, slug)
    if request.method == "GET":
        return render(request, "stylize/own_style_delete.html", {"style": style})
    own_styles.own_style_delete(style=style)
    messages.success(request, _("Your style %(name)s and its painting are deleted.")
                     % {"name": style.name})
    return redirect("stylize:own_style_list")
