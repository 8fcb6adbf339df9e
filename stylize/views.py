"""The web pages: gallery, accounts, upload, job page with live status, "my jobs"."""

import math
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

from .api.throttles import (
    JobCreateThrottle,
    PasswordResetClientThrottle,
    PasswordResetEmailThrottle,
)
from .downloads import UnknownDownloadFormat, result_file_response
from .forms import (
    ALLOWED_CONTENT_TYPES,
    AccountDeleteForm,
    PasswordResetForm,
    ProfileForm,
    SignupForm,
    UploadForm,
)
from .models import Profile, StyleJob
from .selectors import (
    job_for_share_token,
    job_jobs_ahead,
    job_list_for_owner,
    style_list_offered,
)
from .services import accounts, jobs, sharing
from .services.job_files import job_expires_at
from .storage import private_file_response
from .validators import upload_max_bytes

LOGIN_URL = "stylize:login"
#: The address this browser signed up with, until its confirmation link is followed.
SIGNUP_SESSION_KEY = "stylize_signup_email"
POLL_INTERVAL_MS = 1500
#: The job page's download buttons: ``?format=`` value and label.
DOWNLOAD_CHOICES = [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WebP")]


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
        # Only this browser is logged in by the link (email_confirm): a link sent to
        # someone else confirms the address but never logs them into this account.
        request.session[SIGNUP_SESSION_KEY] = result.email
        return render(request, "registration/signup_done.html", {"email": result.email})
    return render(request, "registration/signup.html", {"form": form})


def email_confirm(request, uidb64, token):
    """The emailed link: confirms the address, logs its owner in, on to the upload page."""
    user = accounts.confirmation_user(uidb64, token)
    if user is None or not user.is_active:
        if request.user.is_authenticated and accounts.email_is_confirmed(request.user):
            messages.info(request, _("Your email address is already confirmed."))
            return redirect("stylize:upload")
        return render(request, "registration/email_confirm_invalid.html", status=400)
    accounts.email_confirm(user=user)
    signed_up_here = request.session.get(SIGNUP_SESSION_KEY) == user.email
    if not (signed_up_here or request.user == user):
        # Opened in another browser (or sent by someone else): confirmed, but whoever
        # holds the link is not logged into the account by it.
        messages.success(request, _("Your email address is confirmed. Please log in."))
        return redirect("stylize:login")
    request.session.pop(SIGNUP_SESSION_KEY, None)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, _(
        "Your email address is confirmed. Welcome to Prisma! Upload a photo to repaint it."))
    return redirect("stylize:upload")


@require_POST
@login_required(login_url=LOGIN_URL)
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


@login_required(login_url=LOGIN_URL)
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
@login_required(login_url=LOGIN_URL)
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
@login_required(login_url=LOGIN_URL)
def api_token_create(request):
    """A new API token for programs; the old one, if any, stops working."""
    accounts.api_token_create(user=request.user)
    messages.success(request, _("Your new API token is below. The old one no longer works."))
    return redirect(reverse("stylize:profile") + "#api-token")


@require_POST
@login_required(login_url=LOGIN_URL)
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


@login_required(login_url=LOGIN_URL)
def upload(request):
    if request.method == "POST":
        # The API's job_create throttle, the same counter per user: page and API
        # uploads count together. Checked before the photo is even looked at.
        throttle = JobCreateThrottle()
        if not throttle.allow_request(request, None):
            wait = math.ceil(throttle.wait() or 60)
            minutes = max(1, math.ceil(wait / 60))
            return _upload_refused(
                request, UploadForm(initial={"style": request.POST.get("style")}),
                ngettext(
                    "You have uploaded too many photos: %(rate)s. Nothing was uploaded; "
                    "please try again in %(minutes)d minute.",
                    "You have uploaded too many photos: %(rate)s. Nothing was uploaded; "
                    "please try again in %(minutes)d minutes.", minutes,
                ) % {"rate": _per_period(throttle.num_requests, throttle.duration),
                     "minutes": minutes},
                retry_after=wait,
            )
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:  # job_create rewinds the photo the form's check has read
                job = jobs.job_create_from(owner=request.user, choices=form.cleaned_data)
            except jobs.JobLimitExceeded as exc:
                return _upload_refused(request, form, str(exc))
            return redirect("stylize:job", pk=job.pk)
        status = 400
    else:
        initial = {}
        if request.GET.get("style"):
            initial["style"] = request.GET["style"]
        form = UploadForm(initial=initial)
        status = 200
    return _upload_page(request, form, status=status)


def _upload_page(request, form, *, status):
    return render(
        request,
        "stylize/upload.html",
        {
            "form": form,
            "max_bytes": upload_max_bytes(),
            "max_mb": upload_max_bytes() / (1024 * 1024),
            "allowed_types": ",".join(ALLOWED_CONTENT_TYPES),
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


@login_required(login_url=LOGIN_URL)
def job_detail(request, pk):
    job = _own_job(request, pk)
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
            "download_formats": DOWNLOAD_CHOICES,
        },
    )


@require_GET
@login_required(login_url=LOGIN_URL)
def job_status(request, pk):
    response = JsonResponse(_job_status(_own_job(request, pk)))
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@login_required(login_url=LOGIN_URL)
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
@login_required(login_url=LOGIN_URL)
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
@login_required(login_url=LOGIN_URL)
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


@require_GET
def shared_result(request, token):
    """A share link's page: the result and its style's name, nothing else of the owner's."""
    job = _shared_job(token)
    return _not_indexed(render(request, "stylize/shared.html", {
        "style": job.style, "token": token, "expires_at": job.share_expires_at,
    }))


@require_GET
def shared_result_image(request, token):
    job = _shared_job(token)  # named by its style only: nothing of the job's id
    return _not_indexed(_result_response(request, job, filename=f"prisma-{job.style.slug}.jpg"))


@login_required(login_url=LOGIN_URL)
def job_list(request):
    jobs = job_list_for_owner(owner=request.user)
    page = Paginator(jobs, 24).get_page(request.GET.get("page"))
    return render(request, "stylize/job_list.html", {"page": page, "jobs": page.object_list})


@require_POST
@login_required(login_url=LOGIN_URL)
def job_delete(request, pk):
    job = _own_job(request, pk)
    jobs.job_delete(job=job)
    messages.success(request, _("The %(style)s job and its images are deleted.")
                     % {"style": job.style.name})
    return redirect("stylize:job_list")

