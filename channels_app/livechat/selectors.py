"""Reads for live chat: the channel a socket may use, a visitor's history, who can answer."""

from __future__ import annotations

import hashlib

from django.db.models import Q

from channels_app.livechat.models import LiveChatChannel
from inbox import policy, presence
from inbox.event_types import WidgetMessage
from inbox.models import Attachment, ChannelKind, Contact, ContactIdentity, Conversation, Inbox, Message

HISTORY_LENGTH = 50


def visitor_group(handle: str) -> str:
    """The channel-layer group of one visitor's sockets (all their tabs)."""
    return "livechat.visitor." + hashlib.sha256(handle.encode()).hexdigest()[:40]


def channel_group(channel_id: int) -> str:
    """Every visitor socket of one channel: told when its configuration changes."""
    return f"livechat.channel.{channel_id}"


def channel_for_visitor(*, key: str, origin: str) -> LiveChatChannel | None:
    """The enabled channel with this key, if the page's origin is on its allowlist.

    A missing channel, a disabled one and a foreign origin get the same answer, so the
    answer tells a prober nothing about which keys exist.
    """
    if not key or len(key) > 40:
        return None
    channel = (
        LiveChatChannel.objects.select_related("inbox")
        .filter(key=key, enabled=True, inbox__channel_kind=ChannelKind.LIVECHAT)
        .first()
    )
    if channel is None or not channel.origin_allowed(origin):
        return None
    return channel


def channel_still_allows(*, channel_id: int, origin: str) -> bool:
    """Whether the channel is still enabled and still lists the page's origin (one query)."""
    channel = LiveChatChannel.objects.filter(pk=channel_id, enabled=True).only("allowed_origins").first()
    return channel is not None and channel.origin_allowed(origin)


def visitor_contact(handle: str) -> Contact | None:
    identity = (
        ContactIdentity.objects.select_related("contact")
        .filter(channel_kind=ChannelKind.LIVECHAT, handle=handle)
        .first()
    )
    if identity is None:
        return None
    contact = identity.contact
    while contact.merged_into_id is not None:
        contact = Contact.objects.get(pk=contact.merged_into_id)
    return contact


def visitor_conversation(*, inbox_id: int, handle: str) -> Conversation | None:
    """The visitor's latest conversation in the channel's inbox, if they ever wrote."""
    contact = visitor_contact(handle)
    if contact is None:
        return None
    return (
        Conversation.objects.filter(inbox_id=inbox_id, contact=contact)
        .order_by("-last_activity_at", "-id")
        .first()
    )


def message_payload(message: Message, attachments: list[Attachment] | None = None) -> WidgetMessage:
    """A message as the widget shows it: no notes, no internal fields, the agent by first name.

    `attachments` when the caller knows them (a message just stored), else they are read."""
    author = ""
    if message.direction == Message.Direction.OUTBOUND:
        author = (message.sender_user.first_name if message.sender_user else "") or "Support"
    return {
        "id": message.pk,
        "direction": message.direction,
        "text": message.text,
        "author": author,
        "created_at": message.created_at.isoformat(),
        "status": message.delivery_status,
        "attachments": [
            {"name": a.filename, "size": a.size, "type": a.content_type}
            for a in (message.attachments.all() if attachments is None else attachments)
        ],
    }


def visitor_history(conversation: Conversation | None) -> list[WidgetMessage]:
    """The conversation's latest messages, oldest first (two queries)."""
    if conversation is None:
        return []
    messages = (
        Message.objects.filter(conversation=conversation)
        .select_related("sender_user")
        .prefetch_related("attachments")
        .order_by("-created_at", "-id")[:HISTORY_LENGTH]
    )
    return [message_payload(message) for message in reversed(messages)]


def visitor_history_now(*, inbox_id: int, handle: str) -> list[WidgetMessage]:
    """What the widget catches up from after a lost event: its latest history, as stored."""
    return visitor_history(visitor_conversation(inbox_id=inbox_id, handle=handle))


def channel_for_inbox(inbox_id: int) -> LiveChatChannel | None:
    """The widget feeding an inbox, enabled or not (the caller says which)."""
    return LiveChatChannel.objects.filter(inbox_id=inbox_id).first()


def visitor_groups_of(conversation: Conversation) -> list[str]:
    """The socket groups of the visitor(s) behind a live chat conversation."""
    channel_id = (
        LiveChatChannel.objects.filter(inbox_id=conversation.inbox_id).values_list("pk", flat=True).first()
    )
    if channel_id is None:
        return []
    contact_id = conversation.contact_id
    handles = ContactIdentity.objects.filter(
        Q(contact_id=contact_id) | Q(contact__merged_into_id=contact_id),
        channel_kind=ChannelKind.LIVECHAT,
        handle__startswith=f"{channel_id}:",
    ).values_list("handle", flat=True)
    return [visitor_group(handle) for handle in handles]


def agents_available(inbox: Inbox) -> bool:
    """Whether someone who may answer in the inbox is online now."""
    agent_ids = policy.users_with_inbox_grant(inbox, policy.Action.REPLY).values_list("id", flat=True)
    return any(state is presence.Presence.ONLINE for state in presence.presences(agent_ids).values())
