"""The policy decision point: the one place that decides who may do what to which object.

Views, API endpoints, socket consumers, Celery tasks and admin actions ask `can()` and
load protected objects only through the `access_*` loaders here. Grants live in guardian's
direct foreign-key tables with an expiry; they are read here and nowhere else (guardian's
own `has_perm` backend is deliberately not installed, as it knows nothing of expiry).

Every decision on a protected object is recorded as an access event.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import Exists, Model, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django.http import Http404, HttpRequest

from accounts import roles
from accounts.models import ApiToken, User
from audit.services import SESSION_ID_KEY, access_event_record, client_ip
from inbox import lookups  # noqa: F401  # registers the member_of lookup
from inbox.models import (
    Contact,
    Conversation,
    ConversationGroupObjectPermission,
    ConversationUserObjectPermission,
    Inbox,
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
    Team,
    TeamGroupObjectPermission,
    TeamUserObjectPermission,
)


class Action(enum.StrEnum):
    VIEW = "view"
    REPLY = "reply"  # reply, notes, status and labels: working the conversation
    ASSIGN = "assign"
    EXPORT = "export"
    MANAGE = "manage"


INBOX_CODENAMES = {action: f"{action.value}_inbox" for action in Action}
# Conversation-level grants (escalations) carry view and reply only.
CONVERSATION_CODENAMES = {Action.VIEW: "view_conversation", Action.REPLY: "reply_conversation"}
BILLING_PERMISSION = "inbox.view_invoice"


class Denied(Exception):
    """Allowed to see the object but not to do this to it: answered with 403."""


@dataclass(frozen=True)
class AccessContext:
    """Who is asking, from where: the user plus session, device and API token.

    Device posture and risk rules join here later without changing any caller.
    """

    user: User
    session_id: int | None = None
    api_token: ApiToken | None = None
    ip_address: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> AccessContext:
        user = request.user
        if not isinstance(user, User):
            raise Http404
        token = getattr(request, "auth", None)
        return cls(
            user=user,
            session_id=request.session.get(SESSION_ID_KEY) if hasattr(request, "session") else None,
            api_token=token if isinstance(token, ApiToken) else None,
            ip_address=client_ip(request),
        )

    @classmethod
    def for_task(cls, user: User) -> AccessContext:
        return cls(user=user)


# --- Grants -----------------------------------------------------------------------------


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


def conversation_scope(
    ctx: AccessContext, action: Action = Action.VIEW, *, prune: bool = False, inbox_id: int | None = None
) -> ConversationScope:
    """With `prune`, cheap queries settle first what would otherwise be an OR in the big
    one: whether the caller holds any conversation grant at all (most do not), and, for a
    list narrowed to one inbox, whether that inbox is granted. The planner then reads the
    list's index in order instead of collecting and sorting every match."""
    if not _user_usable(ctx) or not _token_allows(ctx, action):
        return ConversationScope(by_inbox=Q(pk__in=[]), by_conversation=None)
    by_inbox = _inbox_condition(ctx, action, "inbox_id")
    if prune and inbox_id is not None:
        granted = Inbox.objects.filter(_inbox_condition(ctx, action, "id"), pk=inbox_id).exists()
        by_inbox = Q(inbox_id=inbox_id) if granted else Q(pk__in=[])
    codename = CONVERSATION_CODENAMES.get(action)
    # API tokens are scoped to whole inboxes; escalations are for people.
    if codename is None or ctx.api_token is not None:
        return ConversationScope(by_inbox=by_inbox, by_conversation=None)
    conversation_ids = _granted_ids(
        ConversationUserObjectPermission, ConversationGroupObjectPermission, ctx, codename
    )
    if prune and not Conversation.objects.filter(id__member_of=conversation_ids).exists():
        return ConversationScope(by_inbox=by_inbox, by_conversation=None)
    return ConversationScope(by_inbox=by_inbox, by_conversation=Q(id__member_of=conversation_ids) & ~by_inbox)


def conversation_filter(ctx: AccessContext, action: Action = Action.VIEW) -> Q:
    """The condition for the conversations where the caller may do `action`."""
    return conversation_scope(ctx, action).combined


def visible_conversations(ctx: AccessContext) -> QuerySet[Conversation]:
    """Every conversation the caller may see, as one SQL query."""
    return Conversation.objects.filter(conversation_filter(ctx, Action.VIEW))


def visible_inboxes(ctx: AccessContext) -> QuerySet[Inbox]:
    if not _user_usable(ctx) or not _token_allows(ctx, Action.VIEW):
        return Inbox.objects.none()
    return Inbox.objects.filter(_inbox_condition(ctx, Action.VIEW, "id"))


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

    def allows(self, inbox_id: int | None, conversation_id: int | None) -> bool:
        if inbox_id in self.inbox_ids:
            return True
        return conversation_id is not None and self.conversation_inboxes.get(conversation_id) == inbox_id


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
    return LiveScope(inbox_ids, conversation_inboxes, _next_grant_expiry(ctx))


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


