"""Reads for the social and phone channels: which channel a hook or an inbox means, whom a
reply goes to, and whether WhatsApp's customer-service window is still open."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

from django.db.models import Q
from django.utils import timezone

from channels_app.models import (
    InboundEvent,
    MetaChannel,
    Provider,
    SocialChannel,
    TelegramChannel,
    TelegramMode,
    TwilioChannel,
)
from inbox.models import ChannelKind, ContactIdentity, Conversation, Message

CHANNEL_MODELS: dict[str, type[SocialChannel]] = {
    Provider.TELEGRAM: TelegramChannel,
    Provider.META: MetaChannel,
    Provider.TWILIO: TwilioChannel,
}
ChannelT = TypeVar("ChannelT", bound=SocialChannel)
# WhatsApp lets a business answer freely for 24 hours after the customer's last message;
# after that only a pre-approved template may be sent.
WHATSAPP_WINDOW = timedelta(hours=24)
# Ids come from URLs: past PostgreSQL's bigint they would be a database error, not a miss.
MAX_ID = 2**63 - 1
# Contacts on these channels are known by the handle kind on the left: a phone number is
# one contact whether it texts or calls.
HANDLE_KINDS = {ChannelKind.VOICE: ChannelKind.SMS}


def handle_kind(inbox_kind: str) -> str:
    return HANDLE_KINDS.get(ChannelKind(inbox_kind), inbox_kind)


def channel_enabled(model: type[ChannelT], channel_id: int) -> ChannelT | None:
    """The channel with its inbox, if it exists, is enabled and still feeds an inbox of its
    kind."""
    if not 0 < channel_id <= MAX_ID:
        return None
    channel = model.objects.select_related("inbox").filter(pk=channel_id, enabled=True).order_by().first()
    if channel is None or channel.inbox.channel_kind not in channel.allowed_inbox_kinds():
        return None
    return channel


def social_channel_enabled(provider: str, channel_id: int) -> SocialChannel | None:
    """As channel_enabled, for a provider named by a row (an event's channel)."""
    model = CHANNEL_MODELS.get(provider)
    return channel_enabled(model, channel_id) if model is not None else None


def social_channel_enabled_by_id(channel_id: int) -> SocialChannel | None:
    """As channel_enabled, for a channel known by its id only (an event's channel)."""
    provider = SocialChannel.objects.filter(pk=channel_id).values_list("provider", flat=True).first()
    return social_channel_enabled(provider, channel_id) if provider is not None else None


def social_channel_for_inbox(inbox_id: int) -> SocialChannel | None:
    """The enabled channel that feeds an inbox, as its provider's model."""
    provider = (
        SocialChannel.objects.filter(inbox_id=inbox_id, enabled=True).values_list("provider", "pk").first()
    )
    return social_channel_enabled(provider[0], provider[1]) if provider else None


def inbound_events_due(channel_id: int, *, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(id, attempts) of a channel's received events that are due, oldest first, so a
    conversation's messages are stored in the order they came."""
    return list(
        InboundEvent.objects.filter(channel_id=channel_id, status=InboundEvent.Status.RECEIVED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("pk")
        .values_list("pk", "attempts")[:limit]
    )


def channels_with_stalled_events(*, now: datetime, received_before: datetime) -> list[int]:
    """Channels with events that came before `received_before` and are due but untouched."""
    return list(
        InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED, received_at__lt=received_before)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .values_list("channel_id", flat=True)
        .distinct()
    )


def telegram_channels_to_poll(now: datetime) -> list[int]:
    """Pull-mode channels without a live poll chain (never started, or its lease ran out)."""
    return list(
        TelegramChannel.objects.filter(
            enabled=True, mode=TelegramMode.PULL, inbox__channel_kind=ChannelKind.TELEGRAM
        )
        .filter(Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now))
        .values_list("pk", flat=True)
    )


def recipient_handle(conversation: Conversation) -> str | None:
    """The contact's handle on the conversation's channel; for a merged contact, also the
    handles of the contacts merged into it. The newest one wins."""
    return (
        ContactIdentity.objects.filter(
            Q(contact_id=conversation.contact_id) | Q(contact__merged_into_id=conversation.contact_id),
            channel_kind=handle_kind(conversation.inbox.channel_kind),
        )
        .order_by("-created_at", "-pk")
        .values_list("handle", flat=True)
        .first()
    )


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
