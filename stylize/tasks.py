"""Celery tasks: load by id, call the service each is named after, nothing else.

The task names are ``stylize.tasks.<service>``; the services send them by name
(``stylize.services.queueing``).
"""

import logging
import smtplib

from celery import shared_task
from django.conf import settings

from .api.serializers import job_api_data
from .models import Style, StyleJob
from .services import (
    job_emails,
    job_files,
    jobs,
    own_styles,
    previews,
    stylizing,
    training,
    webhooks,
)

logger = logging.getLogger(__name__)


def _row_counted_task(name: str):
    """``shared_task`` for a service whose attempts the job's row counts (and whose
    ``*Retry`` says when the next is): bound, for ``self.retry``; acked late and sent
    again if its worker is lost; no Celery limit on retries (``max_retries=None``), as
    Celery's count would not see the sweep's resends."""
    return shared_task(bind=True, name=name, acks_late=True, reject_on_worker_lost=True,
                       max_retries=None)


# The job's row counts the attempts: JOB_MAX_ATTEMPTS.
@_row_counted_task("stylize.tasks.job_run")
def job_run(self, job_id: str) -> None:
    try:
        stylizing.job_run(job_id=job_id)
    except stylizing.JobRetry as retry:
        # The job is queued again in its row; this sends its retry, to its own queue.
        logger.warning("%s", retry)
        raise self.retry(countdown=retry.countdown, queue=retry.queue, exc=retry) from retry
    except StyleJob.DoesNotExist:
        logger.info("Job %s was deleted while it ran.", job_id)


@shared_task(
    name="stylize.tasks.job_email_send",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=10,
    retry_backoff_max=600,
    max_retries=8,
)
def job_email_send(job_id: str) -> None:
    job_emails.job_email_send(job_id=job_id)


# The job's row counts the attempts (WEBHOOK_MAX_ATTEMPTS) and sets the backoff.
@_row_counted_task("stylize.tasks.job_webhook_deliver")
def job_webhook_deliver(self, job_id: str) -> None:
    try:
        webhooks.job_webhook_deliver(job_id=job_id, payload=job_api_data)
    except webhooks.WebhookRetry as retry:
        logger.warning("%s", retry)
        raise self.retry(countdown=retry.countdown, exc=retry) from retry
    except StyleJob.DoesNotExist:
        logger.info("Job %s was deleted before its webhook went out.", job_id)


@shared_task(name="stylize.tasks.jobs_requeue_stuck")
def jobs_requeue_stuck() -> dict:
    return jobs.jobs_requeue_stuck()


@shared_task(name="stylize.tasks.jobs_delete_expired")
def jobs_delete_expired() -> dict:
    return {"jobs": jobs.jobs_delete_expired(),
            "orphans": job_files.private_files_sweep_orphans(),
            "own_styles": own_styles.own_styles_sweep()}


@shared_task(
    name="stylize.tasks.preview_paint",
    acks_late=True,
    reject_on_worker_lost=True,
    # A grid is a second or two; a stuck one gives its worker back soon.
    soft_time_limit=60,
    time_limit=90,
)
def preview_paint(preview_id: str) -> int:
    return previews.preview_paint(preview_id=preview_id)


@shared_task(name="stylize.tasks.previews_warm", soft_time_limit=240, time_limit=300)
def previews_warm() -> int:
    return previews.previews_warm()


@shared_task(name="stylize.tasks.previews_delete_expired")
def previews_delete_expired() -> dict:
    return previews.previews_delete_expired()


@shared_task(
    name="stylize.tasks.style_train",
    # Acked on receipt: a multi-hour run must not be redelivered to a second worker
    # when it outlives the broker's visibility timeout.
    acks_late=False,
    soft_time_limit=settings.TRAINING_TIME_LIMIT,
    time_limit=settings.TRAINING_TIME_LIMIT + 60,
)
def style_train(style_id: int, overrides: dict) -> int:
    """Train a style; ``overrides`` are ``ml.config.TrainConfig`` fields (JSON)."""
    style = Style.objects.get(pk=style_id)
    style = training.style_train(style=style, overrides=overrides)
    return style.live_version


@shared_task(
    name="stylize.tasks.own_style_learn",
    # Acked on receipt, as staff training: a run is minutes; a lost one is failed or
    # sent again by the hourly sweep (own_styles.own_styles_sweep).
    acks_late=False,
    soft_time_limit=max(60, settings.OWN_STYLE_TIME_LIMIT - 60),
    time_limit=settings.OWN_STYLE_TIME_LIMIT,
)
def own_style_learn(style_id: int) -> str | None:
    """Learn a user's own style (``services.own_styles``); its state, or None when it was
    not queued."""
    style = own_styles.own_style_learn(style_id=style_id)
    return None if style is None else own_styles.own_style_state(style)
