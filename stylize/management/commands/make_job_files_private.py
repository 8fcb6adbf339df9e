from django.core.management.base import BaseCommand

from stylize.services.job_files import job_files_make_private


class Command(BaseCommand):
    help = (
        "Move users' photos and results stored the old way (public media, the uploader's "
        "file name) into the private storage under random names, without metadata. "
        "Safe to run again; make run runs it after migrating."
    )

    def handle(self, *args, **options):
        counts = job_files_make_private()
        self.stdout.write(
            f"{counts['moved']} file(s) made private, {counts['missing']} missing, "
            f"{counts['failed']} could not be moved."
        )
