"""Writes on conversations. Each takes an access context and asks the policy first."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from auditlog.models import LogEntry
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.http import Http404
from django.utils import timezone

from inbox import dlp, events, policy
from inbox.event_types import InboxEventName, InboxEventPayload
from inbox.models import (
    ChannelKind,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationRead,
    Inbox,
    Label,
    Message,
    Note,
)
from inbox.policy import AccessContext, Action

MAX_TEXT_LENGTH = 20_000

Status = Conversation.Status

# Which status may follow which. A resolved conversation is reopened, not parked.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.OPEN: frozenset({Status.PENDING, Status.SNOOZED, Status.RESOLVED}),
    Status.PENDING: frozenset({Status.OPEN, Status.SNOOZED, Status.RESOLVED}),
    Status.SNOOZED: frozenset({Status.OPEN, Status.PENDING, Status.RESOLVED}),
    Status.RESOLVED: frozenset({Status.OPEN}),
}


class InvalidRequest(ValueError):
    """The request is well-formed but not acceptable: answered 400 with this message."""


class OutboundRefused(InvalidRequest):
    """Outbound DLP held a reply or note back; the findings (masked) say why."""

    def __init__(self, verdict: dlp.Verdict) -> None:
        super().__init__(verdict.explanation())
        self.verdict = verdict

    def body(self) -> dict[str, object]:
        """The API's answer: the usual `detail`, with a code a client can act on."""
        return {
            "detail": str(self),
            "code": self.verdict.code,
            "findings": [finding.payload() for finding in self.verdict.findings],
        }


def _dlp_screen(
    ctx: AccessContext, conversation: Conversation, text: str, target: dlp.Target, justification: str
) -> dlp.Verdict:
    verdict = dlp.outbound_screen(
        ctx=ctx, conversation=conversation, text=text, target=target, justification=justification
    )
    if verdict.refused:
        raise OutboundRefused(verdict)
    return verdict


def _check_text(text: str, *, what: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidRequest(f"The {what} is empty.")
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidRequest(f"The {what} is longer than {MAX_TEXT_LENGTH} characters.")
    if "\x00" in text:
        raise InvalidRequest(f"The {what} contains a NUL character.")
    return text


def _touch(conversation: Conversation, when: datetime) -> None:
    conversation.last_activity_at = when
    Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=when)


def conversation_reply(
    *, ctx: AccessContext, conversation: Conversation, text: str, justification: str = ""
) -> Message:
    """Store an agent's reply as an outbound message, queued for its channel to send."""
    if not policy.can(ctx, Action.REPLY, conversation):
        raise policy.Denied("You may not reply in this conversation.")
    text = _check_text(text, what="reply")
    verdict = _dlp_screen(ctx, conversation, text, dlp.Target.REPLY, justification)
    with transaction.atomic():
        message = Message.objects.create(
            conversation=conversation,
            inbox_id=conversation.inbox_id,
            direction=Message.Direction.OUTBOUND,
            sender_user=ctx.user,
            sender_name=ctx.user.get_full_name() or ctx.user.get_username(),
            text=text,
            delivery_status=Message.DeliveryStatus.QUEUED,
        )
        dlp.findings_record(verdict, ctx=ctx, conversation=conversation, message=message)
        _touch(conversation, message.created_at)
        events.publish_after_commit(
            inbox_id=conversation.inbox_id,
            event="message.created",
            payload={"conversation_id": conversation.pk, "message_id": message.pk},
        )
        transaction.on_commit(lambda: outbound_dispatch(message.pk))
    return message


# How a committed queued reply reaches its channel: set by channels_app at startup, so
# inbox never imports the channels (they build on it). Unset, replies stay queued.
_outbound_dispatcher: Callable[[int], None] | None = None


def outbound_dispatcher_set(dispatcher: Callable[[int], None]) -> None:
    global _outbound_dispatcher
    _outbound_dispatcher = dispatcher


def outbound_dispatch(message_id: int) -> None:
    """Hand a queued outbound message to its channel, if channels are installed."""
    if _outbound_dispatcher is not None:
        _outbound_dispatcher(message_id)


