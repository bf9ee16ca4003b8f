"""Reads for the Meta channels: whether WhatsApp's customer-service window is still open."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from inbox.models import ChannelKind, Conversation, Message

# WhatsApp lets a business answer freely for 24 hours after the customer's last message;
# after that only a pre-approved template may be sent.
WHATSAPP_WINDOW = timedelta(hours=24)


def whatsapp_window_closes_at(conversation: Conversation) -> datetime | None:
    """When WhatsApp stops accepting free-form replies in this conversation; None when the
    customer never wrote (only a template can open it)."""
    last_inbound = (
        Message.objects.filter(conversation_id=conversation.pk, direction=Message.Direction.INBOUND)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return last_inbound + WHATSAPP_WINDOW if last_inbound is not None else None


def whatsapp_window_open(conversation: Conversation, now: datetime | None = None) -> bool:
    """True when a free-form reply may go out now. Other channels have no such window."""
    if conversation.inbox.channel_kind != ChannelKind.WHATSAPP:
        return True
    closes_at = whatsapp_window_closes_at(conversation)
    return closes_at is not None and (now or timezone.now()) < closes_at
