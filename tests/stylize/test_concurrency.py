"""Races that need a database running transactions side by side: PostgreSQL, as in
production (`make test` starts one; docs/design/test-suite.md).

SQLite takes one write lock for the whole database (IMMEDIATE transactions,
prisma_site/settings.py), so there each of these passes whatever the services lock:
the tests skip there. Each racer is a thread with its own database connection (its
own PostgreSQL backend: ``race`` checks), all released at once by a barrier; a pause
inside the window between a service's check and its write (``slow_*``) makes the
race happen every time instead of now and then, and a service without its lock fails
the test (docs/design/test-suite.md says how that was checked).
"""

import threading
import time
from unittest import mock

import pytest
from django.core import mail
from django.core.files.base import ContentFile
from django.db import connection

from stylize.models import Style, StyleJob
from stylize.services import job_emails, jobs, training
from tests.factories import BankStyleFactory, StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import gradient_upload, png_bytes

pytestmark = pytest.mark.django_db(transaction=True)

#: How long each racer dawdles inside the window a lock must close.
PAUSE = 0.3


@pytest.fixture(autouse=True)
def _on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("needs transactions side by side: SQLite runs one writer at a time "
                    "(`make test` runs the suite on PostgreSQL)")


def race(count: int, work) -> list:
    """``work(i)`` in ``count`` threads at once, each on its own database connection.
    Returns what each returned or raised, in the order of ``i``."""
    outcomes: list = [None] * count
    backends: set[int] = set()
    start = threading.Barrier(count)

    def run(i):
        try:
            connection.ensure_connection()
            backends.add(connection.connection.info.backend_pid)  # psycopg's
            start.wait(timeout=30)
            outcomes[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a racer is stuck"
    assert len(backends) == count, "the racers shared a connection"
    return outcomes


def test_the_racers_are_on_this_processs_own_test_database():
    """pytest-xdist: each test process has its own (test_prisma_gw0, test_prisma_gw1, …)."""
    import os

    name = connection.settings_dict["NAME"]
    assert name.startswith("test_")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        assert name.endswith(f"_{worker}")


# --- (a) Uploads of one user at the same moment ------------------------------------------


def test_simultaneous_uploads_of_one_user_take_exactly_the_limit(settings, queue, monkeypatch):
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 3
    style, owner = StyleFactory(), UserFactory()
    UserFactory()  # another user's row: the lock is the owner's alone
    real_mix_clean = jobs.job_mix_clean

    def slow_mix_clean(**kwargs):  # after the limit's count, before the insert
        time.sleep(PAUSE)
        return real_mix_clean(**kwargs)

    monkeypatch.setattr(jobs, "job_mix_clean", slow_mix_clean)

    outcomes = race(8, lambda i: jobs.job_create(owner=owner, style=style,
                                                 input_image=gradient_upload((64, 48))))

    created = [o for o in outcomes if isinstance(o, StyleJob)]
    refused = [o for o in outcomes if isinstance(o, jobs.JobLimitExceeded)]
    assert len(created) == 3 and len(refused) == 5, outcomes
    assert all(o.in_flight == 3 for o in refused)
    assert StyleJob.objects.filter(owner=owner).count() == 3
    assert queue.call_count == 3  # a message for each job made, none for the refused


def test_simultaneous_uploads_of_two_users_do_not_wait_on_each_other(settings, queue,
                                                                     monkeypatch):
    """The lock is the owner's row: two users' uploads both go through."""
    settings.JOB_MAX_IN_FLIGHT_PER_USER = 1
    style, owners = StyleFactory(), [UserFactory(), UserFactory()]
    outcomes = race(2, lambda i: jobs.job_create(owner=owners[i], style=style,
                                                 input_image=gradient_upload((64, 48))))
    assert all(isinstance(o, StyleJob) for o in outcomes), outcomes


# --- (b) Two workers finishing the same job ----------------------------------------------


class SlowContentFile(ContentFile):
    """A result that takes ``PAUSE`` to store: the window between a worker reading the
    job's status and writing its own."""

    def chunks(self, chunk_size=None):
        time.sleep(PAUSE)
        yield from super().chunks(chunk_size)


@pytest.fixture
def emails_sent_now():
    """The job's email goes out from the thread that committed (as a worker would send
    it), to ``mail.outbox``. Yields what sending raised (``on_commit(robust=True)``
    only logs it)."""
    errors = []

    def send(args=(), kwargs=None, **options):
        try:
            job_emails.job_email_send(job_id=args[0])
        except Exception as exc:
            errors.append(exc)
            raise

    with mock.patch("stylize.tasks.job_email_send.apply_async", side_effect=send):
        yield errors


def running_job():
    """A job two workers hold: the sweep put it back on the queue while the first
    worker still painted it, and a second worker started it again."""
    job = StyleJobFactory(owner=UserFactory(email="dora@example.com"))
    assert jobs.job_start(job_id=job.pk)
    assert jobs.job_requeue(job_id=job.pk)
    assert jobs.job_start(job_id=job.pk)
    return job


def test_two_workers_succeeding_the_same_job_store_one_result_and_send_one_email(
    settings, emails_sent_now
):
    job = running_job()
    results = [png_bytes(size=(8, 8)), png_bytes(size=(9, 9))]

    outcomes = race(2, lambda i: jobs.job_succeed(
        job_id=job.pk, result_name="result.png", result_file=SlowContentFile(results[i])))

    assert sorted(outcomes) == [False, True], outcomes
    winner = outcomes.index(True)
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED
    assert job.result_image.read() == results[winner]
    # The loser stored nothing: one result file in the private storage.
    stored = [p for p in (settings.PRIVATE_MEDIA_ROOT / "results").rglob("*") if p.is_file()]
    assert len(stored) == 1, stored
    assert not emails_sent_now
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dora@example.com"]
    assert job.emailed_at is not None


def test_a_worker_failing_the_job_another_succeeds_leaves_one_end_and_one_email(
    emails_sent_now
):
    job = running_job()

    def finish(i):
        if i == 0:
            return jobs.job_succeed(job_id=job.pk, result_name="result.png",
                                    result_file=SlowContentFile(png_bytes()))
        time.sleep(PAUSE / 2)  # while the other stores its result
        return jobs.job_fail(job_id=job.pk, error="The model server is down.")

    outcomes = race(2, finish)

    assert sorted(outcomes) == [False, True], outcomes
    job.refresh_from_db()
    if outcomes[0]:
        assert job.status == StyleJob.Status.SUCCEEDED and job.error == ""
    else:
        assert job.status == StyleJob.Status.FAILED and not job.result_image
    assert not emails_sent_now
    assert len(mail.outbox) == 1


# --- (c) Two bank go-lives at once -------------------------------------------------------


@pytest.fixture
def slow_go_live(monkeypatch):
    """Each go-live dawdles after it checked the bank's live version, before it writes."""
    real_succeed = training.style_training_succeed

    def slow_succeed(**kwargs):
        time.sleep(PAUSE)
        return real_succeed(**kwargs)

    monkeypatch.setattr(training, "style_training_succeed", slow_succeed)


def go_live(*, version, slot_of, trained, started_from, num_styles=3):
    return training._bank_make_live(
        model_name="duo", version=version, num_styles=num_styles, slot_of=slot_of,
        trained=trained, record={"steps": version}, metrics={}, started_from=started_from)


def live_versions():
    return dict(Style.objects.filter(model_name="duo", bank_index__isnull=False)
                .values_list("slug", "live_version"))


def test_two_slot_retrains_of_one_bank_going_live_at_once_leave_one_version(slow_go_live):
    red = BankStyleFactory(slug="red", model_name="duo", bank_index=1, live_version=1)
    blue = BankStyleFactory(slug="blue", model_name="duo", bank_index=2, live_version=1)
    slot_of = {red.pk: 1, blue.pk: 2}

    outcomes = race(2, lambda i: go_live(version=2 + i, slot_of=slot_of,
                                         trained=[[red], [blue]][i], started_from=1))

    changed = [o for o in outcomes if isinstance(o, training.BankChanged)]
    assert len(changed) == 1, outcomes
    winner = 2 + next(i for i, o in enumerate(outcomes) if isinstance(o, list))
    assert live_versions() == {"red": winner, "blue": winner}
    assert "went from version 1 to" in str(changed[0])


def test_two_first_go_lives_of_a_new_bank_at_once_leave_one_version(slow_go_live):
    """No member yet, so no row both go-lives would lock: each brings its own style."""
    first = StyleFactory(slug="first", status=Style.Status.DRAFT, live_version=None)
    second = StyleFactory(slug="second", status=Style.Status.DRAFT, live_version=None)

    outcomes = race(2, lambda i: go_live(
        version=1 + i, slot_of={[first, second][i].pk: 1}, trained=[[first, second][i]],
        started_from=None, num_styles=2))

    # Without the bank's own lock (training._bank_lock) the second failed on the slot's
    # unique constraint instead, an IntegrityError for its reason.
    changed = [o for o in outcomes if isinstance(o, training.BankChanged)]
    assert len(changed) == 1, outcomes
    assert "went from version None to" in str(changed[0])
    winner = 1 + next(i for i, o in enumerate(outcomes) if isinstance(o, list))
    assert list(live_versions().values()) == [winner]  # one style in slot 1
