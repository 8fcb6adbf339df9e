"""The job flow on real parts: Redis, a Celery worker, the model backends, SMTP."""

import io
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from stylize.backends import get_backend
from stylize.models import StyleJob
from stylize.services import jobs
from stylize.services.stylizing import job_run
from tests.factories import StyleFactory, UserFactory
from tests.helpers import gradient_upload

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_style(transactional_db):
    return StyleFactory(slug="tiny", model_name="tiny", live_version=1)


def wait_for_finish(job_id, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = StyleJob.objects.get(pk=job_id)
        if job.is_finished and (job.emailed_at or not job.owner.email):
            return job
        time.sleep(0.2)
    pytest.fail(f"Job {job_id} still {StyleJob.objects.get(pk=job_id).status} after {timeout} s")


def test_a_job_goes_from_upload_to_emailed_result_on_a_real_worker(
    use_local_backend, tiny_style, celery_worker_thread
):
    owner = UserFactory(email="alice@example.com")
    job = jobs.job_create(owner=owner, style=tiny_style, input_image=gradient_upload(),
                              max_side=100)
    job = wait_for_finish(job.pk)

    assert job.status == StyleJob.Status.SUCCEEDED, job.error
    assert job.attempts == 1 and job.started_at and job.finished_at and job.emailed_at
    result = Image.open(job.result_image)
    assert result.size == (100, 75)  # downscaled to max_side, aspect kept
    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    [(name, content, mimetype)] = message.attachments
    assert mimetype == "image/jpeg" and Image.open(io.BytesIO(content)).size == (100, 75)


def test_strength_zero_paints_with_the_identity_slot_alone(use_local_backend, tiny_style,
                                                         tiny_serving_dir):
    """Strength is in the network: at 0 the job paints the identity slot (which a trained
    network makes the photo itself; the tiny one's weights are random)."""
    from ml.bank import mix_weights
    from ml.export import load_savedmodel_fn

    job = jobs.job_create(owner=UserFactory(), style=tiny_style,
                              input_image=gradient_upload(fmt="PNG"), strength=0.0)
    job_run(job_id=job.pk)
    job.refresh_from_db()
    original = np.asarray(Image.open(job.input_image).convert("RGB"))
    result = np.asarray(Image.open(job.result_image), dtype=float)
    model = load_savedmodel_fn(tiny_serving_dir / "models" / "tiny" / "1")
    identity = model(original[None], mix_weights(2, 1, strength=0.0))[0].astype(float)
    painted = model(original[None], mix_weights(2, 1))[0].astype(float)
    assert np.abs(identity - result).mean() < 4  # only JPEG's loss
    assert np.abs(painted - result).mean() > 10


def test_a_duplicate_delivery_does_nothing(use_local_backend, tiny_style):
    job = jobs.job_create(owner=UserFactory(), style=tiny_style, input_image=gradient_upload())
    assert job_run(job_id=job.pk) is True
    first = StyleJob.objects.get(pk=job.pk)
    assert job_run(job_id=job.pk) is False
    again = StyleJob.objects.get(pk=job.pk)
    assert again.attempts == 1 and again.result_image.name == first.result_image.name


def test_a_style_whose_model_is_missing_fails_with_a_reason_and_an_email(
    use_local_backend, transactional_db, celery_worker_thread
):
    style = StyleFactory(model_name="never_exported", live_version=3)
    job = jobs.job_create(owner=UserFactory(email="bob@example.com"), style=style,
                              input_image=gradient_upload())
    job = wait_for_finish(job.pk)
    assert job.status == StyleJob.Status.FAILED and job.error
    assert job.attempts == 1  # permanent: not retried
    [message] = mail.outbox
    assert "could not be made" in message.subject and job.error in message.body


def test_an_unreadable_photo_fails_cleanly(use_local_backend, tiny_style):
    job = jobs.job_create(owner=UserFactory(), style=tiny_style, input_image=gradient_upload())
    with open(job.input_image.path, "wb") as broken:
        broken.write(b"not an image at all")
    job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == StyleJob.Status.FAILED
    assert job.error == "Your photo could not be read as an image."


def test_transient_errors_retry_with_backoff_then_fail_after_the_last_attempt(
    settings, tiny_style, celery_worker_thread
):
    from prisma_site.devstack import free_port

    settings.MODEL_BACKEND = "tfserving"
    settings.TFSERVING_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings.TFSERVING_TIMEOUT = 2
    settings.JOB_MAX_ATTEMPTS = 3
    settings.JOB_RETRY_BACKOFF = 0.2
    get_backend.cache_clear()
    try:
        job = jobs.job_create(owner=UserFactory(), style=tiny_style,
                                  input_image=gradient_upload())
        job = wait_for_finish(job.pk)
    finally:
        get_backend.cache_clear()
    assert job.status == StyleJob.Status.FAILED
    assert job.attempts == 3 and "gave up after 3 attempts" in job.error


def test_the_tfserving_backend_runs_jobs_over_grpc(
    settings, tiny_style, tfserving_server, celery_worker_thread
):
    settings.MODEL_BACKEND = "tfserving"
    settings.TFSERVING_ADDRESS = tfserving_server
    get_backend.cache_clear()
    try:
        job = jobs.job_create(owner=UserFactory(), style=tiny_style,
                                  input_image=gradient_upload(size=(64, 48)))
        job = wait_for_finish(job.pk)
    finally:
        get_backend.cache_clear()
    assert job.status == StyleJob.Status.SUCCEEDED, job.error
    assert Image.open(job.result_image).size == (64, 48)


def test_the_sweep_requeues_stuck_jobs_and_fails_those_out_of_attempts(
    settings, use_local_backend, tiny_style, celery_worker_thread
):
    settings.JOB_MAX_ATTEMPTS = 2
    long_ago = timezone.now() - timedelta(hours=2)
    owner = UserFactory()
    lost = jobs.job_create(owner=owner, style=tiny_style, input_image=gradient_upload())
    wait_for_finish(lost.pk)  # let the first message be used up, then fake a lost run
    StyleJob.objects.filter(pk=lost.pk).update(
        status="running", started_at=long_ago, attempts=1, finished_at=None,
        result_image="", emailed_at=None,
    )
    exhausted = jobs.job_create(owner=owner, style=tiny_style, input_image=gradient_upload())
    wait_for_finish(exhausted.pk)
    StyleJob.objects.filter(pk=exhausted.pk).update(
        status="queued", enqueued_at=long_ago, attempts=2, finished_at=None, emailed_at=None,
    )

    out = io.StringIO()
    call_command("requeue_stuck_jobs", stdout=out)
    assert "1 job(s) re-enqueued, 1 failed" in out.getvalue()

    lost = wait_for_finish(lost.pk)
    assert lost.status == StyleJob.Status.SUCCEEDED and lost.attempts == 2
    exhausted.refresh_from_db()
    assert exhausted.status == StyleJob.Status.FAILED
    assert "did not finish after 2 attempts" in exhausted.error


def test_stylize_command_paints_one_photo_without_the_queue(
    use_local_backend, tiny_style, tmp_path
):
    photo = tmp_path / "in.png"
    photo.write_bytes(gradient_upload(size=(90, 60)).read())
    out = io.StringIO()
    call_command("stylize", str(photo), "--style", "tiny", "-o", str(tmp_path / "out.png"),
                 "--strength", "0.7", "--preserve-colors", "--max-side", "64", stdout=out)
    assert Image.open(tmp_path / "out.png").size == (64, 43)
    assert "out.png (64×43" in out.getvalue()
