"""Telegram's pull mode as tasks: beat starts a getUpdates chain per channel, each round
queues the next while the chain holds its lease. Thin wrappers over the services."""

from __future__ import annotations

from celery import Task, shared_task

from channels_app.common.provider_http import ProviderError
from channels_app.common.retry import TRANSIENT_DATABASE_ERRORS, backoff
from channels_app.webhooks.providers.telegram import services

POLL_MAX_RETRIES = 8


@shared_task(name="channels_app.telegram_poll_due", acks_late=True, ignore_result=True)
def telegram_poll_due() -> None:
    """Beat's entry point: start a poll chain for every pull-mode channel without one."""
    for channel_id, lease in services.telegram_polls_start():
        telegram_poll.delay(channel_id, lease)


@shared_task(
    bind=True,
    name="channels_app.telegram_poll",
    acks_late=True,
    ignore_result=True,
    max_retries=POLL_MAX_RETRIES,
)
def telegram_poll(self: Task, channel_id: int, lease: str) -> None:
    """One getUpdates round, then the next: a chain that lives while it holds the lease."""
    try:
        result = services.telegram_poll(channel_id=int(channel_id), lease=str(lease))
    except ProviderError as exc:
        if not exc.transient:
            return  # recorded on the channel; the lease is released
        raise self.retry(exc=exc, countdown=backoff(self.request.retries, at_least=exc.retry_after)) from None
    except TRANSIENT_DATABASE_ERRORS as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from None
    if result.go_on:
        telegram_poll.delay(channel_id, lease)
