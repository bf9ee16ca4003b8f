"""One outbound pipeline: every channel's replies leave through `reply_deliver`.

An agent's reply is stored as `queued` (inbox.services) and handed here after the commit.
`reply_deliver` then, for email, live chat, every webhook provider and the API channel
alike:

1. locks the message and goes on only while it is still queued (a second run of the task
   waits on the lock, then finds it sent);
2. asks the policy decision point again whether the author may still reply: a grant
   revoked between queueing and sending stops the send;
3. lets the channel refuse it (missing or disabled channel, no recipient, WhatsApp's
   24-hour window) and checks the channel's text limit;
4. runs the outbound content checks (`OUTBOUND_CHECKS`);
5. sends, with an idempotency key stable across retries, and records the status.

A transient failure raises for the task to retry (channels_app.common.tasks): one retry,
backoff and give-up policy for every channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from django.db import transaction

from channels_app.common.retry import DeliveryError
from inbox import dlp, policy
from inbox.models import Message
from inbox.services import message_delivery_set

Delivered = Message.DeliveryStatus


@dataclass(frozen=True)
class ReadyReply:
    """A reply its channel is willing to send: to whom, within what length, and how."""

    # Whom it goes to, as the channel names them: an address, a handle, socket groups.
    recipient: str
    # Longer replies are refused with the limit as the reason, never cut.
    text_limit: int | None
    # Called with the idempotency key; returns the provider's id for the sent message.
    # Raises DeliveryError.
    send: Callable[[str], str]


class ReplyChannel(Protocol):
    """What a channel family gives the pipeline. Registered per inbox kind at startup."""

    # Sent at once after the commit (a group send to live chat sockets), not through the
    # task queue.
    @property
    def inline(self) -> bool: ...

    def reply_prepare(self, message: Message) -> ReadyReply | str:
        """The reply ready to go, or why this channel refuses it. Runs with the message
        row locked; `message` has its inbox, conversation and author loaded."""
        ...


OutboundCheck = Callable[[Message, ReadyReply], str | None]


def _dlp_check(message: Message, ready: ReadyReply) -> str | None:
    return dlp.outbound_send_screen(message)


# Outbound content checks run here, after the channel's own refusals and right before the
# send: each returns why the reply must not go out, or None. DLP looks at the text as it
# leaves (card numbers, IBANs, private contact handles, shadow-channel invitations), with
# the rules in force at this moment.
OUTBOUND_CHECKS: list[OutboundCheck] = [_dlp_check]

_channels: dict[str, ReplyChannel] = {}


def reply_channel_register(inbox_kind: str, channel: ReplyChannel) -> None:
    _channels[inbox_kind] = channel


def reply_channel_for(inbox_kind: str) -> ReplyChannel | None:
    return _channels.get(inbox_kind)


def idempotency_key(message: Message) -> str:
    """The same for every try of one message: a provider that honours it (or an integrator
    that dedups on it) never shows the customer a retried send twice."""
    return f"portcullis-message-{message.pk}"


def _refusal(message: Message, channel: ReplyChannel) -> ReadyReply | str:
    author = message.sender_user
    if author is None or not policy.can(
        policy.AccessContext.for_task(author), policy.Action.REPLY, message.conversation
    ):
        return "The author may no longer reply in this conversation."
    ready = channel.reply_prepare(message)
    if isinstance(ready, str):
        return ready
    if ready.text_limit is not None and len(message.text) > ready.text_limit:
        return f"The reply is longer than the {ready.text_limit} characters this channel accepts."
    for check in OUTBOUND_CHECKS:
        if (refused := check(message, ready)) is not None:
            return refused
    return ready


def reply_deliver(message_id: int) -> None:
    """Send a queued reply, once. Raises DeliveryError when worth retrying."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("inbox", "conversation", "conversation__inbox", "sender_user")
            .filter(pk=message_id, direction=Message.Direction.OUTBOUND)
            .first()
        )
        if message is None or message.delivery_status != Delivered.QUEUED:
            return
        channel = _channels.get(message.inbox.channel_kind)
        if channel is None:
            return  # no channel for this kind of inbox: the reply stays queued, as it shows
        ready = _refusal(message, channel)
        if isinstance(ready, str):
            message_delivery_set(message=message, status=Delivered.FAILED, detail=ready)
            return
        try:
            provider_id = ready.send(idempotency_key(message))
        except DeliveryError as exc:
            if exc.transient:
                raise
            message_delivery_set(message=message, status=Delivered.FAILED, detail=str(exc))
            return
        message_delivery_set(message=message, status=Delivered.SENT, provider_message_id=provider_id)


def reply_dispatch(message_id: int) -> None:
    """Hand a committed queued reply to the pipeline: at once for an inline channel, through
    the task queue otherwise."""
    from channels_app.common import tasks

    kind = Message.objects.filter(pk=message_id).values_list("inbox__channel_kind", flat=True).first()
    channel = _channels.get(kind) if kind is not None else None
    if channel is None:
        return
    if channel.inline:
        reply_deliver(message_id)
    else:
        tasks.reply_send.delay(message_id)


def reply_retry_note(*, message_id: int, attempt: int, reason: str) -> None:
    """The conversation shows that the channel is being retried, and why."""
    with transaction.atomic():
        message = Message.objects.filter(pk=message_id, delivery_status=Delivered.QUEUED).first()
        if message is not None:
            message_delivery_set(
                message=message, status=Delivered.QUEUED, detail=f"Retrying (attempt {attempt}): {reason}"
            )


def reply_give_up(*, message_id: int, reason: str) -> None:
    """Retries are exhausted: the reply is failed, with the last reason, if still queued."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(pk=message_id, delivery_status=Delivered.QUEUED)
            .first()
        )
        if message is not None:
            message_delivery_set(
                message=message, status=Delivered.FAILED, detail=f"Gave up after retries: {reason}"
            )
