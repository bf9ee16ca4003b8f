"""Social and phone channel tasks: thin wrappers over social_services, taking ids only
(JSON, never objects). Each is idempotent and acknowledged late, so a worker that dies
mid-task leaves the message on the broker, and the second run finds the work done.
Each re-checks its channel (enabled, still feeding its inbox) through the services."""

from __future__ import annotations

import random
import time

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from channels_app import social_services
from channels_app.provider_http import ProviderError

# A database restart or a provider hiccup is worth waiting out; a refused token is not.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)
SEND_MAX_RETRIES = 6
# A drain hands the worker back after this long (and queues its own continuation).
DRAIN_SECONDS = 20.0
POLL_MAX_RETRIES = 8


def _backoff(retries: int, at_least: float | None = None) -> float:
    ceiling = min(settings.SOCIAL_RETRY_BACKOFF_SECONDS * 2**retries, 600.0)
    # Full jitter: many messages failing at once do not come back at once.
    return max(random.uniform(0, ceiling), at_least or 0.0)  # noqa: S311  # jitter, not a secret


@shared_task(
    bind=True, name="channels_app.social_events_drain", acks_late=True, ignore_result=True, max_retries=8
)
def social_events_drain(self: Task, channel_id: int) -> None:
    """Process a channel's due events, batch after batch, for a bounded time."""
    channel_id = int(channel_id)
    social_services.inbound_events_drain_started(channel_id=channel_id)
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while True:
            result = social_services.inbound_events_drain(channel_id=channel_id)
            if result.retry_at is not None:
                social_events_drain.apply_async((channel_id,), eta=result.retry_at)
            if not result.more:
                return
            if time.monotonic() > deadline:
                # Let other channels' drains have the worker; this one goes on after them.
                social_events_drain.delay(channel_id)
                return
    except TRANSIENT_DATABASE_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None


@shared_task(name="channels_app.social_events_sweep", acks_late=True, ignore_result=True)
def social_events_sweep() -> None:
    social_services.inbound_events_requeue_stalled()


@shared_task(
    bind=True,
    name="channels_app.social_send",
    acks_late=True,
    ignore_result=True,
    max_retries=SEND_MAX_RETRIES,
)
def social_send(self: Task, message_id: int) -> None:
    try:
        social_services.social_reply_send(message_id=int(message_id))
    except (ProviderError, *TRANSIENT_DATABASE_ERRORS) as exc:
        reason = str(exc) if isinstance(exc, ProviderError) else "the database was unavailable"
        if self.request.retries >= (self.max_retries or 0):
            social_services.social_reply_give_up(message_id=int(message_id), reason=reason)
            return
        social_services.social_reply_retry_note(
            message_id=int(message_id), attempt=self.request.retries + 1, reason=reason
        )
        wait = exc.retry_after if isinstance(exc, ProviderError) else None
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries, at_least=wait)) from None


def social_reply_enqueue(message_id: int) -> None:
    """The social channels' outbound sender: called after the reply's commit."""
    social_send.delay(message_id)


@shared_task(name="channels_app.telegram_poll_due", acks_late=True, ignore_result=True)
def telegram_poll_due() -> None:
    """Beat's entry point: start a poll chain for every pull-mode channel without one."""
    for channel_id, lease in social_services.telegram_polls_start():
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
        result = social_services.telegram_poll(channel_id=int(channel_id), lease=str(lease))
    except ProviderError as exc:
        if not exc.transient:
            return  # recorded on the channel; the lease is released
        raise self.retry(
            exc=exc, countdown=_backoff(self.request.retries, at_least=exc.retry_after)
        ) from None
    except TRANSIENT_DATABASE_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None
    if result.go_on:
        telegram_poll.delay(channel_id, lease)