# --- Decisions --------------------------------------------------------------------------


def _decide(ctx: AccessContext, action: Action, obj: Model) -> bool:
    if isinstance(obj, Conversation):
        conversations = Conversation.objects.filter(conversation_filter(ctx, action), pk=obj.pk)
        if action is not Action.VIEW:
            # Acting on what one may not see would be acting blind: every action needs view.
            conversations = conversations.filter(conversation_filter(ctx, Action.VIEW))
        return conversations.exists()
    if isinstance(obj, Inbox):
        if not _user_usable(ctx) or not _token_allows(ctx, action):
            return False
        return Inbox.objects.filter(_inbox_condition(ctx, action, "id"), pk=obj.pk).exists()
    if isinstance(obj, Contact):
        if action is not Action.VIEW:
            return False
        return visible_contacts(ctx).filter(pk=obj.pk).exists()
    return False


def _record(ctx: AccessContext, object_type: str, object_id: int | None, action: str, allowed: bool) -> None:
    access_event_record(
        user_id=ctx.user.pk,
        session_id=ctx.session_id,
        api_token_id=ctx.api_token.pk if ctx.api_token else None,
        ip_address=ctx.ip_address,
        object_type=object_type,
        object_id=object_id,
        action=action,
        allowed=allowed,
    )


def can(ctx: AccessContext, action: Action, obj: Model) -> bool:
    """May the caller do `action` to `obj`? Deny by default; every answer is recorded."""
    allowed = _decide(ctx, action, obj)
    _record(ctx, obj._meta.label_lower, obj.pk, action.value, allowed)
    return allowed


def sees(user: User, conversation: Conversation) -> bool:
    """Whether a third party (an assignee being chosen) can see the conversation.

    Not recorded as an access event: nobody accessed anything, and the actor's own
    decision is recorded by `can()`.
    """
    return _decide(AccessContext(user=user), Action.VIEW, conversation)


def record_listing(ctx: AccessContext, model: type[Model], count: int) -> None:
    """Record that the caller was shown a page of `count` objects: browsing is an access
    too, and rapid or wide browsing is what a data pull looks like."""
    _record(ctx, model._meta.label_lower, None, f"list:{count}", True)


def can_view_billing(ctx: AccessContext, contact: Contact) -> bool:
    """Billing data is its own module: the Billing role, never a support-only agent."""
    allowed = (
        ctx.api_token is None
        and _user_usable(ctx)
        and ctx.user.has_perm(BILLING_PERMISSION)
        and visible_contacts(ctx).filter(pk=contact.pk).exists()
    )
    _record(ctx, "inbox.invoice", contact.pk, Action.VIEW.value, allowed)
    return allowed


# --- Supervision: what a supervisor may manage ------------------------------------------
# A supervisor manages the inboxes and teams on which they hold a live `manage` grant, and
# the accounts whose whole reach lies inside that delegation: taking over an account (its
# password, its second factor) must never open more than the supervisor already manages.
# Administrators manage everything but themselves.

MANAGE_TEAM_CODENAME = "manage_team"


def is_administrator(user: User) -> bool:
    return bool(user.is_superuser or user.groups.filter(name=roles.ADMINISTRATOR).exists())


def _supervising(ctx: AccessContext) -> bool:
    # API tokens never supervise: the admin is for people.
    return _user_usable(ctx) and ctx.api_token is None


def managed_inboxes(ctx: AccessContext) -> QuerySet[Inbox]:
    if not _supervising(ctx):
        return Inbox.objects.none()
    if is_administrator(ctx.user):
        return Inbox.objects.all()
    return Inbox.objects.filter(_inbox_condition(ctx, Action.MANAGE, "id"))


def managed_teams(ctx: AccessContext) -> QuerySet[Team]:
    # Team inherits Group's manager, which the stubs type as Group's.
    teams = cast("QuerySet[Team]", Team._default_manager.all())
    if not _supervising(ctx):
        return teams.none()
    if is_administrator(ctx.user):
        return teams
    granted = _granted_ids(TeamUserObjectPermission, TeamGroupObjectPermission, ctx, MANAGE_TEAM_CODENAME)
    return teams.filter(pk__member_of=granted)


def _groups_reaching_outside(inboxes: QuerySet[Any], teams: QuerySet[Any]) -> QuerySet[Any]:
    """Groups (teams or roles) holding a live grant outside the given inboxes and teams."""
    live = _live()
    on_inboxes = InboxGroupObjectPermission.objects.filter(live).exclude(content_object_id__in=inboxes)
    on_conversations = ConversationGroupObjectPermission.objects.filter(live).exclude(
        content_object__inbox_id__in=inboxes
    )
    on_teams = TeamGroupObjectPermission.objects.filter(live).exclude(content_object_id__in=teams)
    return (
        on_inboxes.values("group_id")
        .union(on_conversations.values("group_id"), on_teams.values("group_id"))
        .values("group_id")
    )


