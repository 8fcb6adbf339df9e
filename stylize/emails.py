"""Tell a job's owner how it ended: the result attached (or linked when large), or why it failed."""

from django.conf import settings
from django.core.mail import EmailMessage

from .models import Profile, StyleJob
from .services import job_mark_emailed


def job_email_send(*, job_id) -> bool:
    """Email the owner once their job has finished. False if there was nothing to send.

    Sending errors propagate so the caller can retry; the job is marked emailed only
    after the server took the message.
    """
    job = StyleJob.objects.select_related("owner", "style").filter(pk=job_id).first()
    if job is None:  # deleted by its owner meanwhile
        return False
    if not job.is_finished or job.emailed_at is not None or not job.owner.email:
        return False
    if Profile.objects.filter(user=job.owner_id, email_results=False).exists():
        return False
    message = _job_message(job)
    message.send(fail_silently=False)
    return job_mark_emailed(job_id=job_id)


def _job_message(job: StyleJob) -> EmailMessage:
    name = job.owner.get_short_name() or job.owner.get_username()
    if job.status == StyleJob.Status.FAILED:
        return EmailMessage(
            subject=f"Your {job.style.name} painting could not be made",
            body=(
                f"Hello {name},\n\nWe could not repaint your photo as {job.style.name}:\n\n"
                f"    {job.error}\n\nYou can try again at {settings.SITE_URL}/.\n\n— Prisma\n"
            ),
            to=[job.owner.email],
        )
    message = EmailMessage(
        subject=f"Your photo as {job.style.name}",
        to=[job.owner.email],
    )
    size = job.result_image.size
    if size <= settings.EMAIL_ATTACHMENT_MAX_BYTES:
        with job.result_image.open("rb") as result:
            message.attach(job.result_download_name, result.read(), "image/jpeg")
        where = "It is attached to this email."
    else:
        where = f"It is too large to attach; download it here:\n\n    {_absolute(job.result_image.url)}"
    message.body = (
        f"Hello {name},\n\nYour photo has been repainted as {job.style.name}. {where}\n\n"
        "— Prisma\n"
    )
    return message


def _absolute(url: str) -> str:
    return url if url.startswith(("http://", "https://")) else f"{settings.SITE_URL}{url}"
