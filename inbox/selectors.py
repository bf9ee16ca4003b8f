"""Reads for the agent pages and the API. Visibility always comes from the policy."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar, cast

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery

from accounts.models import person_name
from inbox import policy
from inbox.models import (
    CannedResponse,
    Contact,
    Conversation,
    ConversationRead,
    Inbox,
    Invoice,
    Label,
    Message,
    Note,
)
from inbox.policy import AccessContext

PAGE_SIZE = 50
MAX_BIGINT = 2**63 - 1
MAX_SEARCH_LENGTH = 200

Row = TypeVar("Row")


class InvalidFilter(ValueError):
    """A filter or cursor that cannot be understood: answered 400."""


@dataclass(frozen=True)
class ConversationFilters:
    inbox_id: int | None = None
    statuses: tuple[str, ...] = (Conversation.Status.OPEN,)
    scope: str = "all"  # mine | unassigned | all
    label_id: int | None = None
    priority: int | None = None
    search: str = ""

    SCOPES = ("mine", "unassigned", "all")


@dataclass(frozen=True)
class Cursor:
    last_activity_at: datetime
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.last_activity_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Parse a cursor that came back from a client: checked like any other input."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            when, pk = json.loads(raw)
            moment, position = datetime.fromisoformat(when), int(pk)
            # Naive or oddly-offset times and ids beyond bigint would reach the database.
            if moment.tzinfo is None or not -MAX_BIGINT <= position <= MAX_BIGINT:
                raise ValueError("out of range")
            return cls(moment.astimezone(UTC), position)
        except (
            binascii.Error,
            ValueError,
            TypeError,
            OverflowError,  # a JSON number like 1e400 becomes an infinite float
            json.JSONDecodeError,
            UnicodeDecodeError,
        ) as error:
            raise InvalidFilter("The page cursor is not valid.") from error


@dataclass
class ConversationPage:
    rows: Sequence[Conversation]
    next_cursor: str | None
    counters: dict[str, int] = field(default_factory=dict)


def _message_search(text: str) -> QuerySet[Message]:
    if connection.vendor == "postgresql":
        query = SearchQuery(text, config="simple", search_type="websearch")
        return Message.objects.annotate(document=SearchVector("text", config="simple")).filter(document=query)
    # The embedded SQLite default has no full-text index; a plain match does.
    return Message.objects.filter(text__icontains=text)


def _narrowed(conversations: QuerySet[Conversation], filters: ConversationFilters) -> QuerySet[Conversation]:
    conversations = conversations.filter(status__in=filters.statuses)
    if filters.inbox_id is not None:
        conversations = conversations.filter(inbox_id=filters.inbox_id)
    if filters.label_id is not None:
        conversations = conversations.filter(labels__id=filters.label_id)
    if filters.priority is not None:
        conversations = conversations.filter(priority=filters.priority)
    if filters.search:
        matches = _message_search(filters.search).filter(conversation_id=OuterRef("pk"))
        conversations = conversations.filter(Exists(matches))
    return conversations


def list_scope(*, ctx: AccessContext, filters: ConversationFilters) -> policy.ConversationScope:
    """The caller's part of the list under these filters. A page that shows the list and
    its counters asks once and hands it to both: settling it costs queries of its own."""
    return policy.conversation_scope(ctx, prune=True, inbox_id=filters.inbox_id)


def _filtered(
    ctx: AccessContext,
    filters: ConversationFilters,
    *,
    with_scope: bool,
    scope: policy.ConversationScope | None = None,
) -> QuerySet[Conversation]:
    if scope is None:
        scope = list_scope(ctx=ctx, filters=filters)
    conversations = _narrowed(Conversation.objects.filter(scope.combined), filters)
    if with_scope:
        if filters.scope == "mine":
            conversations = conversations.filter(assignee_id=ctx.user.pk)
        elif filters.scope == "unassigned":
            conversations = conversations.filter(assignee__isnull=True)
    return conversations


def _read_since_last_activity(ctx: AccessContext) -> QuerySet[ConversationRead]:
    """The caller's read mark on the outer conversation, when nothing happened since."""
    return ConversationRead.objects.filter(
        user_id=ctx.user.pk, conversation_id=OuterRef("pk"), read_at__gte=OuterRef("last_activity_at")
    )


