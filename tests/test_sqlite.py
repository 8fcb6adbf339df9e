"""SQLite, `make run`'s embedded database, keeps a test of its own: the suite runs on
PostgreSQL (`make test`, docs/design/test-suite.md), so this checks in a fresh process
on the product's settings with no DATABASE_URL that the migrations apply to a new
SQLite file and that a job's life works there, uploads at the same moment included
(its IMMEDIATE transactions wait for the write lock instead of failing)."""

import json
import subprocess
import sys

from tests.helpers import BASE_DIR, clean_env

SCRIPT = r"""
import json
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.db import connection

call_command("migrate", "--noinput", verbosity=0)

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from stylize.models import Style, StyleJob
from stylize.services import jobs, queueing
from tests.helpers import png_bytes, race_job_creations

sent = []
class Recorded:
    def __init__(self, name):
        self.name = name
    def apply_async_on_commit(self, args, *rest, **kwargs):
        connection.on_commit(lambda: sent.append((self.name, args)))
    def delay_on_commit(self, *args):
        connection.on_commit(lambda: sent.append((self.name, args)))
queueing._task = Recorded  # no broker here: the messages are recorded once committed

from django.contrib.auth import get_user_model
owner = get_user_model().objects.create_user("sam", "sam@example.com", "pw")
style = Style.objects.create(name="Alpha", slug="alpha", model_name="alpha", live_version=1,
                             status="ready", bank_index=1, bank_slots=2,
                             painting=ContentFile(png_bytes(), name="painting.png"))

def upload():
    return SimpleUploadedFile("photo.png", png_bytes(), content_type="image/png")

settings.JOB_MAX_IN_FLIGHT_PER_USER = 3
outcomes = race_job_creations(owner, style, 5, upload)

job = StyleJob.objects.filter(owner=owner).first()
started = [jobs.job_start(job_id=job.pk), jobs.job_start(job_id=job.pk)]
succeeded = [jobs.job_succeed(job_id=job.pk, result_name="result.png",
                              result_file=ContentFile(png_bytes())) for _ in range(2)]
job.refresh_from_db()
print(json.dumps({
    "engine": connection.vendor,
    "name": str(settings.DATABASES["default"]["NAME"]),
    "outcomes": outcomes,
    "jobs": StyleJob.objects.filter(owner=owner).count(),
    "started": started,
    "succeeded": succeeded,
    "status": job.status,
    "result": job.result_image.read() == png_bytes(),
    "sent": sorted(name for name, _ in sent),
}))
"""


def test_make_runs_sqlite_migrates_and_runs_a_job(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=BASE_DIR, capture_output=True, text=True,
        timeout=300, env=clean_env(PRISMA_VAR_DIR=str(tmp_path)),  # no DATABASE_URL
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["engine"] == "sqlite" and seen["name"] == str(tmp_path / "db.sqlite3")
    assert seen["outcomes"] == ["created"] * 3 + ["refused"] * 2  # no "database is locked"
    assert seen["jobs"] == 3
    assert seen["started"] == [True, False] and seen["succeeded"] == [True, False]
    assert seen["status"] == "succeeded" and seen["result"]
    # A message for each job made, one email for the one that ended.
    assert seen["sent"] == [queueing_name("job_email_send")] + [queueing_name("job_run")] * 3


def queueing_name(task: str) -> str:
    return f"stylize.tasks.{task}"
