"""Sealing, checkpointing, detectors and alert mail: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task

from audit.alerts import notifications
from audit.chain import services
from audit.detectors import baselines, runner, sockets


@shared_task(name="audit.chain_seal", ignore_result=True)
def chain_seal() -> int:
    return services.chain_seal()


@shared_task(name="audit.checkpoint_write", ignore_result=True)
def checkpoint_write() -> None:
    services.checkpoint_write()


@shared_task(name="audit.detectors_run", ignore_result=True)
def detectors_run() -> int:
    return runner.detectors_run()


@shared_task(name="audit.read_baselines_refresh", ignore_result=True)
def read_baselines_refresh() -> int:
    return baselines.read_baselines_refresh()


# A mail server that is down or refuses is tried again later (SMTPException is an OSError).
@shared_task(
    name="audit.alert_email",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_kwargs={"max_retries": 5},
)
def alert_email(alert_id: int, recipient_ids: list[int]) -> int:
    return notifications.alert_email_send(alert_id=alert_id, recipient_ids=recipient_ids)


@shared_task(name="audit.socket_inboxes_judge", ignore_result=True)
def socket_inboxes_judge(user_id: int, inbox_ids: list[int]) -> None:
    sockets.socket_inboxes_judge(user_id=user_id, inbox_ids=inbox_ids)