def _page_queryset(
    ctx: AccessContext,
    filters: ConversationFilters,
    cursor: str | None,
    limit: int,
    scope: policy.ConversationScope | None,
) -> QuerySet[Conversation]:
    """One page (and one row more, to tell whether another follows) of the caller's list
    under `filters`, newest activity first, keyset-paginated from `cursor`, each row
    annotated with the text of its last message and whether the caller has it unread."""
    conversations = _filtered(ctx, filters, with_scope=True, scope=scope)
    if cursor:
        position = Cursor.decode(cursor)
        conversations = conversations.filter(
            Q(last_activity_at__lt=position.last_activity_at)
            | Q(last_activity_at=position.last_activity_at, id__lt=position.id)
        )
    last_message = Message.objects.filter(conversation_id=OuterRef("pk")).order_by("-created_at", "-id")
    return conversations.annotate(
        last_message_text=Subquery(last_message.values("text")[:1]),
        unread=~Exists(_read_since_last_activity(ctx)),
    ).order_by("-last_activity_at", "-id")[: limit + 1]


def _page(
    ctx: AccessContext,
    filters: ConversationFilters,
    rows: list[Row],
    limit: int,
    position: Callable[[Row], Cursor],
) -> tuple[list[Row], str | None]:
    """The page's rows, recorded as listed, and the cursor of the next page (if any)."""
    policy.record_listing(ctx, Conversation, min(len(rows), limit), searched=bool(filters.search))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, position(rows[-1]).encode()


def conversation_list(
    *,
    ctx: AccessContext,
    filters: ConversationFilters,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    scope: policy.ConversationScope | None = None,
) -> ConversationPage:
    """One page of the inbox list, newest activity first, keyset-paginated; `scope` is
    `list_scope()` for these filters when the caller already has it."""
    queryset = (
        _page_queryset(ctx, filters, cursor, limit, scope)
        .select_related("inbox", "contact", "assignee")
        # Rows show their labels: one query for the page, not one per row.
        .prefetch_related("labels")
    )
    rows, next_cursor = _page(
        ctx, filters, list(queryset), limit, lambda tail: Cursor(tail.last_activity_at, tail.pk)
    )
    return ConversationPage(rows=rows, next_cursor=next_cursor)


class ListRow(TypedDict):
    """One row of the workspace's list pane: the columns it shows, as plain values."""

    id: int
    subject: str
    status: str
    priority: int
    last_activity_at: datetime
    last_message_text: str | None
    unread: bool
    contact_id: int
    contact_name: str
    inbox_name: str
    assignee_id: int | None
    assignee_first_name: str | None
    assignee_last_name: str | None
    assignee_username: str | None
    labels: list[tuple[str, str]]  # (name, color), by name


# The list pane's columns, named as ListRow names them.
_LIST_ROW_COLUMNS = {
    "contact_name": F("contact__name"),
    "inbox_name": F("inbox__name"),
    "assignee_first_name": F("assignee__first_name"),
    "assignee_last_name": F("assignee__last_name"),
    "assignee_username": F("assignee__username"),
}


