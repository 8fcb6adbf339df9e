"""The web pages: gallery, accounts, upload, job page with live status, "my jobs"."""

from pathlib import Path

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

from . import services
from .forms import ALLOWED_CONTENT_TYPES, ProfileForm, SignupForm, UploadForm
from .models import Profile, StyleJob
from .selectors import job_list_for_owner, style_list_offered
from .validators import upload_max_bytes

LOGIN_URL = "stylize:login"
POLL_INTERVAL_MS = 1500


def home(request):
    return render(request, "stylize/home.html", {"styles": style_list_offered()})


# --- Accounts ------------------------------------------------------------------------


def signup(request):
    if request.user.is_authenticated:
        return redirect("stylize:upload")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        Profile.for_user(user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to Prisma! Upload a photo to repaint it.")
        return redirect("stylize:upload")
    return render(request, "registration/signup.html", {"form": form})


@login_required(login_url=LOGIN_URL)
def profile(request):
    profile = Profile.for_user(request.user)
    form = ProfileForm(request.POST if request.method == "POST" else None, instance=profile)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your settings are saved.")
        return redirect("stylize:profile")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "registration/profile.html", {"form": form, "token": token})


@require_POST
@login_required(login_url=LOGIN_URL)
def api_token_create(request):
    """A new API token for programs; the old one, if any, stops working."""
    with transaction.atomic():
        Token.objects.filter(user=request.user).delete()
        Token.objects.create(user=request.user)
    messages.success(request, "Your new API token is below. The old one no longer works.")
    return redirect(reverse("stylize:profile") + "#api-token")


# --- Jobs ----------------------------------------------------------------------------


@login_required(login_url=LOGIN_URL)
def upload(request):
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            image = form.cleaned_data["image"]
            image.seek(0)
            job = services.job_create(
                owner=request.user,
                style=form.cleaned_data["style"],
                input_image=image,
                strength=form.cleaned_data["strength"],
                preserve_colors=form.cleaned_data["preserve_colors"],
                max_side=form.cleaned_data["max_side"],
                blend_with=form.cleaned_data["blend_with"],
                blend=form.cleaned_data["blend"],
                stroke=form.cleaned_data["stroke"],
            )
            return redirect("stylize:job", pk=job.pk)
        status = 400
    else:
        initial = {}
        if request.GET.get("style"):
            initial["style"] = request.GET["style"]
        form = UploadForm(initial=initial)
        status = 200
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
        {"job": job, "status": _job_status(job), "poll_interval_ms": POLL_INTERVAL_MS},
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
    if which == "result":
        filename = job.result_download_name
    else:
        filename = Path(field.name).name
    response = FileResponse(
        field.open("rb"), as_attachment="download" in request.GET, filename=filename
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required(login_url=LOGIN_URL)
def job_list(request):
    jobs = job_list_for_owner(owner=request.user)
    page = Paginator(jobs, 24).get_page(request.GET.get("page"))
    return render(request, "stylize/job_list.html", {"page": page, "jobs": page.object_list})


@require_POST
@login_required(login_url=LOGIN_URL)
def job_delete(request, pk):
    job = _own_job(request, pk)
    services.job_delete(job=job)
    messages.success(request, f"The {job.style.name} job and its images are deleted.")
    return redirect("stylize:job_list")

