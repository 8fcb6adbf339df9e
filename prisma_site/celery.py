import os

from celery import Celery
from celery.contrib.django.task import DjangoTask
from celery.signals import worker_init, worker_ready
from django.db import transaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prisma_site.settings")


class Task(DjangoTask):
    """Celery's Django task, whose ``*_on_commit`` sends never break the committed work.

    A send that fails after the commit (the broker out of reach while Redis restarts)
    is logged by Django (``on_commit(robust=True)``) instead of raised into the request
    or task that committed: the row is saved, and the stuck-job sweep sends it later.
    """

    def delay_on_commit(self, *args, **kwargs) -> None:
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(self, *args, **kwargs) -> None:
        def send():
            self.apply_async(*args, **kwargs)

        send.__qualname__ = f"{self.name}.apply_async"  # what Django's log line names
        transaction.on_commit(send, robust=True)


app = Celery("prisma_site", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _preload_the_model_backend(**_):
    """A worker imports its model backend as it starts (TensorFlow for the local one),
    so its first job does not wait for it; the web process never imports it."""
    from stylize.backends import backend_class

    backend_class().preload()


@worker_ready.connect
def _warm_the_previews(sender=None, **_):
    """A worker that consumes only the previews queue (``PREVIEW_QUEUE``: `make run`'s
    and docker-compose's ``worker-previews``) has its process load every offered style's
    model as it starts (``stylize.tasks.previews_warm``), so the first grid of previews
    waits for no model; a worker of other queues too never does."""
    from django.conf import settings

    from stylize.services import queueing

    consumed = set(getattr(getattr(sender, "app", app).amqp.queues, "consume_from", None) or ())
    if consumed == {settings.PREVIEW_QUEUE}:
        queueing.previews_warm_send()
