"""Celery tasks: load by id, call a service, nothing else."""

from celery import shared_task
from django.conf import settings

from .models import Style
from .training import TrainingOptions, style_train


@shared_task(
    name="stylize.tasks.train_style",
    # Acked on receipt: a multi-hour run must not be redelivered to a second worker
    # when it outlives the broker's visibility timeout.
    acks_late=False,
    soft_time_limit=settings.TRAINING_TIME_LIMIT,
    time_limit=settings.TRAINING_TIME_LIMIT + 60,
)
def train_style(style_id: int, options: dict) -> int:
    style = Style.objects.get(pk=style_id)
    style = style_train(style=style, options=TrainingOptions.from_dict(options))
    return style.live_version
