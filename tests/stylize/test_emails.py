"""Result and failure emails through a real SMTP server (aiosmtpd)."""

import email
import io
import smtplib
import time

import pytest
from aiosmtpd.controller import Controller
from django.core.files.base import ContentFile
from PIL import Image

from prisma_site.devstack import free_port
from stylize.models import StyleJob
from stylize.services.job_emails import job_email_send
from tests.factories import BankStyleFactory, StyleJobFactory, UserFactory


class Mailbox:
    """An SMTP handler that keeps what it receives and can refuse for a while."""

    def __init__(self):
        self.messages = []
        self.refuse = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            self.refuse -= 1
            return "451 Try again later"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield mailbox
    controller.stop()


def jpeg_bytes(size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 60, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def succeeded_job(**kwargs):
    job = StyleJobFactory(status="running", owner=UserFactory(email="carol@example.com"),
                          **kwargs)
    job.result_image.save("result.jpg", ContentFile(jpeg_bytes()), save=False)
    job.status = StyleJob.Status.SUCCEEDED
    job.save()
    return job


@pytest.mark.django_db
def test_the_result_arrives_as_an_attachment_over_smtp(smtp):
    job = succeeded_job()
    assert job_email_send(job_id=job.pk) is True
    [message] = smtp.messages
    assert message["To"] == "carol@example.com"
    [attachment] = [part for part in message.walk() if part.get_filename()]
    assert attachment.get_content_type() == "image/jpeg"
    assert Image.open(io.BytesIO(attachment.get_payload(decode=True))).size == (40, 30)
    [text] = [part for part in message.walk() if part.get_content_type() == "text/plain"]
    assert f"/jobs/{job.pk}/" in text.get_payload(decode=True).decode()
    job.refresh_from_db()
    assert job.emailed_at is not None
    assert job_email_send(job_id=job.pk) is False  # never twice
    assert len(smtp.messages) == 1


@pytest.mark.django_db
def test_a_large_result_is_linked_instead(smtp, settings):
    settings.EMAIL_ATTACHMENT_MAX_BYTES = 100
    settings.SITE_URL = "https://prisma.example.com"
    job = succeeded_job()
    job_email_send(job_id=job.pk)
    [message] = smtp.messages
    assert not [part for part in message.walk() if part.get_filename()]
    # The owner-checked job page (login needed), never a URL of the private file itself.
    assert f"https://prisma.example.com/jobs/{job.pk}/" in message.get_payload()
    assert job.result_image.name.split("/")[-1] not in message.get_payload()


@pytest.mark.django_db
def test_a_failed_job_emails_the_reason(smtp):
    job = StyleJobFactory(status="failed", error="The model server is down.",
                          owner=UserFactory(email="dan@example.com"))
    job_email_send(job_id=job.pk)
    [message] = smtp.messages
    assert "could not be made" in message["Subject"]
    assert "The model server is down." in message.get_payload()
    assert f"/jobs/{job.pk}/" in message.get_payload()  # which job, so each is told once


@pytest.mark.django_db
def test_the_result_email_names_the_styles_the_mix_and_the_stroke(smtp):
    alpha = BankStyleFactory(name="Alpha", bank_index=1)
    beta = BankStyleFactory(name="Beta", bank_index=2)
    mixed = succeeded_job(style=alpha, blend_with=beta, blend=0.3, stroke="bold")
    plain = succeeded_job(style=beta, stroke="fine")
    job_email_send(job_id=mixed.pk)
    job_email_send(job_id=plain.pk)
    bodies = [
        (message["Subject"], next(part for part in message.walk()
                                  if part.get_content_type() == "text/plain").get_payload())
        for message in smtp.messages
    ]
    assert bodies[0][0] == "Your photo as Alpha and Beta"
    assert ("Your photo has been repainted as Alpha mixed with Beta (30 %), with bold brush "
            "strokes. It is attached") in " ".join(bodies[0][1].split())
    assert bodies[1][0] == "Your photo as Beta"
    assert ("Your photo has been repainted as Beta, with fine brush strokes."
            in " ".join(bodies[1][1].split()))


@pytest.mark.django_db
def test_a_failed_mixed_job_names_both_styles(smtp):
    job = StyleJobFactory(status="failed", error="The model server is down.",
                          owner=UserFactory(email="erin@example.com"),
                          style=BankStyleFactory(name="Alpha", bank_index=1),
                          blend_with=BankStyleFactory(name="Beta", bank_index=2), blend=0.75)
    job_email_send(job_id=job.pk)
    [message] = smtp.messages
    assert ("We could not repaint your photo as Alpha mixed with Beta (75 %):"
            in message.get_payload())


@pytest.mark.django_db
def test_a_refused_email_is_not_marked_sent(smtp):
    smtp.refuse = 1
    job = succeeded_job()
    with pytest.raises(smtplib.SMTPDataError):  # the server's 451 for the message
        job_email_send(job_id=job.pk)
    job.refresh_from_db()
    assert job.emailed_at is None
    assert job_email_send(job_id=job.pk) is True


@pytest.mark.slow
def test_the_email_task_retries_until_the_server_takes_it(smtp, celery_worker_thread):
    from stylize.tasks import job_email_send as job_email_send_task

    smtp.refuse = 1
    job = succeeded_job()
    job_email_send_task.delay(str(job.pk))
    deadline = time.monotonic() + 60
    while not smtp.messages and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(smtp.messages) == 1
    job.refresh_from_db()
    assert job.emailed_at is not None