def note_add(*, ctx: AccessContext, conversation: Conversation, text: str, justification: str = "") -> Note:
    if not policy.can(ctx, Action.REPLY, conversation):
        raise policy.Denied("You may not add notes to this conversation.")
    text = _check_text(text, what="note")
    verdict = _dlp_screen(ctx, conversation, text, dlp.Target.NOTE, justification)
    with transaction.atomic():
        note = Note.objects.create(conversation=conversation, author=ctx.user, text=text)
        dlp.findings_record(verdict, ctx=ctx, conversation=conversation, note=note)
        events.publish_after_commit(
            inbox_id=conversation.inbox_id,
            event="note.created",
            payload={"conversation_id": conversation.pk, "note_id": note.pk},
        )
    return note


def _conversation_change(
    ctx: AccessContext,
    conversation: Conversation,
    *,
    event: InboxEventName,
    payload: InboxEventPayload,
    **fields: object,
) -> None:
    """Write fields of a decided change: the row, the audit trail's before and after (a
    queryset update passes auditlog's signals by, so it is logged here, in the same
    transaction), and the live event once committed."""
    changes = {name: [str(getattr(conversation, name)), str(value)] for name, value in fields.items()}
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
        for name, value in fields.items():
            setattr(conversation, name, value)
        LogEntry.objects.log_create(
            conversation, action=LogEntry.Action.UPDATE, changes=changes, actor=ctx.user
        )
        events.publish_after_commit(inbox_id=conversation.inbox_id, event=event, payload=payload)


def conversation_assign(*, ctx: AccessContext, conversation: Conversation, assignee_id: int | None) -> None:
    """Assign to an agent who can see the conversation, or unassign (None)."""
    from accounts.models import User

    if not policy.can(ctx, Action.ASSIGN, conversation):
        raise policy.Denied("You may not assign conversations in this inbox.")
    if assignee_id is not None:
        assignee = User.objects.filter(pk=assignee_id, is_active=True, is_service_account=False).first()
        # Assigning to someone who cannot see it would hand them nothing; refuse it.
        if assignee is None or not policy.sees(assignee, conversation):
            raise InvalidRequest("That agent cannot see this conversation.")
    _conversation_change(
        ctx,
        conversation,
        event="conversation.assigned",
        payload={"conversation_id": conversation.pk, "assignee_id": assignee_id},
        assignee_id=assignee_id,
    )


def conversation_status_set(
    *, ctx: AccessContext, conversation: Conversation, status: str, snoozed_until: datetime | None = None
) -> None:
    if not policy.can(ctx, Action.REPLY, conversation):
        raise policy.Denied("You may not change this conversation's status.")
    if status not in Status.values:
        raise InvalidRequest(f"Unknown status {status!r}.")
    if status == conversation.status:
        return
    if status not in TRANSITIONS[conversation.status]:
        raise InvalidRequest(f"A {conversation.status} conversation cannot become {status}.")
    if status == Status.SNOOZED:
        if snoozed_until is None or snoozed_until <= timezone.now():
            raise InvalidRequest("Snoozing needs a time in the future.")
    else:
        snoozed_until = None
    _conversation_change(
        ctx,
        conversation,
        event="conversation.status",
        payload={"conversation_id": conversation.pk, "status": status},
        status=status,
        snoozed_until=snoozed_until,
    )


def conversation_priority_set(*, ctx: AccessContext, conversation: Conversation, priority: int) -> None:
    """Triage on the agent side: whoever may answer the conversation may rank it."""
    if not policy.can(ctx, Action.REPLY, conversation):
        raise policy.Denied("You may not change this conversation's priority.")
    if priority not in Conversation.Priority.values:
        raise InvalidRequest(f"Unknown priority {priority!r}.")
    if priority == conversation.priority:
        return
    _conversation_change(
        ctx,
        conversation,
        event="conversation.priority",
        payload={"conversation_id": conversation.pk, "priority": priority},
        priority=priority,
    )


def conversation_labels_set(*, ctx: AccessContext, conversation: Conversation, label_ids: list[int]) -> None:
    if not policy.can(ctx, Action.REPLY, conversation):
        raise policy.Denied("You may not label this conversation.")
    labels = list(Label.objects.filter(pk__in=label_ids))
    if len(labels) != len(set(label_ids)):
        raise InvalidRequest("Unknown label.")
    with transaction.atomic():
        conversation.labels.set(labels)
        events.publish_after_commit(
            inbox_id=conversation.inbox_id,
            event="conversation.labels",
            payload={"conversation_id": conversation.pk, "label_ids": sorted(label_ids)},
        )


