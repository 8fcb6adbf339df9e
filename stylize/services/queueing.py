"""The Celery messages the services send, each once its transaction commits.

The services name the task they send (``stylize.tasks.<service>``) instead of
importing ``stylize.tasks``, which imports the services: the task is looked up in the
Celery app's registry, and sent with ``DjangoTask.apply_async_on_commit`` /
``delay_on_commit`` (``prisma_site.celery.Task``: a broker out of reach is logged, the
row stays committed and the sweep ``jobs_requeue_stuck`` sends it later).
"""

from django.conf import settings

from prisma_site.celery import app

JOB_RUN = "stylize.tasks.job_run"
JOB_EMAIL_SEND = "stylize.tasks.job_email_send"
JOB_WEBHOOK_DELIVER = "stylize.tasks.job_webhook_deliver"
STYLE_TRAIN = "stylize.tasks.style_train"
PREVIEW_PAINT = "stylize.tasks.preview_paint"
PREVIEWS_WARM = "stylize.tasks.previews_warm"
OWN_STYLE_LEARN = "stylize.tasks.own_style_learn"


def _task(name: str):
    return app.tasks[name]  # registered by StylizeConfig.ready()


def job_queue(cost_class: str | None) -> str:
    """The queue of a job's cost class (``JOB_QUEUES``; unknown: the default queue)."""
    return settings.JOB_QUEUES.get(cost_class, settings.CELERY_TASK_DEFAULT_QUEUE)


def job_run_send(*, job_id, cost_class: str | None) -> None:
    """Once committed, the job goes on its cost class's queue."""
    _task(JOB_RUN).apply_async_on_commit((str(job_id),), countdown=0,
                                         queue=job_queue(cost_class))


def job_email_send(*, job_id) -> None:
    """Once committed, the email telling the owner how the job ended goes out."""
    _task(JOB_EMAIL_SEND).delay_on_commit(str(job_id))


def job_webhook_send(*, job_id) -> None:
    """Once committed, the finished job's webhook goes out (``services.webhooks``)."""
    _task(JOB_WEBHOOK_DELIVER).delay_on_commit(str(job_id))


def style_train_send(*, style_id: int, overrides: dict) -> None:
    """Once committed, the style's retrain goes on the training queue."""
    _task(STYLE_TRAIN).delay_on_commit(style_id, overrides)


def preview_paint_send(*, preview_id) -> None:
    """Once committed, the preview's queued paintings go on the previews queue
    (``PREVIEW_QUEUE``, a worker of its own: never behind a job)."""
    _task(PREVIEW_PAINT).apply_async_on_commit((str(preview_id),),
                                               queue=settings.PREVIEW_QUEUE)


def previews_warm_send() -> None:
    """The previews worker loads every offered style's model before the first grid."""
    _task(PREVIEWS_WARM).apply_async_on_commit((), queue=settings.PREVIEW_QUEUE)


def own_style_learn_send(*, style_id: int) -> None:
    """Once committed, a user's own style is learnt on the own-styles queue
    (``OWN_STYLE_QUEUE``, a worker of its own: photo jobs and staff training never wait
    for it)."""
    _task(OWN_STYLE_LEARN).apply_async_on_commit((style_id,), queue=settings.OWN_STYLE_QUEUE)
