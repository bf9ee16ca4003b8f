"""The outbound pipeline's task: a thin wrapper over `outbound.reply_deliver`, taking the
message id only. Idempotent and acknowledged late, so a worker that dies mid-task leaves
the message on the broker, and the second run finds it sent."""

from __future__ import annotations

from celery import Task, shared_task

from channels_app.common import outbound
from channels_app.common.retry import TRANSIENT_DATABASE_ERRORS, DeliveryError, backoff

SEND_MAX_RETRIES = 6


@shared_task(
    bind=True,
    name="channels_app.reply_send",
    acks_late=True,
    ignore_result=True,
    max_retries=SEND_MAX_RETRIES,
)
def reply_send(self: Task, message_id: int) -> None:
    try:
        outbound.reply_deliver(int(message_id))
    except (DeliveryError, *TRANSIENT_DATABASE_ERRORS) as exc:
        reason = str(exc) if isinstance(exc, DeliveryError) else "the database was unavailable"
        if self.request.retries >= (self.max_retries or 0):
            outbound.reply_give_up(message_id=int(message_id), reason=reason)
            return
        outbound.reply_retry_note(message_id=int(message_id), attempt=self.request.retries + 1, reason=reason)
        wait = exc.retry_after if isinstance(exc, DeliveryError) else None
        raise self.retry(exc=exc, countdown=backoff(self.request.retries, at_least=wait)) from None
