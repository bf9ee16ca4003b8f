"""Routes a queued outbound message to the sender of its inbox's channel.

Channels register a sender for their kind; an inbox whose channel has none keeps its
replies queued (shown as such in the conversation) until one is configured.
"""

from __future__ import annotations

from collections.abc import Callable

from inbox.models import Message

Sender = Callable[[int], None]
_senders: dict[str, Sender] = {}


def register_sender(channel_kind: str, sender: Sender) -> None:
    _senders[channel_kind] = sender


def dispatch(message_id: int) -> None:
    message = Message.objects.select_related("inbox").filter(pk=message_id).first()
    if message is None or message.direction != Message.Direction.OUTBOUND:
        return
    sender = _senders.get(message.inbox.channel_kind)
    if sender is not None:
        sender(message_id)
