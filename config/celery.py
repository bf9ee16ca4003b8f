import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("portcullis")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_ready.connect
@signals.worker_process_init.connect
def _collector_tune(**kwargs: object) -> None:
    """The worker (solo pool) or each forked child has loaded its tasks: see config.process."""
    from config.process import collector_tune

    collector_tune(socket_server=False)