def conversation_list_rows(
    *,
    ctx: AccessContext,
    filters: ConversationFilters,
    cursor: str | None = None,
    scope: policy.ConversationScope | None = None,
) -> tuple[list[ListRow], str | None]:
    """The page `conversation_list` gives, as the list pane shows it: plain rows of the
    columns it needs, and the next page's cursor. The pane shows 50 rows per request, and
    building model instances for them (with a label manager per row) was about 12 ms of
    profiled CPU per request; these rows come as plain values from two queries (the page,
    then its labels)."""
    rows: list[dict[str, Any]] = list(
        # django-stubs resolves value names against the model's fields, not annotations.
        _page_queryset(ctx, filters, cursor, PAGE_SIZE, scope).values(  # type: ignore[misc]
            "id",
            "subject",
            "status",
            "priority",
            "last_activity_at",
            "last_message_text",
            "unread",
            "contact_id",
            "assignee_id",
            **_LIST_ROW_COLUMNS,
        )
    )
    rows, next_cursor = _page(
        ctx, filters, rows, PAGE_SIZE, lambda tail: Cursor(tail["last_activity_at"], tail["id"])
    )
    labels: dict[int, list[tuple[str, str]]] = {row["id"]: [] for row in rows}
    if rows:
        tagged = Conversation.labels.through.objects.filter(conversation_id__in=labels).order_by(
            "label__name"
        )
        for conversation_id, name, color in tagged.values_list(
            "conversation_id", "label__name", "label__color"
        ):
            labels[conversation_id].append((name, color))
    for row in rows:
        row["labels"] = labels[row["id"]]
    return cast(list[ListRow], rows), next_cursor


def _visible_and_read(
    ctx: AccessContext, scope: policy.ConversationScope, filters: ConversationFilters
) -> tuple[list[str], list[Any], list[str], list[Any]]:
    """The SQL of (inbox, assignee) over the caller's visible conversations under `filters`,
    one SELECT per part of the scope (to be joined by UNION ALL), and the same over those the
    caller has read since their last activity."""
    parts = [scope.by_inbox] if scope.by_conversation is None else [scope.by_inbox, scope.by_conversation]
    visible: list[str] = []
    read: list[str] = []
    visible_params: list[Any] = []
    read_params: list[Any] = []
    for part in parts:
        narrowed = _narrowed(Conversation.objects.filter(part), filters)
        try:
            sql, part_params = narrowed.values("inbox_id", "assignee_id").query.sql_with_params()
            read_sql, read_part_params = (
                narrowed.filter(Exists(_read_since_last_activity(ctx)))
                .values("inbox_id", "assignee_id")
                .query.sql_with_params()
            )
        except EmptyResultSet:  # a part that can match nothing (no grant, locked user)
            continue
        visible.append(sql)
        visible_params.extend(part_params)
        read.append(read_sql)
        read_params.extend(read_part_params)
    return visible, visible_params, read, read_params


# Mine, unassigned and all, as the columns of one SELECT; its one parameter is the caller.
_COUNTS = "COUNT(*) FILTER (WHERE assignee_id = %s), COUNT(*) FILTER (WHERE assignee_id IS NULL), COUNT(*)"
_COUNTER_NAMES = ("mine", "unassigned", "all")


@dataclass(frozen=True)
class ListCounters:
    """The list's tabs: mine / unassigned / all under the filters and how many of each are
    unread for the caller (mine_unread, ...); and for the inbox filter, how many each inbox
    holds unread under the other filters (inboxes with none left out)."""

    counts: dict[str, int]
    unread_by_inbox: dict[int, int]


