"""Fair scheduling (docs/design/fairness.md): a queue per job cost class with a worker
each, a per-user limit of jobs in flight, one creation rate for the page and the API."""

from datetime import timedelta
from unittest import mock

import pytest
import yaml
from celery.exceptions import Retry
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from prisma_site import devstack
from stylize.backends.base import TransientBackendError
from stylize.models import StyleJob
from stylize.services import jobs
from stylize.tasks import job_run as job_run_task
from tests.factories import StyleFactory, UserFactory
from tests.helpers import BASE_DIR, gradient_upload, race_job_creations

PHOTO = (64, 48)  # a small job's photo (width, height)


def queues_sent(apply_async) -> list[str]:
    return [call.kwargs["queue"] for call in apply_async.call_args_list]


# --- Cost classes and their queues ------------------------------------------------------


@pytest.mark.parametrize("width, height, max_side, expected", [
    (2000, 2000, 4096, "small"),   # exactly 4 MP painted
    (2001, 2000, 4096, "large"),
    (4896, 3264, 4096, "large"),   # 16 MP at 4096: 11.2 MP painted
    (4896, 3264, 2048, "small"),   # the same photo shrunk to 2048 × 1365
    (7746, 5164, 1024, "small"),   # 40 MP uploaded, 0.7 MP painted
    (1000, 1000, 4096, "small"),   # never enlarged
])
def test_the_cost_class_is_the_pixels_painted(settings, width, height, max_side, expected):
    settings.JOB_SMALL_MAX_PIXELS = 4_000_000
    assert jobs.job_cost_class(width=width, height=height, max_side=max_side) == expected


def test_the_defaults():
    from django.conf import settings

    assert settings.JOB_SMALL_MAX_PIXELS == 4_000_000
    assert settings.JOB_MAX_IN_FLIGHT_PER_USER == 3
    assert settings.JOB_QUEUES == {"small": settings.CELERY_TASK_DEFAULT_QUEUE, "large": "large"}
    assert settings.CELERY_TASK_ROUTES["stylize.tasks.style_train"] == {"queue": "training"}


@pytest.mark.django_db
def test_a_job_goes_to_the_queue_of_its_class(settings, queue, django_capture_on_commit_callbacks):
    settings.JOB_SMALL_MAX_PIXELS = 2000
    style, owner = StyleFactory(), UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        small = jobs.job_create(owner=owner, style=style, input_image=gradient_upload((40, 30)))
        large = jobs.job_create(owner=owner, style=style, input_image=gradient_upload(PHOTO))
        shrunk = jobs.job_create(owner=owner, style=style, input_image=gradient_upload((640, 480)),
                                     max_side=64)  # 64 × 48 painted
    assert [small.cost_class, large.cost_class, shrunk.cost_class] == ["small", "large", "large"]
    assert queues_sent(queue) == ["celery", "large", "large"]
    StyleJob.objects.update(status=StyleJob.Status.SUCCEEDED, finished_at=timezone.now())
    settings.JOB_SMALL_MAX_PIXELS = 64 * 48
    with django_capture_on_commit_callbacks(execute=True):
        again = jobs.job_create(owner=owner, style=style, input_image=gradient_upload(PHOTO))
    assert again.cost_class == "small" and queues_sent(queue)[-1] == "celery"


