from stylize.management.base import ServiceCommand
from stylize.services.jobs import jobs_requeue_stuck


class Command(ServiceCommand):
    help = (
        "Re-enqueue jobs left queued or running past their deadline (failing those "
        "out of attempts) and resend missing result emails; beat runs this every minute."
    )
    report = ("{requeued} job(s) re-enqueued, {failed} failed after their last attempt, "
              "{emails} email(s) resent.")

    def run(self):
        return jobs_requeue_stuck()
