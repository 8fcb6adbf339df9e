from django.conf import settings

from stylize.management.base import ServiceCommand
from stylize.services.job_files import private_files_sweep_orphans
from stylize.services.jobs import jobs_delete_expired


class Command(ServiceCommand):
    help = (
        "Delete jobs (with their photos and results) made more than JOB_RETENTION_DAYS "
        "ago, and private files no job names; beat runs this every hour."
    )
    report = "{jobs} job(s) older than {days} days deleted, {orphans} orphan file(s) removed."

    def run(self):
        return {"jobs": jobs_delete_expired(), "orphans": private_files_sweep_orphans(),
                "days": settings.JOB_RETENTION_DAYS}
