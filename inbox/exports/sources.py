"""What an export holds, per kind: its columns and its rows, read in keyset-paged chunks
(flat memory at any size) from what the policy lets the exporting user see in the inbox."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any, Protocol

from django.db.models import QuerySet

from inbox import policy
from inbox.exports.formats import Row
from inbox.exports.models import ExportJob
from inbox.models import Contact, ContactIdentity, Conversation, Inbox, Message
from inbox.policy import AccessContext

CHUNK = 2_000


class Source(Protocol):
    columns: tuple[str, ...]

    def selection(self, ctx: AccessContext, inbox: Inbox) -> QuerySet[Any]:
        """What would be exported: counted for the quota, then read in chunks."""
        ...

    def chunks(self, ctx: AccessContext, inbox: Inbox) -> Iterator[list[Row]]: ...


def _conversations(ctx: AccessContext, inbox: Inbox) -> QuerySet[Conversation]:
    return policy.visible_conversations(ctx).filter(inbox_id=inbox.pk)


def _keyset(queryset: QuerySet[Any], fields: tuple[str, ...]) -> Iterator[list[Row]]:
    """Chunks in primary-key order, each one query that starts after the last key seen: no
    server-side cursor to hold open, and no OFFSET growing with the export."""
    last = 0
    while True:
        rows = list(queryset.filter(pk__gt=last).order_by("pk").values_list(*fields)[:CHUNK])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


class ConversationSource:
    columns: tuple[str, ...] = (
        "id",
        "subject",
        "status",
        "priority",
        "contact_id",
        "contact",
        "assignee",
        "created_at",
        "last_activity_at",
    )
    fields = (
        "id",
        "subject",
        "status",
        "priority",
        "contact_id",
        "contact__name",
        "assignee__username",
        "created_at",
        "last_activity_at",
    )

    def selection(self, ctx: AccessContext, inbox: Inbox) -> QuerySet[Conversation]:
        return _conversations(ctx, inbox)

    def chunks(self, ctx: AccessContext, inbox: Inbox) -> Iterator[list[Row]]:
        return _keyset(self.selection(ctx, inbox), self.fields)


class MessageSource:
    columns: tuple[str, ...] = (
        "id",
        "conversation_id",
        "direction",
        "sender",
        "text",
        "delivery_status",
        "created_at",
    )
    fields = ("id", "conversation_id", "direction", "sender_name", "text", "delivery_status", "created_at")

    def selection(self, ctx: AccessContext, inbox: Inbox) -> QuerySet[Message]:
        return Message.objects.filter(
            inbox_id=inbox.pk, conversation_id__in=_conversations(ctx, inbox).values("pk")
        )

    def chunks(self, ctx: AccessContext, inbox: Inbox) -> Iterator[list[Row]]:
        return _keyset(self.selection(ctx, inbox), self.fields)


class ContactSource:
    columns: tuple[str, ...] = ("id", "name", "handles", "created_at")

    def selection(self, ctx: AccessContext, inbox: Inbox) -> QuerySet[Contact]:
        return Contact.objects.filter(pk__in=_conversations(ctx, inbox).values("contact_id"))

    def chunks(self, ctx: AccessContext, inbox: Inbox) -> Iterator[list[Row]]:
        for contacts in _keyset(self.selection(ctx, inbox), ("id", "name", "created_at")):
            # One query per chunk for the chunk's handles, not one per contact.
            handles: dict[object, list[str]] = defaultdict(list)
            identities = ContactIdentity.objects.filter(contact_id__in=[row[0] for row in contacts])
            for contact_id, kind, handle in identities.order_by("pk").values_list(
                "contact_id", "channel_kind", "handle"
            ):
                handles[contact_id].append(f"{kind}:{handle}")
            yield [(row[0], row[1], " ".join(handles[row[0]]), row[2]) for row in contacts]


SOURCES: dict[str, Source] = {
    ExportJob.Kind.CONVERSATIONS: ConversationSource(),
    ExportJob.Kind.MESSAGES: MessageSource(),
    ExportJob.Kind.CONTACTS: ContactSource(),
}
