"""The exports' tasks: thin wrappers over the services, taking ids only."""

from __future__ import annotations

from celery import shared_task

from inbox.exports import services


@shared_task(name="inbox.export_run", acks_late=True, ignore_result=True)
def export_run(export_id: int) -> None:
    services.export_run(int(export_id))


@shared_task(name="inbox.exports_purge", ignore_result=True)
def exports_purge() -> None:
    services.exports_purge()
