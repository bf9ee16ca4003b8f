"""Reads: one's own requests, and the requests a supervisor may decide."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from inbox import policy
from inbox.breakglass.models import BreakGlassRequest
from inbox.models import Conversation
from inbox.policy import AccessContext


def requests_of(user: User, *, limit: int = 20) -> list[BreakGlassRequest]:
    return list(BreakGlassRequest.objects.filter(requester=user)[:limit])


def requests_decidable(ctx: AccessContext) -> QuerySet[BreakGlassRequest]:
    """Requests for conversations in the inboxes the caller manages (all, for an
    administrator): a request for a conversation that does not exist reaches no one else."""
    if policy.is_administrator(ctx.user):
        return BreakGlassRequest.objects.all()
    managed = Conversation.objects.filter(inbox__in=policy.managed_inboxes(ctx)).values("pk")
    return BreakGlassRequest.objects.filter(conversation_ref__in=managed)
