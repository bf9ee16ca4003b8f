"""Email channel tasks: thin wrappers over services, taking ids only (JSON, never objects).

Each is idempotent and acknowledged late, so a worker that dies mid-task leaves the
message on the broker for another worker, and the second run finds the work done.
Replies leave through the common outbound pipeline (channels_app.common.tasks).
"""

from __future__ import annotations

from celery import Task, shared_task

from channels_app.common.retry import TRANSIENT_DATABASE_ERRORS, backoff
from channels_app.email import services
from channels_app.email.imap import MailboxError


@shared_task(name="channels_app.email_poll_due", acks_late=True, ignore_result=True)
def email_poll_due() -> None:
    """Beat's entry point: queue a poll for every enabled channel whose interval has passed."""
    for channel_id in services.email_polls_claim_due():
        email_poll.delay(channel_id)


@shared_task(bind=True, name="channels_app.email_poll", acks_late=True, ignore_result=True, max_retries=8)
def email_poll(self: Task, channel_id: int) -> None:
    try:
        result = services.email_channel_poll(channel_id=int(channel_id))
    except MailboxError as exc:
        if not exc.transient:
            # Recorded on the channel for the supervisor; the next scheduled poll tries again.
            return
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from None
    except TRANSIENT_DATABASE_ERRORS as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from None
    if result.more:
        email_poll.delay(channel_id)
