from django.core.management.base import BaseCommand

from stylize.services.jobs import jobs_requeue_stuck


class Command(BaseCommand):
    help = (
        "Re-enqueue jobs left queued or running past their deadline (failing those "
        "out of attempts) and resend missing result emails; beat runs this every minute."
    )

    def handle(self, *args, **options):
        counts = jobs_requeue_stuck()
        self.stdout.write(
            f"{counts['requeued']} job(s) re-enqueued, {counts['failed']} failed after "
            f"their last attempt, {counts['emails']} email(s) resent."
        )
