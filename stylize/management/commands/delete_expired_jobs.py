from django.conf import settings
from django.core.management.base import BaseCommand

from stylize.services.job_files import private_files_sweep_orphans
from stylize.services.jobs import jobs_delete_expired


class Command(BaseCommand):
    help = (
        "Delete jobs (with their photos and results) made more than JOB_RETENTION_DAYS "
        "ago, and private files no job names; beat runs this every hour."
    )

    def handle(self, *args, **options):
        jobs = jobs_delete_expired()
        orphans = private_files_sweep_orphans()
        self.stdout.write(
            f"{jobs} job(s) older than {settings.JOB_RETENTION_DAYS} days deleted, "
            f"{orphans} orphan file(s) removed."
        )