@pytest.mark.django_db
def test_retries_and_the_sweep_put_a_job_back_on_its_own_queue(
    settings, queue, django_capture_on_commit_callbacks
):
    settings.JOB_SMALL_MAX_PIXELS = 1000
    job = jobs.job_create(owner=UserFactory(), style=StyleFactory(),
                          input_image=gradient_upload(PHOTO))
    assert job.cost_class == "large"
    queue.reset_mock()

    settings.JOB_RETRY_BACKOFF = 5
    # A transient error: the task's own retry (Task.retry) goes to the job's queue.
    with mock.patch("stylize.services.stylizing.photo_stylize",
                    side_effect=TransientBackendError("The model server is restarting.")), \
            mock.patch.object(job_run_task, "retry", side_effect=Retry) as retry, \
            pytest.raises(Retry):
        job_run_task(str(job.pk))
    assert retry.call_args.kwargs["queue"] == "large"
    assert retry.call_args.kwargs["countdown"] == 5
    assert StyleJob.objects.get(pk=job.pk).status == "queued"

    long_ago = timezone.now() - timedelta(hours=2)
    StyleJob.objects.filter(pk=job.pk).update(status="queued", enqueued_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.jobs_requeue_stuck()["requeued"] == 1
    StyleJob.objects.filter(pk=job.pk).update(status="running", started_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.jobs_requeue_stuck()["requeued"] == 1
    assert queues_sent(queue) == ["large", "large"]


@pytest.mark.django_db
def test_a_deleted_jobs_message_costs_one_query_and_no_model(queue, django_assert_num_queries):
    job = jobs.job_create(owner=UserFactory(), style=StyleFactory(),
                          input_image=gradient_upload(PHOTO))
    job_id = str(job.pk)
    jobs.job_delete(job=job)
    with (
        mock.patch("stylize.services.stylizing.get_backend", side_effect=AssertionError("loaded")),
        mock.patch("stylize.services.stylizing.load_photo", side_effect=AssertionError("read")),
        django_assert_num_queries(1),  # the guarded queued → running UPDATE, 0 rows
    ):
        job_run_task(job_id)


# --- Every queue has a worker -------------------------------------------------------------


def consumed_queues(command: list[str] | str) -> set[str]:
    words = command.split() if isinstance(command, str) else command
    return set(words[words.index("--queues") + 1].split(","))


def test_make_run_starts_a_worker_for_every_queue(settings, tmp_path):
    commands = dict(devstack.worker_commands(port=8000, workers=2, var_dir=tmp_path))
    per_worker = {name: consumed_queues(command) for name, command in commands.items()}
    assert per_worker == {"worker": {"celery"}, "worker-large": {"large"},
                          "worker-previews": {"previews"}, "trainer": {"training"},
                          "trainer-own-styles": {"own-styles"}}
    assert set(settings.JOB_QUEUES.values()) | {settings.PREVIEW_QUEUE, "training",
                                                settings.OWN_STYLE_QUEUE} == \
        set().union(*per_worker.values())
    # What other stacks (bench/loadtest.py) start: one stylize worker per job queue.
    assert sorted(consumed_queues(args).pop() for args in devstack.STYLIZE_WORKERS.values()) \
        == sorted(settings.JOB_QUEUES.values())
    assert "--beat" in commands["worker"]  # the sweeps run beside the small jobs
    assert commands["worker"][commands["worker"].index("--concurrency") + 1] == "2"


def test_docker_compose_runs_a_worker_for_every_queue(settings):
    services_ = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]
    per_service = {name: consumed_queues(service["command"])
                   for name, service in services_.items()
                   if "celery" in str(service.get("command", "")) and "--queues" in
                   str(service.get("command", ""))}
    assert per_service == {"worker": {"celery"}, "worker-large": {"large"},
                           "worker-previews": {"previews"}, "trainer": {"training"},
                           "worker-own-styles": {"own-styles"}}
    assert "large@" in services_["worker-large"]["healthcheck"]["test"][1]


# --- Jobs in flight per user ------------------------------------------------------------


@pytest.fixture
def api_user(empty_cache):
    StyleFactory(slug="starry-night")
    client = APIClient()
    user = UserFactory()
    client.force_authenticate(user)
    return client, user


def api_create(client):
    return client.post("/api/v1/jobs/", {"image": gradient_upload(PHOTO), "style": "starry-night"},
                       format="multipart")


@pytest.mark.django_db
def test_the_api_refuses_a_fourth_job_in_flight_with_429(queue, api_user):
    client, user = api_user
    assert [api_create(client).status_code for _ in range(3)] == [201, 201, 201]
    refused = api_create(client)
    assert refused.status_code == 429
    assert refused.json()["detail"] == (
        "You already have 3 jobs waiting or being painted, and at most 3 jobs can be on the "
        "way at once. Please wait until one has finished, then upload again."
    )
    assert StyleJob.objects.filter(owner=user).count() == 3
    # Another user has places of their own.
    other = APIClient()
    other.force_authenticate(UserFactory())
    assert api_create(other).status_code == 201
    # A finished job (or a deleted one) frees its place; a running one does not.
    first, second, _ = StyleJob.objects.filter(owner=user)
    StyleJob.objects.filter(pk=first.pk).update(status="running")
    assert api_create(client).status_code == 429
    StyleJob.objects.filter(pk=first.pk).update(status="succeeded", finished_at=timezone.now())
    assert api_create(client).status_code == 201
    assert client.delete(f"/api/v1/jobs/{second.pk}/").status_code == 204
    assert api_create(client).status_code == 201
    assert api_create(client).status_code == 429


@pytest.mark.django_db
def test_the_limit_is_a_setting_and_zero_turns_it_off(settings, queue, api_user):
    client, _ = api_user
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 1
    assert [api_create(client).status_code for _ in range(2)] == [201, 429]
    assert "at most 1 job can be on the way" in api_create(client).json()["detail"]
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 0
    assert [api_create(client).status_code for _ in range(4)] == [201] * 4


@pytest.fixture
def page_user(client, empty_cache):
    StyleFactory(slug="starry-night")
    user = UserFactory()
    client.force_login(user)
    return user


def page_upload(client):
    return client.post(reverse("stylize:upload"),
                       {"image": gradient_upload(PHOTO), "style": "starry-night", "max_side": "512",
                        "strength": "1"})


@pytest.mark.django_db
def test_the_upload_page_refuses_a_fourth_job_in_flight_with_429(client, queue, page_user):
    assert [page_upload(client).status_code for _ in range(3)] == [302, 302, 302]
    refused = page_upload(client)
    assert refused.status_code == 429
    page = refused.content.decode()
    assert 'class="form-errors"' in page and "at most 3 jobs can be on the way at once" in page
    assert StyleJob.objects.filter(owner=page_user).count() == 3


@pytest.mark.django_db(transaction=True)
def test_uploads_at_the_same_moment_do_not_overshoot_the_limit(settings, queue):
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 3
    style, owner = StyleFactory(), UserFactory()
    outcomes = race_job_creations(owner, style, 6, lambda: gradient_upload(PHOTO))
    assert outcomes == ["created"] * 3 + ["refused"] * 3
    assert StyleJob.objects.filter(owner=owner).count() == 3


# --- One creation rate for the page and the API -------------------------------------------


@pytest.mark.django_db
def test_page_and_api_uploads_share_one_rate_limit(settings, client, queue, page_user):
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 0  # only the rate here
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "job_create": "2/hour"},
    }
    api = APIClient()
    api.force_authenticate(page_user)
    assert api_create(api).status_code == 201
    assert page_upload(client).status_code == 302
    refused = page_upload(client)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    page = refused.content.decode()
    assert "You have uploaded too many photos: at most 2 an hour." in page
    assert "please try again in" in page and 'class="form-errors"' in page
    assert api_create(api).status_code == 429
    assert StyleJob.objects.filter(owner=page_user).count() == 2
    # Someone else has a count of their own.
    client.force_login(UserFactory())
    assert page_upload(client).status_code == 302


@pytest.mark.django_db
def test_sixty_page_uploads_in_a_row_stop_at_the_rate(settings, client, queue, page_user):
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 0
    codes = [page_upload(client).status_code for _ in range(32)]
    assert codes == [302] * 30 + [429] * 2  # API_JOB_CREATE_RATE: 30/hour


# --- A small job overtakes a queue of large ones on real workers ---------------------------
# On real worker processes, one per queue as `make run` starts them: tests/test_loadtest.py
# (two Celery workers in threads of one process did not always shut down cleanly).
