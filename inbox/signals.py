"""Access changes reach open sockets at once.

The receivers decide nothing: they name the users whose sockets must verify again (after
the commit), and the sockets ask the policy decision point, as on connect.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete

from accounts.live import sockets_recheck
from accounts.models import User
from inbox.models import (
    ConversationGroupObjectPermission,
    ConversationUserObjectPermission,
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
    Team,
)

Membership = User.groups.through


def _members(group_id: int) -> list[int]:
    return list(Membership.objects.filter(group_id=group_id).values_list("user_id", flat=True))


def _user_grant_changed(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    sockets_recheck(user_ids=[instance.user_id])


def _team_grant_changed(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    sockets_recheck(user_ids=_members(instance.group_id))


def _user_saved(sender: type[Model], instance: User, **kwargs: Any) -> None:
    # Deactivation, a lock, or any other change to the account.
    sockets_recheck(user_ids=[instance.pk])


def _team_deleted(sender: type[Model], instance: Group, **kwargs: Any) -> None:
    # Before the delete: afterwards the membership rows are gone.
    sockets_recheck(user_ids=_members(instance.pk))


def _membership_changed(
    sender: type[Model], instance: Model, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if not reverse:  # user.groups.add(...): one user
        if action in ("post_add", "post_remove", "post_clear"):
            sockets_recheck(user_ids=[instance.pk])
    elif action in ("post_add", "post_remove"):  # team.user_set.add(...): these users
        sockets_recheck(user_ids=pk_set or ())
    elif action == "pre_clear":  # team.user_set.clear(): everyone, read before they go
        sockets_recheck(user_ids=_members(instance.pk))


def connect() -> None:
    for user_grants in (InboxUserObjectPermission, ConversationUserObjectPermission):
        for signal in (post_save, post_delete):
            signal.connect(_user_grant_changed, sender=user_grants, dispatch_uid="live-access")
    for team_grants in (InboxGroupObjectPermission, ConversationGroupObjectPermission):
        for signal in (post_save, post_delete):
            signal.connect(_team_grant_changed, sender=team_grants, dispatch_uid="live-access")
    post_save.connect(_user_saved, sender=User, dispatch_uid="live-access")
    for team in (Group, Team):
        pre_delete.connect(_team_deleted, sender=team, dispatch_uid="live-access")
    m2m_changed.connect(_membership_changed, sender=Membership, dispatch_uid="live-access")
