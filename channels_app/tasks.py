"""Email channel tasks: thin wrappers over services, taking ids only (JSON, never objects).

Each is idempotent and acknowledged late, so a worker that dies mid-task leaves the
message on the broker for another worker, and the second run finds the work done.
"""

from __future__ import annotations

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import InterfaceError, OperationalError

from channels_app import services
from channels_app.email_imap import MailboxError
from channels_app.email_smtp import SendError

# A database restart or a mail server hiccup is worth waiting out; a bad password is not.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)


def _backoff(retries: int) -> int:
    return get_exponential_backoff_interval(factor=5, retries=retries, maximum=600, full_jitter=True)


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
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None
    except TRANSIENT_DATABASE_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None
    if result.more:
        email_poll.delay(channel_id)


@shared_task(bind=True, name="channels_app.email_send", acks_late=True, ignore_result=True, max_retries=6)
def email_send(self: Task, message_id: int) -> None:
    try:
        services.email_reply_send(message_id=int(message_id))
    except (SendError, *TRANSIENT_DATABASE_ERRORS) as exc:
        if self.request.retries >= (self.max_retries or 0):
            services.email_reply_give_up(message_id=int(message_id), reason=str(exc))
            return
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None


def email_reply_enqueue(message_id: int) -> None:
    """The email channel's outbound sender: called after the reply's commit."""
    email_send.delay(message_id)