@dataclass(frozen=True)
class BulkResult:
    done: list[Conversation]
    refused: list[tuple[int, str]]  # (conversation id, why)


def conversations_bulk(
    *, ctx: AccessContext, conversation_ids: Sequence[int], act: Callable[[Conversation], object]
) -> BulkResult:
    """One action on many conversations, each loaded and decided by the policy on its own
    (`act` calls the action's own service): what the caller may not touch is refused and
    reported, the rest goes through. Each is its own transaction, as if done one by one."""
    done: list[Conversation] = []
    refused: list[tuple[int, str]] = []
    for conversation_id in conversation_ids:
        try:
            conversation = policy.access_conversation(ctx, conversation_id)
            act(conversation)
        except Http404:
            refused.append((conversation_id, "Not found, or not yours to see."))
        except policy.StepUpRequired:
            raise  # asked once for the whole batch; the post then runs again
        except (policy.Denied, InvalidRequest) as error:
            refused.append((conversation_id, str(error)))
        else:
            done.append(conversation)
    return BulkResult(done=done, refused=refused)


def conversation_read_mark(*, ctx: AccessContext, conversation: Conversation, up_to_message_id: int) -> int:
    """An agent has seen the contact's messages up to this one; returns how many were new."""
    if not policy.can(ctx, Action.VIEW, conversation):
        raise policy.Denied("You may not see this conversation.")
    with transaction.atomic():
        count = Message.objects.filter(
            conversation=conversation,
            direction=Message.Direction.INBOUND,
            delivery_status=Message.DeliveryStatus.RECEIVED,
            pk__lte=up_to_message_id,
        ).update(delivery_status=Message.DeliveryStatus.READ)
        if count:
            events.publish_after_commit(
                inbox_id=conversation.inbox_id,
                event="conversation.read",
                payload={
                    "conversation_id": conversation.pk,
                    "message_id": up_to_message_id,
                    "by": ctx.user.pk,
                },
            )
    return count


def conversation_seen(*, ctx: AccessContext, conversation: Conversation) -> None:
    """The agent has the conversation open: it is read for them up to now (one upsert).
    The caller has loaded the conversation through the policy for viewing, which is what
    authorises marking it; asking again would cost the page a query for the same answer."""
    ConversationRead.objects.bulk_create(
        [ConversationRead(user_id=ctx.user.pk, conversation_id=conversation.pk, read_at=timezone.now())],
        update_conflicts=True,
        unique_fields=["user", "conversation"],
        update_fields=["read_at"],
    )


def attachment_file_store(*, content: bytes, extension: str) -> tuple[str, str]:
    """Save an attachment's bytes under a name made from their SHA-256; returns the storage
    path and the digest. Named by content, never by the sender: no path tricks, identical
    files are stored once, and a file written by a transaction that rolled back is simply
    reused by the retry."""
    digest = hashlib.sha256(content).hexdigest()
    path = f"attachments/{digest[:2]}/{digest}.{extension}"
    if not default_storage.exists(path):
        path = default_storage.save(path, ContentFile(content))
    return path, digest


def message_delivery_set(
    *, message: Message, status: str, detail: str = "", provider_message_id: str | None = None
) -> None:
    """Record how a channel's delivery of an outbound message went, and tell the pages.

    Called by the channels' send tasks, which have re-checked the message themselves.
    """
    fields: dict[str, object] = {"delivery_status": status, "delivery_detail": detail[:500]}
    if provider_message_id is not None:
        fields["provider_message_id"] = provider_message_id
    Message.objects.filter(pk=message.pk).update(**fields)
    message_delivery_announce(message=message, status=status)


def message_delivery_announce(*, message: Message, status: str) -> None:
    events.publish_after_commit(
        inbox_id=message.inbox_id,
        event="message.delivery",
        payload={"conversation_id": message.conversation_id, "message_id": message.pk, "status": status},
    )


# --- Inbound (called by channel ingestion, which has validated its own channel) ---------


@dataclass(frozen=True)
class KnownThread:
    """The conversation a sender's messages are joining, and its contact. A channel that
    stays connected to its sender (a chat socket) holds it between messages as a hint,
    never as the truth: it is used only while that conversation is still open, in the
    inbox, and the contact's that the handle names."""

    contact_id: int
    conversation_id: int


