"""Grants: guardian's direct foreign-key tables with an expiry, read here and nowhere else,
and the scopes (lists, live sockets) they open, narrowed by the enforced deny rules."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from accounts.models import ApiToken, User
from inbox import lookups  # noqa: F401  # registers the member_of lookup
from inbox.models import (
    Contact,
    Conversation,
    ConversationGroupObjectPermission,
    ConversationUserObjectPermission,
    Inbox,
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
)
from inbox.policy import rules
from inbox.policy.context import CONVERSATION_CODENAMES, INBOX_CODENAMES, AccessContext, Action


@functools.cache
def _permission_id(codename: str) -> int:
    # Looked up once per process: joining auth_permission by codename in every query
    # costs more planning time than the whole grant check takes to run.
    return Permission.objects.get(content_type__app_label="inbox", codename=codename).pk


@receiver(post_migrate)
def _forget_permission_ids(**kwargs: Any) -> None:
    # A flush or migrate may recreate permission rows under new ids.
    _permission_id.cache_clear()


def _live() -> Q:
    # The database clock decides expiry, so an expired grant is dead on the next query
    # with no cron job in between.
    return Q(expires_at__isnull=True) | Q(expires_at__gt=Now())


def _teams_of(ctx: AccessContext) -> QuerySet[Any]:
    return User.groups.through.objects.filter(user_id=ctx.user.pk).values("group_id")


def _user_usable(ctx: AccessContext) -> bool:
    user = ctx.user
    return bool(user.is_active and not user.is_locked)


def _granted_ids(
    user_model: type[Model], group_model: type[Model], ctx: AccessContext, codename: str
) -> RawSQL:
    """A subquery of the object ids granted to the caller or one of their teams.

    Hand-written, parameterised SQL on purpose: this runs inside every list, count and
    check, and the ORM spent longer compiling the equivalent UNION than PostgreSQL spends
    running it. One UNION subquery makes the caller's condition a single
    `= ANY(ARRAY(...))` that PostgreSQL evaluates once per statement and answers from an
    index. Expiry is compared with the database clock, so an expired grant is dead at once.
    """
    membership = User.groups.through._meta.db_table
    # PostgreSQL's CURRENT_TIMESTAMP is the transaction's start: a grant expiring during a
    # long transaction would live on. The statement's own time does not.
    clock = "statement_timestamp()" if connection.vendor == "postgresql" else "CURRENT_TIMESTAMP"
    live = f"(expires_at IS NULL OR expires_at > {clock})"
    # Only table names are interpolated, never input.
    sql = (
        f"SELECT content_object_id FROM {user_model._meta.db_table} "  # noqa: S608
        f"WHERE user_id = %s AND permission_id = %s AND {live} "
        f"UNION SELECT g.content_object_id FROM {group_model._meta.db_table} g "
        f"JOIN {membership} m ON m.group_id = g.group_id "
        f"WHERE m.user_id = %s AND g.permission_id = %s AND {live.replace('expires_at', 'g.expires_at')}"
    )
    permission_id = _permission_id(codename)
    return RawSQL(sql, (ctx.user.pk, permission_id, ctx.user.pk, permission_id))  # noqa: S611


def _inbox_condition(ctx: AccessContext, action: Action, field: str) -> Q:
    inbox_ids = _granted_ids(
        InboxUserObjectPermission, InboxGroupObjectPermission, ctx, INBOX_CODENAMES[action]
    )
    condition = Q(**{f"{field}__member_of": inbox_ids})
    if ctx.api_token is not None:
        token_inboxes = ApiToken.inboxes.through.objects.filter(apitoken_id=ctx.api_token.pk).values(
            "inbox_id"
        )
        condition &= Q(**{f"{field}__member_of": token_inboxes})
    return condition


def _token_allows(ctx: AccessContext, action: Action) -> bool:
    token = ctx.api_token
    return token is None or (token.is_usable and (action is Action.VIEW or token.can_write))


@dataclass(frozen=True)
class ConversationScope:
    """The caller's conversations for an action, as two disjoint conditions: whole inboxes,
    and individually granted conversations outside those inboxes.

    Counting wants them apart: each part is then answered from an index alone.
    """

    by_inbox: Q
    by_conversation: Q | None

    @property
    def combined(self) -> Q:
        if self.by_conversation is None:
            return self.by_inbox
        return self.by_inbox | self.by_conversation


_NOTHING = ConversationScope(by_inbox=Q(pk__in=[]), by_conversation=None)


def conversation_scope(
    ctx: AccessContext, action: Action = Action.VIEW, *, prune: bool = False, inbox_id: int | None = None
) -> ConversationScope:
    """With `prune`, cheap queries settle first what would otherwise be an OR in the big
    one: whether the caller holds any conversation grant at all (most do not), and, for a
    list narrowed to one inbox, whether that inbox is granted. The planner then reads the
    list's index in order instead of collecting and sorting every match."""
    if not _user_usable(ctx) or not _token_allows(ctx, action):
        return _NOTHING
    closed = rules.denied_inboxes(ctx, action)
    if prune and inbox_id is not None and closed is not None and inbox_id in closed:
        return _NOTHING
    by_inbox = _inbox_condition(ctx, action, "inbox_id")
    if prune and inbox_id is not None:
        granted = Inbox.objects.filter(_inbox_condition(ctx, action, "id"), pk=inbox_id).exists()
        by_inbox = Q(inbox_id=inbox_id) if granted else Q(pk__in=[])
    elif closed is not None:
        by_inbox &= ~Q(inbox_id__in=sorted(closed))
    codename = CONVERSATION_CODENAMES.get(action)
    # API tokens are scoped to whole inboxes; escalations are for people.
    if codename is None or ctx.api_token is not None:
        return ConversationScope(by_inbox=by_inbox, by_conversation=None)
    conversation_ids = _granted_ids(
        ConversationUserObjectPermission, ConversationGroupObjectPermission, ctx, codename
    )
    if prune and not Conversation.objects.filter(id__member_of=conversation_ids).exists():
        return ConversationScope(by_inbox=by_inbox, by_conversation=None)
    by_conversation = Q(id__member_of=conversation_ids) & ~by_inbox
    if closed is not None:
        by_conversation &= ~Q(inbox_id__in=sorted(closed))
    return ConversationScope(by_inbox=by_inbox, by_conversation=by_conversation)


