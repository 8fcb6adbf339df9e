"""Faults on real parts: every accepted job ends succeeded, or failed with a reason.

A worker killed with SIGKILL mid-job, the model server down for a while, Redis
flushed with jobs in flight (the SMTP server refusing mail is in test_emails.py).
"""

import io
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from stylize.backends import get_backend
from stylize.models import StyleJob
from stylize.services import jobs
from tests.factories import StyleFactory, UserFactory
from tests.helpers import BASE_DIR, gradient_upload, worker_env

pytestmark = pytest.mark.slow


def wait_until_all_finished(job_ids, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list(StyleJob.objects.filter(pk__in=job_ids))
        if all(job.is_finished for job in jobs):
            return jobs
        time.sleep(0.3)
    states = {str(j.pk)[:8]: j.status for j in StyleJob.objects.filter(pk__in=job_ids)}
    pytest.fail(f"Jobs not finished after {timeout} s: {states}")


def assert_none_left_waiting():
    assert not StyleJob.objects.exclude(status__in=StyleJob.FINISHED).exists()


@pytest.fixture
def grpc_backend(settings, fake_tfserving):
    settings.MODEL_BACKEND = "tfserving"
    settings.TFSERVING_ADDRESS = fake_tfserving.address
    settings.TFSERVING_TIMEOUT = 3
    get_backend.cache_clear()
    yield fake_tfserving
    get_backend.cache_clear()


@pytest.fixture
def tiny_style(transactional_db):
    return StyleFactory(slug="tiny", model_name="tiny", live_version=1)


def test_model_server_down_for_a_while_then_back(settings, grpc_backend, tiny_style,
                                                 celery_worker_thread):
    settings.JOB_MAX_ATTEMPTS = 6
    settings.JOB_RETRY_BACKOFF = 0.5  # retries after 0.5, 1, 2, 4, 8 s
    grpc_backend.stop()
    owner = UserFactory()
    created = [jobs.job_create(owner=owner, style=tiny_style, input_image=gradient_upload())
            for _ in range(3)]
    time.sleep(3)
    assert StyleJob.objects.filter(attempts__gte=1).exists()  # they tried while it was down
    grpc_backend.start()

    finished = wait_until_all_finished([job.pk for job in created])
    assert all(job.status == StyleJob.Status.SUCCEEDED for job in finished)
    assert max(job.attempts for job in finished) >= 2
    assert_none_left_waiting()


def test_redis_flushed_with_jobs_in_flight(settings, tiny_style, tiny_serving_dir):
    import redis
    from celery.contrib.testing.worker import start_worker

    from prisma_site.celery import app

    settings.MODEL_BACKEND, settings.SERVING_DIR = "local", tiny_serving_dir
    settings.JOB_QUEUED_TIMEOUT = 1
    get_backend.cache_clear()
    owner = UserFactory()
    created = [jobs.job_create(owner=owner, style=tiny_style, input_image=gradient_upload())
            for _ in range(3)]
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()  # messages gone
    time.sleep(1.2)
    with start_worker(app, pool="solo", perform_ping_check=False,
                      queues=list(django_settings.JOB_QUEUES.values())):
        out = io.StringIO()
        call_command("requeue_stuck_jobs", stdout=out)
        assert out.getvalue().startswith("3 job(s) re-enqueued")
        finished = wait_until_all_finished([job.pk for job in created])
    assert all(job.status == StyleJob.Status.SUCCEEDED for job in finished)
    assert_none_left_waiting()


def start_worker_process(env):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "prisma_site", "worker", "--pool", "prefork",
         "--concurrency", "1", "--queues", "celery,large", "--loglevel", "INFO", "--beat",
         "--schedule", env["PRISMA_VAR_DIR"] + "/celerybeat-schedule"],
        cwd=BASE_DIR, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def test_worker_killed_mid_job_and_restarted(settings, grpc_backend, tiny_style, tmp_path):
    grpc_backend.predict_delay = 4  # long enough to kill the worker inside Predict
    # The worker process works on this test's database and media, on tests.settings.
    env = worker_env(
        settings,
        PRISMA_VAR_DIR=str(tmp_path),
        MODEL_BACKEND="tfserving",
        TFSERVING_ADDRESS=grpc_backend.address,
        TFSERVING_TIMEOUT="30",
        JOB_RUNNING_TIMEOUT="3",
        JOB_SWEEP_INTERVAL="1",
        EMAIL_URL="consolemail://",
    )
    worker = start_worker_process(env)
    try:
        job = jobs.job_create(owner=UserFactory(), style=tiny_style,
                                  input_image=gradient_upload())
        deadline = time.monotonic() + 60
        while StyleJob.objects.get(pk=job.pk).status != "running":
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.1)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        assert StyleJob.objects.get(pk=job.pk).status == "running"  # left behind

        grpc_backend.predict_delay = 0
        worker = start_worker_process(env)
        [finished] = wait_until_all_finished([job.pk], timeout=120)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
    assert finished.status == StyleJob.Status.SUCCEEDED, finished.error
    assert finished.attempts == 2
    assert_none_left_waiting()


def test_a_job_made_while_the_broker_is_down_is_accepted_and_swept_later(
    tiny_style, tiny_serving_dir
):
    """Redis restarting while a user uploads: the job is committed, the API answers 201
    (never a 500 for a job that exists), and the sweep enqueues it once Redis is back."""
    from django.utils import timezone
    from kombu import pools as kombu_pools
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from prisma_site.devstack import free_port

    owner = UserFactory()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    from stylize.tasks import job_run as job_run_task

    app = job_run_task.app  # the app that sends the job's message

    def use_broker(url):
        app.conf.broker_url = url
        kombu_pools.reset()  # every cached connection and producer goes
        app._pool = None
        app.amqp._producer_pool = None

    working_broker = app.conf.broker_url
    use_broker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        response = api.post("/api/v1/jobs/", {"image": gradient_upload(), "style": "tiny"},
                            format="multipart")
    finally:
        use_broker(working_broker)

    assert response.status_code == 201, response.content
    job = StyleJob.objects.get(pk=response.json()["id"])
    assert job.status == StyleJob.Status.QUEUED
    later = timezone.now() + timezone.timedelta(seconds=django_settings.JOB_QUEUED_TIMEOUT + 1)
    assert jobs.jobs_requeue_stuck(now=later)["requeued"] == 1