@dataclass(frozen=True)
class InboundMessage:
    inbox: Inbox
    channel_kind: ChannelKind
    handle: str
    sender_name: str
    text: str
    html: str = ""
    provider_message_id: str | None = None
    subject: str = ""
    # The conversation this continues, when the channel could tell (email threading).
    conversation_id: int | None = None
    # Chat-like channels continue the contact's open conversation. Email threads by its
    # headers: with no match found, a new email starts a new conversation.
    continue_open_conversation: bool = True
    # The contact of `handle`, when the channel has resolved it already (saves a query).
    contact: Contact | None = None
    # Where this sender's last message went, as the channel held it: the message joins
    # that conversation in one statement when it is still open (see `_thread_continue`).
    known_thread: KnownThread | None = None
    # The provider ids of the messages this one answers, the most telling first (email:
    # In-Reply-To, then References). It joins the conversation of the first one stored
    # (in the inbox, or earlier in the batch) whose contact is its sender's: an id is no
    # secret, so naming one threads nobody into someone else's conversation.
    references: tuple[str, ...] = ()
    # Threading by subject (email): with no reference found, the message joins its
    # contact's most recently active unresolved conversation, of the last few, whose
    # subject has the same key. None: subjects do not thread.
    subject_key: Callable[[str], str] | None = None


@dataclass(frozen=True)
class InboundResult:
    message: Message
    created: bool
    # Where a stored message went, for a channel to hold (None for a duplicate).
    thread: KnownThread | None = None
    # The conversation its references pointed to, not joined: its sender is not that
    # conversation's contact (it started one of its own).
    refused_conversation_id: int | None = None


def contact_for_handle(*, channel_kind: str, handle: str, name: str = "") -> Contact:
    """Find the contact with this handle on this channel, or create one (race-safe)."""
    return contacts_for_handles(channel_kind=channel_kind, names={handle: name})[handle]


def _contacts_known(channel_kind: str, handles: Iterable[str]) -> dict[str, Contact]:
    """The contact of each known handle, a merged one followed to the contact it went into."""
    contacts = {}
    for identity in ContactIdentity.objects.select_related("contact").filter(
        channel_kind=channel_kind, handle__in=list(handles)
    ):
        contact = identity.contact
        while contact.merged_into_id is not None:
            contact = Contact.objects.get(pk=contact.merged_into_id)
        contacts[identity.handle] = contact
    return contacts


def contacts_for_handles(*, channel_kind: str, names: Mapping[str, str]) -> dict[str, Contact]:
    """The contact of each handle on this channel (handle → the sender's name, for a new
    contact), created for those not known: one query when all are known, two more when
    some are new, however many (and two more again when another writer stored some of
    them first). Race-safe: a handle another writer stored first keeps that writer's
    contact, and the one made here for it is removed."""
    return _contacts_resolve(channel_kind, names)[0]


def _contacts_resolve(channel_kind: str, names: Mapping[str, str]) -> tuple[dict[str, Contact], set[int]]:
    """`contacts_for_handles`, and which of the contacts it created (inside the caller's
    transaction: no conversation can have them yet, so none need be looked up)."""
    contacts = _contacts_known(channel_kind, names)
    missing = [handle for handle in names if handle not in contacts]
    if not missing:
        return contacts, set()
    # No savepoint of its own inside a batch's: a failure here fails the batch.
    with transaction.atomic(savepoint=False):
        new = Contact.objects.bulk_create(Contact(name=names[handle][:200]) for handle in missing)
        created = dict(zip(missing, new, strict=True))
        inserted = _identities_insert(channel_kind, created)
        lost = [handle for handle in missing if handle not in inserted]
        if lost:
            Contact.objects.filter(pk__in=[created.pop(handle).pk for handle in lost]).delete()
            contacts.update(_contacts_known(channel_kind, lost))
    return {**contacts, **created}, {contact.pk for contact in created.values()}


