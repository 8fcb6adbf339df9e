"""Tell a job's owner how it ended: the result attached (or linked when large), or why it failed."""

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Q
from django.urls import reverse

from stylize.models import Profile, StyleJob

from .jobs import job_mark_emailed


def job_email_send(*, job_id) -> bool:
    """Email the owner once their job has finished. False if there was nothing to send.

    Sending errors propagate so the caller can retry; the job is marked emailed only
    after the server took the message.
    """
    jobs = StyleJob.objects.select_related("owner", "style", "blend_with")
    job = jobs.filter(pk=job_id).first()
    if job is None:  # deleted by its owner meanwhile
        return False
    if not job.is_finished or job.emailed_at is not None or not job.owner.email:
        return False
    # Switched off, or an address not confirmed yet (it gets nothing but its link; the
    # result stays on the job page).
    if Profile.objects.filter(
        Q(email_results=False) | Q(email_confirmed=False), user=job.owner_id
    ).exists():
        return False
    message = _job_message(job)
    message.send(fail_silently=False)
    return job_mark_emailed(job_id=job_id)


def _styles_text(job: StyleJob) -> str:
    """"Starry Night", or "Starry Night mixed with The Great Wave (30 %)"."""
    if job.blend_with is None:
        return job.style.name
    return f"{job.style.name} mixed with {job.blend_with.name} ({round(job.blend * 100)} %)"


def _stroke_text(job: StyleJob) -> str:
    return f"{job.get_stroke_display().lower()} brush strokes"


def _job_message(job: StyleJob) -> EmailMessage:
    name = job.owner.get_short_name() or job.owner.get_username()
    styles = _styles_text(job)
    if job.status == StyleJob.Status.FAILED:
        return EmailMessage(
            subject=f"Your {job.style.name} painting could not be made",
            body=(
                f"Hello {name},\n\nWe could not repaint your photo as {styles}:\n\n"
                f"    {job.error}\n\nThe job: {_job_link(job)}\n"
                f"You can try again at {settings.SITE_URL}/.\n\n— Prisma\n"
            ),
            to=[job.owner.email],
        )
    subject = f"Your photo as {job.style.name}"
    if job.blend_with is not None:
        subject += f" and {job.blend_with.name}"
    message = EmailMessage(subject=subject, to=[job.owner.email])
    size = job.result_image.size
    if size <= settings.EMAIL_ATTACHMENT_MAX_BYTES:
        with job.result_image.open("rb") as result:
            message.attach(job.result_download_name, result.read(), "image/jpeg")
        where = f"It is attached to this email, and on its page:\n\n    {_job_link(job)}"
    else:
        where = f"It is too large to attach; see it and download it here:\n\n    {_job_link(job)}"
    message.body = (
        f"Hello {name},\n\nYour photo has been repainted as {styles}, with "
        f"{_stroke_text(job)}. {where}\n\n— Prisma\n"
    )
    return message


def _job_link(job: StyleJob) -> str:
    """The job's page, where its owner (logged in) sees and downloads the result."""
    return settings.SITE_URL + reverse("stylize:job", args=[job.pk])