def list_counters(
    *, ctx: AccessContext, filters: ConversationFilters, scope: policy.ConversationScope | None = None
) -> ListCounters:
    """The list's counters in one query, whatever the number of inboxes: counted per inbox
    under the filters without their inbox, which gives both the inbox filter's unread
    counts and (summed, or the filter's inbox alone) the tabs. `scope` is `list_scope()` of
    the filters without an inbox, when the caller has it.

    The two parts of the caller's scope are counted through UNION ALL rather than one OR:
    each part is then answered from the (inbox, status, assignee) index alone, without
    visiting the table (an OR forces a bitmap heap scan over every matching row). Unread is
    counted as all minus read: the read part starts from the caller's own read
    marks, a few rows per agent, instead of probing one per visible conversation.
    """
    unfiltered = replace(filters, inbox_id=None)
    if scope is None:
        scope = list_scope(ctx=ctx, filters=unfiltered)
    visible, visible_params, read, read_params = _visible_and_read(ctx, scope, unfiltered)
    # Per inbox: (mine, unassigned, all) visible and (mine, unassigned, all) read.
    per_inbox: dict[int, list[int]] = {}
    if visible:
        # Composed from ORM-compiled, parameterised SQL: no value is interpolated. Each side
        # is counted where it is read (grouped straight off the index scan) rather than its
        # rows appended and grouped again: ~20 % less at 1M conversations.
        sql = (
            f"SELECT inbox_id, false, {_COUNTS} FROM ({' UNION ALL '.join(visible)}) AS visible"  # noqa: S608
            f" GROUP BY inbox_id UNION ALL SELECT inbox_id, true, {_COUNTS}"
            f" FROM ({' UNION ALL '.join(read)}) AS seen GROUP BY inbox_id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [ctx.user.pk, *visible_params, ctx.user.pk, *read_params])
            for inbox_id, seen, *counts in cursor.fetchall():
                offset = 3 if seen else 0
                per_inbox.setdefault(inbox_id, [0] * 6)[offset : offset + 3] = counts
    shown = [per_inbox.get(filters.inbox_id, [0] * 6)] if filters.inbox_id else list(per_inbox.values())
    summed = [sum(column) for column in zip(*shown, strict=True)] if shown else [0] * 6
    counts = dict(zip(_COUNTER_NAMES, summed[:3], strict=True))
    counts |= {f"{name}_unread": summed[i] - summed[i + 3] for i, name in enumerate(_COUNTER_NAMES)}
    unread_by_inbox = {inbox_id: totals[2] - totals[5] for inbox_id, totals in per_inbox.items()}
    return ListCounters(
        counts=counts, unread_by_inbox={inbox_id: n for inbox_id, n in unread_by_inbox.items() if n}
    )


@dataclass(frozen=True)
class ThreadEntry:
    kind: str  # "message" | "note"
    created_at: datetime
    item: Any


def conversation_thread(*, conversation: Conversation) -> list[ThreadEntry]:
    """Messages and internal notes in time order. The caller has loaded the conversation
    through the policy, which is what authorises reading its thread."""
    messages = (
        Message.objects.filter(conversation=conversation)
        .select_related("sender_user")
        .prefetch_related("attachments")
    )
    notes = Note.objects.filter(conversation=conversation).select_related("author")
    entries = [ThreadEntry("message", m.created_at, m) for m in messages]
    entries += [ThreadEntry("note", n.created_at, n) for n in notes]
    return sorted(entries, key=lambda e: (e.created_at, e.kind, e.item.pk))


def contact_other_conversations(
    *, ctx: AccessContext, conversation: Conversation, limit: int = 10
) -> list[Conversation]:
    """The contact's other conversations, newest first: only those the caller may see, so
    the context pane tells an agent nothing about the contact's other segments."""
    rows = list(
        policy.visible_conversations(ctx)
        .filter(contact_id=conversation.contact_id)
        .exclude(pk=conversation.pk)
        .select_related("inbox")
        .order_by("-last_activity_at", "-id")[:limit]
    )
    policy.record_listing(ctx, Conversation, len(rows))
    return rows


def assignee_choices(*, inbox: Inbox) -> list[tuple[int, str]]:
    """Who may be offered as the assignee of the inbox's conversations (the policy's live
    grants), as (id, name) by username: the menu needs no more than that of each."""
    people = policy.users_with_inbox_grant(inbox).values_list("pk", "first_name", "last_name", "username")
    return [(pk, person_name(first, last, username)) for pk, first, last, username in people]


def labels() -> QuerySet[Label]:
    """Every label: they are shared vocabulary, not data of any segment."""
    return Label.objects.all()


def canned_responses(*, conversation: Conversation) -> QuerySet[CannedResponse]:
    return CannedResponse.objects.filter(Q(inbox__isnull=True) | Q(inbox_id=conversation.inbox_id))


def contact_invoices(*, ctx: AccessContext, contact_id: int) -> QuerySet[Invoice] | None:
    """The contact's invoices, or None when the caller is outside the billing module."""
    contact = Contact(pk=contact_id)
    if not policy.can_view_billing(ctx, contact):
        return None
    return Invoice.objects.filter(contact_id=contact_id).order_by("-issued_at")
