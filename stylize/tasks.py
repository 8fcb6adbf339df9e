"""Celery tasks: load by id, call a service, nothing else."""

import logging
import smtplib

from celery import shared_task
from django.conf import settings

from .emails import job_email_send
from .job_files import jobs_delete_expired, private_files_sweep_orphans
from .models import Style, StyleJob
from .services import jobs_requeue_stuck
from .stylizing import JobRetry, job_run
from .training import style_train

logger = logging.getLogger(__name__)


@shared_task(name="stylize.tasks.stylize_job", acks_late=True, reject_on_worker_lost=True)
def stylize_job(job_id: str) -> None:
    try:
        job_run(job_id=job_id)
    except JobRetry as retry:
        # job_run already put the job back on the queue with its backoff.
        logger.warning("%s", retry)
    except StyleJob.DoesNotExist:
        logger.info("Job %s was deleted while it ran.", job_id)


@shared_task(
    name="stylize.tasks.send_job_email",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=10,
    retry_backoff_max=600,
    max_retries=8,
)
def send_job_email(job_id: str) -> None:
    job_email_send(job_id=job_id)


@shared_task(name="stylize.tasks.requeue_stuck_jobs")
def requeue_stuck_jobs() -> dict:
    return jobs_requeue_stuck()


@shared_task(name="stylize.tasks.delete_expired_jobs")
def delete_expired_jobs() -> dict:
    return {"jobs": jobs_delete_expired(), "orphans": private_files_sweep_orphans()}


@shared_task(
    name="stylize.tasks.train_style",
    # Acked on receipt: a multi-hour run must not be redelivered to a second worker
    # when it outlives the broker's visibility timeout.
    acks_late=False,
    soft_time_limit=settings.TRAINING_TIME_LIMIT,
    time_limit=settings.TRAINING_TIME_LIMIT + 60,
)
def train_style(style_id: int, overrides: dict) -> int:
    """Train a style; ``overrides`` are ``ml.config.TrainConfig`` fields (JSON)."""
    style = Style.objects.get(pk=style_id)
    style = style_train(style=style, overrides=overrides)
    return style.live_version
