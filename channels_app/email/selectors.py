"""Reads for the email channel: which channels are due, which mail is stored, whom to answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import DurationField, ExpressionWrapper, F, Q

from channels_app.email.models import EmailChannel, InboundEmail
from channels_app.email.parse import PSEUDO_ID_PREFIX
from inbox.models import ChannelKind, ContactIdentity, Inbox, Message

MAX_REFERENCES_OUT = 20


def email_channel_enabled(channel_id: int) -> EmailChannel | None:
    """The channel, if it still exists, is enabled and still feeds an email inbox."""
    return (
        EmailChannel.objects.select_related("inbox")
        .filter(pk=channel_id, enabled=True, inbox__channel_kind=ChannelKind.EMAIL)
        .first()
    )


def email_channel_for_inbox(inbox_id: int) -> EmailChannel | None:
    """The channel that answers an inbox's replies, enabled or not (the caller says which)."""
    return EmailChannel.objects.filter(inbox_id=inbox_id).first()


def email_channels_due(now: datetime) -> list[EmailChannel]:
    """Enabled channels whose interval has passed since their last poll was queued."""
    interval = ExpressionWrapper(
        F("poll_interval_seconds") * timedelta(seconds=1), output_field=DurationField()
    )
    next_due = F("poll_enqueued_at") + interval
    return list(
        EmailChannel.objects.filter(enabled=True, inbox__channel_kind=ChannelKind.EMAIL)
        .alias(next_due=next_due)
        .filter(Q(poll_enqueued_at__isnull=True) | Q(next_due__lte=now))
        .only("pk", "poll_enqueued_at")
    )


def inbound_email_known_keys(channel: EmailChannel, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    return set(
        InboundEmail.objects.filter(channel=channel, dedup_key__in=keys).values_list("dedup_key", flat=True)
    )


def inbound_email_stored_uids(channel: EmailChannel, uidvalidity: int, uids: list[int]) -> set[int]:
    """Which of these UIDs (under this UIDVALIDITY) have a stored row already."""
    stored = InboundEmail.objects.filter(channel=channel, uidvalidity=uidvalidity, uid__in=uids)
    return {uid for uid in stored.values_list("uid", flat=True) if uid is not None}


def inbound_emails_unmarked(channel: EmailChannel, uidvalidity: int, limit: int) -> list[tuple[int, int]]:
    """(row id, UID) of stored messages the mailbox has not been told about yet."""
    rows = (
        InboundEmail.objects.filter(
            channel=channel, uidvalidity=uidvalidity, marked_on_server=False, uid__isnull=False
        )
        .exclude(status=InboundEmail.Status.PENDING)
        .values_list("pk", "uid")[:limit]
    )
    return [(pk, uid) for pk, uid in rows if uid is not None]


def email_message_ids_taken(*, inbox: Inbox, message_ids: list[str]) -> set[str]:
    """Which of these Message-IDs a stored message of the inbox holds already."""
    if not message_ids:
        return set()
    taken = Message.objects.filter(inbox=inbox, provider_message_id__in=message_ids)
    return {message_id for message_id in taken.values_list("provider_message_id", flat=True) if message_id}


@dataclass(frozen=True)
class ReplyContext:
    recipient: str | None
    in_reply_to: str | None
    references: list[str]


def email_reply_context(message: Message) -> ReplyContext:
    """Whom an outbound message answers and the ids that thread it, from the messages before it."""
    earlier = list(
        Message.objects.filter(
            conversation_id=message.conversation_id,
            provider_message_id__isnull=False,
            created_at__lte=message.created_at,
        )
        .exclude(pk=message.pk)
        .exclude(provider_message_id__startswith=PSEUDO_ID_PREFIX)
        .order_by("created_at", "id")
        .values_list("provider_message_id", "direction")
    )
    ids = [provider_id for provider_id, _ in earlier if provider_id]
    inbound = [provider_id for provider_id, direction in earlier if direction == Message.Direction.INBOUND]
    references = ids if len(ids) <= MAX_REFERENCES_OUT else [ids[0], *ids[-(MAX_REFERENCES_OUT - 1) :]]
    return ReplyContext(
        recipient=_reply_recipient(message),
        in_reply_to=inbound[-1] if inbound else None,
        references=references,
    )


def _reply_recipient(message: Message) -> str | None:
    """The conversation's contact, at the email address they last wrote from.

    Only the contact's own addresses qualify: whoever else got a mail into the thread
    (before senders were checked, or by an agent's merge) is never answered.
    """
    addresses = list(
        ContactIdentity.objects.filter(
            contact__conversations__pk=message.conversation_id, channel_kind=ChannelKind.EMAIL
        )
        .order_by("created_at", "id")
        .values_list("handle", flat=True)
    )
    if not addresses:
        return None
    last_used = (
        InboundEmail.objects.filter(
            message__conversation_id=message.conversation_id,
            status=InboundEmail.Status.IMPORTED,
            from_address__in=addresses,
        )
        .order_by("-message__created_at", "-message_id")
        .values_list("from_address", flat=True)
        .first()
    )
    # A conversation that did not start by email still reaches the contact's first address.
    return last_used or addresses[0]
