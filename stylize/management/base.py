from django.core.management.base import BaseCommand


class ServiceCommand(BaseCommand):
    """A command that runs a service once (``run``) and writes one line saying what it
    did: ``report`` filled in (``str.format``) with the counts ``run`` returns."""

    #: The line written, with a ``{name}`` for each count ``run`` returns.
    report: str

    def run(self) -> dict:
        """Call the service; what it did, by the names ``report`` uses."""
        raise NotImplementedError

    def handle(self, *args, **options):
        self.stdout.write(self.report.format(**self.run()))
