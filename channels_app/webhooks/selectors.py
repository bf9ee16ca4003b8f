"""Reads for the webhook channels: which channel a hook or an inbox means, which events are
due, and whom a reply goes to."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from django.db.models import Q
from django.db.models.expressions import RawSQL

from channels_app.webhooks.models import InboundEvent, SocialChannel
from inbox.models import ChannelKind, ContactIdentity, Conversation, Inbox

ChannelT = TypeVar("ChannelT", bound=SocialChannel)
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
    found = channel_enabled_with_fingerprint(model, channel_id)
    return found[0] if found is not None else None


def channel_fingerprint_sql(model: type[SocialChannel]) -> str:
    """SQL for a digest of everything a delivery's check reads of a channel: its shared row
    (enabled, verification mode, inbox), its provider's row (the secrets, as stored) and its
    inbox's kind. The same expression in the statement that stores a delivery proves the
    channel is still the one the delivery was checked against (see services.delivery_accept)."""
    inbox = Inbox._meta.db_table
    return (
        f'md5(ROW("{SocialChannel._meta.db_table}".*, "{model._meta.db_table}".*, '
        f'"{inbox}"."channel_kind")::text)'
    )


def channel_enabled_with_fingerprint(model: type[ChannelT], channel_id: int) -> tuple[ChannelT, str] | None:
    """`channel_enabled`, with the channel's fingerprint read in the same statement (one
    snapshot: a change between the two cannot pass for the state that was checked)."""
    if not 0 < channel_id <= MAX_ID:
        return None
    channel = (
        model.objects.select_related("inbox")
        .annotate(fingerprint=RawSQL(channel_fingerprint_sql(model), ()))  # noqa: S611  # table names only
        .filter(pk=channel_id, enabled=True)
        .order_by()
        .first()
    )
    if channel is None or channel.inbox.channel_kind not in channel.allowed_inbox_kinds():
        return None
    return channel, str(channel.fingerprint)


def channel_provider(channel_id: int) -> str | None:
    """The provider of a channel known by its id only (an event's channel)."""
    if not 0 < channel_id <= MAX_ID:
        return None
    return SocialChannel.objects.filter(pk=channel_id).values_list("provider", flat=True).first()


def channel_of_inbox(inbox_id: int) -> tuple[str, int] | None:
    """(provider, channel id) of the enabled channel that feeds an inbox."""
    return SocialChannel.objects.filter(inbox_id=inbox_id, enabled=True).values_list("provider", "pk").first()


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
