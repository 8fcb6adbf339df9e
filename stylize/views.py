"""The web pages: gallery, accounts, upload, job page with live status, "my jobs"."""

import math
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

from .api.throttles import (
    JobCreateThrottle,
    PasswordResetClientThrottle,
    PasswordResetEmailThrottle,
)
from .forms import (
    ALLOWED_CONTENT_TYPES,
    AccountDeleteForm,
    PasswordResetForm,
    ProfileForm,
    SignupForm,
    UploadForm,
)
from .models import Profile, StyleJob
from .selectors import job_list_for_owner, style_list_offered
from .services import accounts, jobs
from .services.job_files import job_expires_at
from .storage import private_file_response
from .validators import upload_max_bytes

LOGIN_URL = "stylize:login"
#: The address this browser signed up with, until its confirmation link is followed.
SIGNUP_SESSION_KEY = "stylize_signup_email"
POLL_INTERVAL_MS = 1500


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
            messages.info(request, "Your email address is already confirmed.")
            return redirect("stylize:upload")
        return render(request, "registration/email_confirm_invalid.html", status=400)
    accounts.email_confirm(user=user)
    signed_up_here = request.session.get(SIGNUP_SESSION_KEY) == user.email
    if not (signed_up_here or request.user == user):
        # Opened in another browser (or sent by someone else): confirmed, but whoever
        # holds the link is not logged into the account by it.
        messages.success(request, "Your email address is confirmed. Please log in.")
        return redirect("stylize:login")
    request.session.pop(SIGNUP_SESSION_KEY, None)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(
        request, "Your email address is confirmed. Welcome to Prisma! Upload a photo to repaint it."
    )
    return redirect("stylize:upload")


@require_POST
@login_required(login_url=LOGIN_URL)
def email_confirm_resend(request):
    if accounts.email_is_confirmed(request.user):
        messages.info(request, "Your email address is already confirmed.")
    elif accounts.confirmation_resend(user=request.user):
        messages.success(request, f"We have sent a new link to {request.user.email}.")
    else:
        messages.error(
            request, "We could not send a new link just now. Please wait a minute and try again."
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
        messages.success(request, "Your account, your jobs and their images are deleted.")
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
        messages.success(request, "Your settings are saved.")
        return redirect("stylize:profile")
    token = Token.objects.filter(user=request.user).first()
    return render(
        request,
        "registration/profile.html",
        {"form": form, "token": token, "email_confirmed": profile.email_confirmed},
    )


@require_POST
@login_required(login_url=LOGIN_URL)
def api_token_create(request):
    """A new API token for programs; the old one, if any, stops working."""
    accounts.api_token_create(user=request.user)
    messages.success(request, "Your new API token is below. The old one no longer works.")
    return redirect(reverse("stylize:profile") + "#api-token")


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
            "Too many password reset requests. Nothing was sent; please try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}.",
        )
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(minutes * 60)
        return response


# --- Jobs ----------------------------------------------------------------------------


_PERIODS = {1: "a second", 60: "a minute", 3600: "an hour", 86400: "a day"}


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
            period = _PERIODS.get(throttle.duration, f"{throttle.duration} seconds")
            return _upload_refused(
                request, UploadForm(initial={"style": request.POST.get("style")}),
                f"You have uploaded too many photos: at most {throttle.num_requests} "
                f"{period}. Nothing was uploaded; please try again in {minutes} "
                f"minute{'s' if minutes != 1 else ''}.",
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
    """The owner's photo or result, through a check of who asks (``?download`` saves it)."""
    job = _own_job(request, pk)
    field = job.result_image if which == "result" else job.input_image
    if not field:
        raise Http404("No such image.")
    filename = job.result_download_name if which == "result" else job.photo_download_name
    return private_file_response(field, filename=filename, download="download" in request.GET)


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
    messages.success(request, f"The {job.style.name} job and its images are deleted.")
    return redirect("stylize:job_list")