def conversation_filter(ctx: AccessContext, action: Action = Action.VIEW) -> Q:
    """The condition for the conversations where the caller may do `action`."""
    return conversation_scope(ctx, action).combined


def visible_conversations(ctx: AccessContext) -> QuerySet[Conversation]:
    """Every conversation the caller may see, as one SQL query."""
    return Conversation.objects.filter(conversation_filter(ctx, Action.VIEW))


def visible_inboxes(ctx: AccessContext) -> QuerySet[Inbox]:
    if not _user_usable(ctx) or not _token_allows(ctx, Action.VIEW):
        return Inbox.objects.none()
    inboxes = Inbox.objects.filter(_inbox_condition(ctx, Action.VIEW, "id"))
    closed = rules.denied_inboxes(ctx, Action.VIEW)
    return inboxes if closed is None else inboxes.exclude(pk__in=sorted(closed))


def visible_contacts(ctx: AccessContext) -> QuerySet[Contact]:
    """Contacts are visible through a conversation the caller may see."""
    return Contact.objects.filter(id__member_of=visible_conversations(ctx).values("contact_id"))


def users_with_inbox_grant(inbox: Inbox, action: Action = Action.VIEW) -> QuerySet[User]:
    """Active people holding a live `action` grant on the inbox, directly or via a team.

    Conversation-level grants are not counted: they reach one conversation, not the inbox.
    """
    permission_id = _permission_id(INBOX_CODENAMES[action])
    direct = InboxUserObjectPermission.objects.filter(
        _live(), content_object=inbox, permission_id=permission_id
    ).values("user_id")
    teams = InboxGroupObjectPermission.objects.filter(
        _live(), content_object=inbox, permission_id=permission_id
    ).values("group_id")
    return (
        User.objects.filter(is_active=True, locked_at__isnull=True, is_service_account=False)
        .filter(Q(id__in=direct) | Q(groups__in=teams))
        .distinct()
        .order_by("username")
    )