def managed_users(ctx: AccessContext) -> QuerySet[User]:
    """The accounts the caller may manage: never their own, never a service account or an
    administrator (unless the caller is one), and only accounts every team, role grant and
    direct grant of which lies inside the caller's delegation."""
    if not _supervising(ctx):
        return User.objects.none()
    others = User.objects.exclude(pk=ctx.user.pk)
    if is_administrator(ctx.user):
        return others
    inboxes = managed_inboxes(ctx).values("id")
    teams = managed_teams(ctx).values("pk")
    live = _live()
    user = OuterRef("pk")
    foreign_grants = (
        InboxUserObjectPermission.objects.filter(live, user_id=user).exclude(content_object_id__in=inboxes),
        ConversationUserObjectPermission.objects.filter(live, user_id=user).exclude(
            content_object__inbox_id__in=inboxes
        ),
        TeamUserObjectPermission.objects.filter(live, user_id=user).exclude(content_object_id__in=teams),
    )
    memberships = User.groups.through.objects.filter(user_id=user)
    foreign_membership = memberships.filter(
        Q(group_id__in=Team.objects.exclude(pk__in=teams).values("pk"))
        | Q(group_id__in=_groups_reaching_outside(inboxes, teams))
        | Q(group__name=roles.ADMINISTRATOR)
    )
    users = others.filter(is_superuser=False, is_service_account=False).exclude(Exists(foreign_membership))
    for grants in foreign_grants:
        users = users.exclude(Exists(grants))
    return users


def _decide_manage(ctx: AccessContext, obj: Model) -> bool:
    if isinstance(obj, Inbox):
        return managed_inboxes(ctx).filter(pk=obj.pk).exists()
    if isinstance(obj, Conversation):
        return managed_inboxes(ctx).filter(pk=obj.inbox_id).exists()
    if isinstance(obj, Team):
        return managed_teams(ctx).filter(pk=obj.pk).exists()
    if isinstance(obj, User):
        return managed_users(ctx).filter(pk=obj.pk).exists()
    return False


def can_manage(ctx: AccessContext, obj: Model) -> bool:
    """May the caller supervise `obj` (an inbox, a conversation's grants, a team, an
    account)? Recorded like every other decision."""
    allowed = _decide_manage(ctx, obj)
    _record(ctx, obj._meta.label_lower, obj.pk, Action.MANAGE.value, allowed)
    return allowed


def widens_own_access(ctx: AccessContext, *, user_id: int | None = None, group_id: int | None = None) -> bool:
    """Whether giving something to this user or group would give it to the caller."""
    if user_id is not None and user_id == ctx.user.pk:
        return True
    return group_id is not None and _teams_of(ctx).filter(group_id=group_id).exists()


# --- Loaders: the only way to fetch a protected object ----------------------------------


_VISIBLE: dict[type[Model], Any] = {
    Conversation: visible_conversations,
    Inbox: visible_inboxes,
    Contact: visible_contacts,
}


def _load(ctx: AccessContext, model: type[Model], obj_id: object, action: Action) -> Any:
    """A missing id and an id outside the caller's segment take the same single query and
    are both recorded as denied: probing can neither time nor hear the difference, and
    monitoring sees it."""
    try:
        pk: int | None = int(str(obj_id))
    except ValueError:
        pk = None
    if pk is not None and not -(2**63) <= pk < 2**63:
        pk = None  # beyond bigint: no such row, and PostgreSQL would refuse the parameter
    obj = _VISIBLE[model](ctx).filter(pk=pk).first() if pk is not None else None
    _record(ctx, model._meta.label_lower, pk, Action.VIEW.value, obj is not None)
    if obj is None:
        raise Http404
    if action is not Action.VIEW and not can(ctx, action, obj):
        raise Denied(f"You may see this {model._meta.verbose_name} but not {action.value} it.")
    return obj


def access_conversation(
    ctx: AccessContext, conversation_id: object, action: Action = Action.VIEW
) -> Conversation:
    conversation: Conversation = _load(ctx, Conversation, conversation_id, action)
    return conversation


def access_inbox(ctx: AccessContext, inbox_id: object, action: Action = Action.VIEW) -> Inbox:
    inbox: Inbox = _load(ctx, Inbox, inbox_id, action)
    return inbox


def access_contact(ctx: AccessContext, contact_id: object) -> Contact:
    contact: Contact = _load(ctx, Contact, contact_id, Action.VIEW)
    return contact
