from stylize.management.base import ServiceCommand
from stylize.services.job_files import job_files_make_private


class Command(ServiceCommand):
    help = (
        "Move users' photos and results stored the old way (public media, the uploader's "
        "file name) into the private storage under random names, without metadata. "
        "Safe to run again; make run runs it after migrating."
    )
    report = "{moved} file(s) made private, {missing} missing, {failed} could not be moved."

    def run(self):
        return job_files_make_private()