def users_seeing(conversations: QuerySet[Conversation]) -> QuerySet[User]:
    """ "Who can see it now": active people whose live grants open one of these
    conversations — through its inbox (directly or via a team) or the conversation itself.
    By grants as of this moment; the rules narrow further per request (time, network)."""
    inbox_perm = _permission_id(INBOX_CODENAMES[Action.VIEW])
    conversation_perm = _permission_id(CONVERSATION_CODENAMES[Action.VIEW])
    inboxes = conversations.values("inbox_id")
    live = _live()
    on_inboxes = {"content_object_id__in": inboxes, "permission_id": inbox_perm}
    users = (
        InboxUserObjectPermission.objects.filter(live, **on_inboxes)
        .values("user_id")
        .union(
            ConversationUserObjectPermission.objects.filter(
                live, content_object__in=conversations, permission_id=conversation_perm
            ).values("user_id")
        )
    )
    teams = (
        InboxGroupObjectPermission.objects.filter(live, **on_inboxes)
        .values("group_id")
        .union(
            ConversationGroupObjectPermission.objects.filter(
                live, content_object__in=conversations, permission_id=conversation_perm
            ).values("group_id")
        )
    )
    return (
        User.objects.filter(is_active=True, locked_at__isnull=True)
        .filter(Q(id__in=users) | Q(groups__in=teams))
        .distinct()
        .order_by("username")
    )


@dataclass(frozen=True)
class LiveScope:
    """What a live socket may follow, and until when this answer can hold at the latest.

    Sockets subscribe to the inboxes' event groups; events of individually granted
    conversations come through their inbox's group and are let through by id only.
    """

    inbox_ids: frozenset[int]
    # Conversations granted one by one, outside the inboxes above: id -> its inbox id.
    conversation_inboxes: dict[int, int]
    # The soonest moment a grant that counts here expires (None: none is time-bound).
    expires_at: datetime | None
    # Whose scope it is: every event is also asked of the rules, which may close an inbox
    # (a time window ending) between two re-checks. In memory; no query.
    ctx: AccessContext | None = None

    def allows(self, inbox_id: int | None, conversation_id: int | None) -> bool:
        granted = inbox_id in self.inbox_ids or (
            conversation_id is not None and self.conversation_inboxes.get(conversation_id) == inbox_id
        )
        if not granted or self.ctx is None:
            return granted
        closed = rules.denied_inboxes(self.ctx, Action.VIEW, record=False)
        return closed is None or inbox_id not in closed


def live_scope(ctx: AccessContext) -> LiveScope:
    """The caller's live scope, in three queries. Sockets ask again whenever a grant,
    team or account changes, and at `expires_at`."""
    if not _user_usable(ctx):
        return LiveScope(frozenset(), {}, None)
    inbox_ids = frozenset(visible_inboxes(ctx).values_list("id", flat=True))
    by_conversation = conversation_scope(ctx, Action.VIEW).by_conversation
    conversation_inboxes: dict[int, int] = {}
    if by_conversation is not None:
        conversation_inboxes = dict(
            Conversation.objects.filter(by_conversation).values_list("id", "inbox_id")
        )
    return LiveScope(inbox_ids, conversation_inboxes, _next_grant_expiry(ctx), ctx)


def _next_grant_expiry(ctx: AccessContext) -> datetime | None:
    teams = _teams_of(ctx)
    pending = [
        model.objects.filter(expires_at__gt=Now(), **holder).values_list("expires_at", flat=True)
        for model, holder in (
            (InboxUserObjectPermission, {"user_id": ctx.user.pk}),
            (InboxGroupObjectPermission, {"group_id__in": teams}),
            (ConversationUserObjectPermission, {"user_id": ctx.user.pk}),
            (ConversationGroupObjectPermission, {"group_id__in": teams}),
        )
    ]
    first, *rest = pending
    soonest: datetime | None = first.union(*rest, all=True).order_by("expires_at").first()
    return soonest