def _identities_insert(channel_kind: str, contacts: Mapping[str, Contact]) -> set[str]:
    """Give each handle its contact, except where another writer stored the handle first
    (its insert waits for that writer's commit, then yields): the handles inserted here.

    Raw SQL because the ORM's `bulk_create(ignore_conflicts=True)` cannot say which rows it
    inserted: the handles would be read again. Said the way PostgreSQL and SQLite (`make
    run`) both take it; only names from the model are interpolated."""
    table = ContactIdentity._meta.db_table
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(contacts))
    sql = (
        f"INSERT INTO {table} (channel_kind, handle, contact_id, created_at) VALUES {rows}"  # noqa: S608  # names from the model
        " ON CONFLICT (channel_kind, handle) DO NOTHING RETURNING handle"
    )
    now = timezone.now()
    params = [value for handle, new in contacts.items() for value in (channel_kind, handle, new.pk, now)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {handle for (handle,) in cursor.fetchall()}


def _existing(inbound: InboundMessage) -> Message | None:
    if not inbound.provider_message_id:
        return None
    return Message.objects.filter(
        inbox=inbound.inbox, provider_message_id=inbound.provider_message_id
    ).first()


def inbound_message_record(inbound: InboundMessage) -> InboundResult:
    """Store a customer's message idempotently: the same provider id is stored once,
    even when two workers race to store it.

    A message that continues a known thread is stored by one statement; when the thread
    is no longer open (resolved, deleted, its contact merged) it takes the full path, the
    batch store's (`inbound_messages_record`). That statement is PostgreSQL's: on SQLite
    (`make run` without a database), every message takes the full path."""
    if inbound.known_thread is not None and connection.vendor == "postgresql":
        continued = _thread_continue(inbound, inbound.known_thread, _inbound_redaction(inbound))
        if continued is not None:
            return continued
    return inbound_messages_record([inbound])[0]


def inbound_messages_record(inbounds: Sequence[InboundMessage]) -> list[InboundResult]:
    """Store customers' messages of one inbox, in order and idempotently, in a number of
    statements that does not grow with their number: one duplicate check, the contacts
    looked up (and the new ones created) in bulk, one conversation lookup, one insert of
    new conversations, one update waking the others, one insert of the messages; no
    savepoint per message. Each goes where it would go alone: a sender's later message
    joins the conversation an earlier one of the batch opened.

    A provider id stored already, or twice in the batch, is stored once (its result is not
    `created`), even when another writer stores it at the same moment: the unique index
    refuses the insert, the batch's block rolls back whole, and the second pass finds it."""
    try:
        return _inbound_batch_store(inbounds)
    except IntegrityError:
        return _inbound_batch_store(inbounds)


def _inbound_batch_store(inbounds: Sequence[InboundMessage]) -> list[InboundResult]:
    if not inbounds:
        return []
    inbox = inbounds[0].inbox
    if any(inbound.inbox.pk != inbox.pk for inbound in inbounds):
        raise ValueError("A batch of inbound messages is of one inbox.")
    provider_ids = [inbound.provider_message_id for inbound in inbounds if inbound.provider_message_id]
    stored: dict[str, Message] = (
        {
            message.provider_message_id: message
            for message in Message.objects.filter(inbox=inbox, provider_message_id__in=provider_ids)
            if message.provider_message_id
        }
        if provider_ids
        else {}
    )
    # The first of a provider id in the batch is stored; a later one is its duplicate.
    fresh: list[int] = []
    seen: set[str] = set()
    for index, inbound in enumerate(inbounds):
        provider_id = inbound.provider_message_id
        if provider_id and (provider_id in stored or provider_id in seen):
            continue
        if provider_id:
            seen.add(provider_id)
        fresh.append(index)
    created = dict(zip(fresh, _inbound_new_store(inbox, [inbounds[i] for i in fresh]), strict=True))
    stored.update(
        {
            result.message.provider_message_id: result.message
            for result in created.values()
            if result.message.provider_message_id
        }
    )
    return [
        created.get(index) or InboundResult(stored[str(inbound.provider_message_id)], created=False)
        for index, inbound in enumerate(inbounds)
    ]


def _inbound_redaction(inbound: InboundMessage) -> dlp.Redaction:
    # Every channel's messages are stored through here, so redaction at ingest covers them all.
    return dlp.inbound_redact(
        inbox=inbound.inbox, text=inbound.text, html=inbound.html, subject=inbound.subject
    )


def _inbound_announce(inbound: InboundMessage, message: Message, *, created_conversation: bool) -> None:
    events.publish_after_commit(
        inbox_id=inbound.inbox.pk,
        event="conversation.created" if created_conversation else "message.created",
        payload={"conversation_id": message.conversation_id, "message_id": message.pk},
    )


def _inbound_contacts(inbounds: Sequence[InboundMessage]) -> tuple[list[Contact], set[int]]:
    """Each message's contact: the one the channel resolved, else its handle's (in bulk);
    and those of them created here, in the store's transaction."""
    wanted: dict[str, dict[str, str]] = {}
    for inbound in inbounds:
        if inbound.contact is None:
            wanted.setdefault(inbound.channel_kind, {}).setdefault(inbound.handle, inbound.sender_name)
    found: dict[tuple[str, str], Contact] = {}
    created: set[int] = set()
    for kind, names in wanted.items():
        contacts, created_here = _contacts_resolve(kind, names)
        found.update({(kind, handle): contact for handle, contact in contacts.items()})
        created |= created_here
    contacts_in_order = [
        inbound.contact if inbound.contact is not None else found[(inbound.channel_kind, inbound.handle)]
        for inbound in inbounds
    ]
    return contacts_in_order, created


# How many of a contact's unresolved conversations a message may continue by subject.
SUBJECT_THREAD_CANDIDATES = 20


@dataclass(frozen=True)
class _Thread:
    conversation: Conversation
    # The message opened it.
    opened: bool
    # Where its references pointed, not joined (see `InboundResult.refused_conversation_id`).
    refused: Conversation | None = None


def _referenced_conversations(inbox: Inbox, inbounds: Sequence[InboundMessage]) -> dict[str, Conversation]:
    """The conversation of each stored message the batch's references name, by provider id:
    one query for the batch."""
    references = {reference for inbound in inbounds for reference in inbound.references}
    if not references:
        return {}
    return {
        conversation.referenced_id: conversation
        for conversation in Conversation.objects.filter(
            inbox=inbox, messages__provider_message_id__in=references
        ).annotate(referenced_id=F("messages__provider_message_id"))
    }


def _recent_conversations(
    inbox: Inbox, inbounds: Sequence[InboundMessage], contacts: list[Contact], created: set[int]
) -> dict[int, list[Conversation]]:
    """The unresolved conversations a message may continue, by contact, most recently active
    first: one query for the batch, however many contacts; none for contacts created in the
    store's own transaction (a visitor's first message), who have none."""
    wanted = {
        contact.pk
        for inbound, contact in zip(inbounds, contacts, strict=True)
        if inbound.continue_open_conversation or inbound.subject_key is not None
    } - created
    if not wanted:
        return {}
    recent: dict[int, list[Conversation]] = {}
    for conversation in (
        Conversation.objects.filter(inbox=inbox, contact_id__in=wanted)
        .exclude(status=Status.RESOLVED)
        .annotate(
            recency=Window(RowNumber(), partition_by=F("contact_id"), order_by=F("last_activity_at").desc())
        )
        .filter(recency__lte=SUBJECT_THREAD_CANDIDATES)
        .order_by("contact_id", "recency")
    ):
        recent.setdefault(conversation.contact_id, []).append(conversation)
    return recent


def _thread_pick(
    inbound: InboundMessage,
    contact: Contact,
    named: Mapping[int, Conversation],
    referenced: Mapping[str, Conversation],
    recent: Mapping[int, list[Conversation]],
) -> tuple[Conversation | None, Conversation | None]:
    """The conversation the message joins (None: it opens one), and the one its references
    pointed to that it may not join."""
    if inbound.conversation_id is not None and inbound.conversation_id in named:
        return named[inbound.conversation_id], None
    pointed = [referenced[reference] for reference in inbound.references if reference in referenced]
    own = next((conversation for conversation in pointed if conversation.contact_id == contact.pk), None)
    if own is not None:
        return own, None
    if pointed:
        return None, pointed[0]
    candidates = recent.get(contact.pk, [])
    if inbound.continue_open_conversation:
        return (candidates[0] if candidates else None), None
    subject_key = inbound.subject_key
    key = subject_key(inbound.subject) if subject_key is not None else ""
    if subject_key is None or not key:
        return None, None
    return next((c for c in candidates if subject_key(c.subject) == key), None), None


def _inbound_threads(
    inbox: Inbox,
    inbounds: Sequence[InboundMessage],
    contacts: list[Contact],
    created: set[int],
    redactions: list[dlp.Redaction],
    now: datetime,
) -> list[_Thread]:
    """Each message's conversation: the one the channel named, else the one its references
    lead to, else the contact's most recently active unresolved one (chat) or the one of
    those on its subject (email), else a new one. The batch's earlier messages count as
    stored: a reply joins the conversation its parent opened a moment before, as it would
    one stored by an earlier batch. The new ones are created, the others woken: the
    customer's answer wakes a parked or resolved conversation."""
    named_ids = {inbound.conversation_id for inbound in inbounds if inbound.conversation_id is not None}
    named = {c.pk: c for c in Conversation.objects.filter(pk__in=named_ids, inbox=inbox)} if named_ids else {}
    referenced = _referenced_conversations(inbox, inbounds)
    recent = _recent_conversations(inbox, inbounds, contacts, created)
    threads: list[_Thread] = []
    new: list[Conversation] = []
    woken: set[int] = set()
    for inbound, contact, redaction in zip(inbounds, contacts, redactions, strict=True):
        conversation, refused = _thread_pick(inbound, contact, named, referenced, recent)
        opened = conversation is None
        if conversation is None:
            conversation = Conversation(
                inbox=inbox, contact=contact, subject=redaction.subject[:300], last_activity_at=now
            )
            new.append(conversation)
        elif conversation.pk is not None:
            woken.add(conversation.pk)
        threads.append(_Thread(conversation, opened=opened, refused=refused))
        # What the next messages of the batch see, as if this one were stored already.
        if inbound.provider_message_id:
            referenced[inbound.provider_message_id] = conversation
        touched = recent.setdefault(conversation.contact_id, [])
        if conversation in touched:
            touched.remove(conversation)
        touched.insert(0, conversation)
    if new:
        Conversation.objects.bulk_create(new)
    if woken:
        Conversation.objects.filter(pk__in=woken).update(
            last_activity_at=now, status=Status.OPEN, snoozed_until=None
        )
    return threads


def _inbound_new_store(inbox: Inbox, inbounds: Sequence[InboundMessage]) -> list[InboundResult]:
    """Store messages whose provider ids are not stored yet (see `inbound_messages_record`)."""
    if not inbounds:
        return []
    # Every channel's messages are stored through here, so redaction at ingest covers them all.
    redactions = dlp.inbound_redactions(
        inbox=inbox, parts=[(inbound.text, inbound.html, inbound.subject) for inbound in inbounds]
    )
    with transaction.atomic():
        contacts, created = _inbound_contacts(inbounds)
        threads = _inbound_threads(inbox, inbounds, contacts, created, redactions, timezone.now())
        messages = Message.objects.bulk_create(
            Message(
                conversation=thread.conversation,
                inbox=inbox,
                direction=Message.Direction.INBOUND,
                sender_name=inbound.sender_name[:200],
                text=redaction.text,
                html=redaction.html,
                provider_message_id=inbound.provider_message_id,
                delivery_status=Message.DeliveryStatus.RECEIVED,
            )
            for inbound, redaction, thread in zip(inbounds, redactions, threads, strict=True)
        )
        for inbound, redaction, message, thread in zip(inbounds, redactions, messages, threads, strict=True):
            dlp.inbound_findings_record(redaction, message=message)
            _inbound_announce(inbound, message, created_conversation=thread.opened)
    return [
        InboundResult(
            message,
            created=True,
            thread=KnownThread(thread.conversation.contact_id, thread.conversation.pk),
            refused_conversation_id=thread.refused.pk if thread.refused is not None else None,
        )
        for message, thread in zip(messages, threads, strict=True)
    ]


def _thread_continue(
    inbound: InboundMessage, thread: KnownThread, redaction: dlp.Redaction
) -> InboundResult | None:
    """The full path's store for a message joining a conversation it already found, with
    the same redaction, findings and live event; None when the thread is not open now."""
    now = timezone.now()
    # A message with findings is stored with them or not at all; one without is a single
    # statement, atomic by itself, and needs no transaction round trips.
    with transaction.atomic() if redaction.findings else contextlib.nullcontext():
        found, message_id = _message_insert_into_open_thread(inbound, thread, redaction, now=now)
        if not found:
            return None
        if message_id is None:  # a resend: its provider id is stored already
            existing = _existing(inbound)
            # Deleted in between (its conversation was): the full path stores it afresh.
            return InboundResult(existing, created=False) if existing is not None else None
        stored = {
            "id": message_id,
            "conversation_id": thread.conversation_id,
            "inbox_id": inbound.inbox.pk,
            "direction": Message.Direction.INBOUND,
            "sender_user_id": None,
            "sender_name": inbound.sender_name[:200],
            "text": redaction.text,
            "html": redaction.html,
            "provider_message_id": inbound.provider_message_id,
            "delivery_status": Message.DeliveryStatus.RECEIVED,
            "delivery_detail": "",
            "created_at": now,
        }
        message = Message.from_db(connection.alias, list(stored), list(stored.values()))
        dlp.inbound_findings_record(redaction, message=message)
        _inbound_announce(inbound, message, created_conversation=False)
    return InboundResult(message, created=True, thread=thread)


def _message_insert_into_open_thread(
    inbound: InboundMessage, thread: KnownThread, redaction: dlp.Redaction, *, now: datetime
) -> tuple[bool, int | None]:
    """Insert the message into the held conversation and wake it, in one statement:
    whether the conversation was still open (and the handle's contact's), and the new
    message's id (None when its provider id was stored already).

    Raw SQL because the ORM cannot say it: an INSERT … SELECT … ON CONFLICT DO NOTHING
    and an UPDATE of the row it locked, in one round trip. What the full path reads in
    separate queries is checked here: the conversation is in the inbox, not resolved, and
    belongs to the contact the handle names, who was not merged into another (the full
    path would follow the merge). Locked as the UPDATE would lock it (FOR NO KEY UPDATE:
    agents' replies inserted beside it do not wait), so an agent resolving it at the same
    moment either commits first (no row: the full path opens a new conversation) or waits.
    The UPDATE is the full path's: the customer's answer wakes a parked conversation."""
    conversation, contact, identity = (
        Conversation._meta.db_table,
        Contact._meta.db_table,
        ContactIdentity._meta.db_table,
    )
    sql = f"""
        WITH thread AS (
            SELECT conversation.id, conversation.inbox_id
            FROM {conversation} conversation
            JOIN {contact} contact ON contact.id = conversation.contact_id
            JOIN {identity} identity ON identity.contact_id = contact.id
            WHERE conversation.id = %(conversation_id)s
                AND conversation.inbox_id = %(inbox_id)s
                AND conversation.contact_id = %(contact_id)s
                AND conversation.status <> %(resolved)s
                AND contact.merged_into_id IS NULL
                AND identity.channel_kind = %(channel_kind)s
                AND identity.handle = %(handle)s
            FOR NO KEY UPDATE OF conversation
        ), stored AS (
            INSERT INTO {Message._meta.db_table} (
                conversation_id, inbox_id, direction, sender_user_id, sender_name, text, html,
                provider_message_id, delivery_status, delivery_detail, created_at
            )
            SELECT id, inbox_id, %(direction)s, NULL, %(sender_name)s, %(text)s, %(html)s,
                %(provider_message_id)s, %(delivery_status)s, '', %(now)s
            FROM thread
            ON CONFLICT (inbox_id, provider_message_id) WHERE provider_message_id IS NOT NULL
                DO NOTHING
            RETURNING id, conversation_id
        ), woken AS (
            UPDATE {conversation} conversation
            SET last_activity_at = %(now)s, status = %(open)s, snoozed_until = NULL
            FROM stored
            WHERE conversation.id = stored.conversation_id
        )
        SELECT stored.id FROM thread LEFT JOIN stored ON true
    """  # noqa: S608  # only table names are interpolated, from the models; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "conversation_id": thread.conversation_id,
                "inbox_id": inbound.inbox.pk,
                "contact_id": thread.contact_id,
                "resolved": Status.RESOLVED,
                "channel_kind": inbound.channel_kind,
                "handle": inbound.handle,
                "direction": Message.Direction.INBOUND,
                "sender_name": inbound.sender_name[:200],
                "text": redaction.text,
                "html": redaction.html,
                "provider_message_id": inbound.provider_message_id,
                "delivery_status": Message.DeliveryStatus.RECEIVED,
                "now": now,
                "open": Status.OPEN,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return False, None
    return True, row[0]
