"""Tell a job's owner how it ended: the result attached (or linked when large), or why it failed."""

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Q
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from stylize.models import Profile, StyleJob

from .accounts import user_language
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
    with translation.override(user_language(job.owner)):  # the language they browse in
        message = _job_message(job)
    message.send(fail_silently=False)
    return job_mark_emailed(job_id=job_id)


def _styles_text(job: StyleJob) -> str:
    """"Starry Night", or "Starry Night mixed with The Great Wave (30 %)"."""
    if job.blend_with is None:
        return job.style.local_name
    return _("%(style)s mixed with %(other)s (%(percent)d %%)") % {
        "style": job.style.local_name, "other": job.blend_with.local_name,
        "percent": round(job.blend * 100)}


def _stroke_text(job: StyleJob) -> str:
    return _("%(stroke)s brush strokes") % {"stroke": str(job.get_stroke_display()).lower()}


def _job_message(job: StyleJob) -> EmailMessage:
    name = job.owner.get_short_name() or job.owner.get_username()
    styles = _styles_text(job)
    if job.status == StyleJob.Status.FAILED:
        return EmailMessage(
            subject=_("Your %(style)s painting could not be made") % {
                "style": job.style.local_name},
            body=_(
                "Hello %(name)s,\n\nWe could not repaint your photo as %(styles)s:\n\n"
                "    %(error)s\n\nThe job: %(link)s\n"
                "You can try again at %(site)s/.\n\n— Prisma\n"
            ) % {"name": name, "styles": styles, "error": job.error, "link": _job_link(job),
                 "site": settings.SITE_URL},
            to=[job.owner.email],
        )
    if job.blend_with is None:
        subject = _("Your photo as %(style)s") % {"style": job.style.local_name}
    else:
        subject = _("Your photo as %(style)s and %(other)s") % {
            "style": job.style.local_name, "other": job.blend_with.local_name}
    message = EmailMessage(subject=subject, to=[job.owner.email])
    size = job.result_image.size
    if size <= settings.EMAIL_ATTACHMENT_MAX_BYTES:
        with job.result_image.open("rb") as result:
            message.attach(job.result_download_name, result.read(), "image/jpeg")
        where = _("It is attached to this email, and on its page:\n\n    %(link)s")
    else:
        where = _("It is too large to attach; see it and download it here:\n\n    %(link)s")
    message.body = _(
        "Hello %(name)s,\n\nYour photo has been repainted as %(styles)s, with "
        "%(strokes)s. %(where)s\n\n— Prisma\n"
    ) % {"name": name, "styles": styles, "strokes": _stroke_text(job),
         "where": where % {"link": _job_link(job)}}
    return message


def _job_link(job: StyleJob) -> str:
    """The job's page, where its owner (logged in) sees and downloads the result."""
    return settings.SITE_URL + reverse("stylize:job", args=[job.pk])
