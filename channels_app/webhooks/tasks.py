"""Webhook channel tasks: thin wrappers over services, taking ids only (JSON, never
objects). Each is idempotent and acknowledged late, so a worker that dies mid-task leaves
the work on the broker, and the second run finds it done. Each re-checks its channel
(enabled, still feeding its inbox) through the services. Replies leave through the common
outbound pipeline (channels_app.common.tasks)."""

from __future__ import annotations

import time

from celery import Task, shared_task

from channels_app.common.retry import TRANSIENT_DATABASE_ERRORS, backoff
from channels_app.webhooks import services

# A drain hands the worker back after this long (and queues its own continuation).
DRAIN_SECONDS = 20.0


@shared_task(
    bind=True, name="channels_app.social_events_drain", acks_late=True, ignore_result=True, max_retries=8
)
def social_events_drain(self: Task, channel_id: int) -> None:
    """Process a channel's due events, batch after batch, for a bounded time; or, when the
    channel's last drain started too recently (services.DRAIN_INTERVAL_SECONDS), come back
    when it may, and take what came meanwhile in one batch."""
    channel_id = int(channel_id)
    wait = services.inbound_events_drain_started(channel_id=channel_id)
    if wait:
        social_events_drain.apply_async((channel_id,), countdown=wait)
        return
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while True:
            result = services.inbound_events_drain(channel_id=channel_id)
            if result.retry_at is not None:
                social_events_drain.apply_async((channel_id,), eta=result.retry_at)
            if not result.more:
                return
            if time.monotonic() > deadline:
                # Let other channels' drains have the worker; this one goes on after them.
                social_events_drain.delay(channel_id)
                return
    except TRANSIENT_DATABASE_ERRORS as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from None


@shared_task(name="channels_app.social_events_sweep", acks_late=True, ignore_result=True)
def social_events_sweep() -> None:
    services.inbound_events_requeue_stalled()
