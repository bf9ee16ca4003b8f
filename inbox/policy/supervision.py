"""Supervision: what a supervisor may manage.

A supervisor manages the inboxes and teams on which they hold a live `manage` grant, and
the accounts whose whole reach lies inside that delegation: taking over an account (its
password, its second factor) must never open more than the supervisor already manages.
Administrators manage everything but themselves. Rules on the `manage` action narrow this
like any other.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.models import Exists, Model, OuterRef, Q, QuerySet

from accounts import roles
from accounts.models import User
from inbox.models import (
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
from inbox.policy import rules
from inbox.policy.context import AccessContext, Action
from inbox.policy.decisions import _apply_rules, access_record
from inbox.policy.grants import _granted_ids, _inbox_condition, _live, _teams_of, _user_usable

MANAGE_TEAM_CODENAME = "manage_team"


def is_administrator(user: User) -> bool:
    return bool(user.is_superuser or user.groups.filter(name=roles.ADMINISTRATOR).exists())


def _supervising(ctx: AccessContext) -> bool:
    # API tokens never supervise: the admin is for people.
    return _user_usable(ctx) and ctx.api_token is None


def managed_inboxes(ctx: AccessContext) -> QuerySet[Inbox]:
    if not _supervising(ctx):
        return Inbox.objects.none()
    inboxes = Inbox.objects.all()
    if not is_administrator(ctx.user):
        inboxes = inboxes.filter(_inbox_condition(ctx, Action.MANAGE, "id"))
    closed = rules.denied_inboxes(ctx, Action.MANAGE)
    return inboxes if closed is None else inboxes.exclude(pk__in=sorted(closed))


def managed_teams(ctx: AccessContext) -> QuerySet[Team]:
    # Team inherits Group's manager, which the stubs type as Group's.
    teams = cast("QuerySet[Team]", Team._default_manager.all())
    if not _supervising(ctx):
        return teams.none()
    if is_administrator(ctx.user):
        return teams
    granted = _granted_ids(TeamUserObjectPermission, TeamGroupObjectPermission, ctx, MANAGE_TEAM_CODENAME)
    return teams.filter(pk__member_of=granted)


def groups_reaching_outside(inboxes: QuerySet[Any], teams: QuerySet[Any]) -> QuerySet[Any]:
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
        | Q(group_id__in=groups_reaching_outside(inboxes, teams))
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
    allowed = _decide_manage(ctx, obj) and _apply_rules(ctx, Action.MANAGE, obj)
    access_record(ctx, obj._meta.label_lower, obj.pk, Action.MANAGE.value, allowed)
    return allowed


def widens_own_access(ctx: AccessContext, *, user_id: int | None = None, group_id: int | None = None) -> bool:
    """Whether giving something to this user or group would give it to the caller."""
    if user_id is not None and user_id == ctx.user.pk:
        return True
    return group_id is not None and _teams_of(ctx).filter(group_id=group_id).exists()
