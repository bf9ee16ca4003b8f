"""Reads of the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent, RuleDecision


@dataclass(frozen=True)
class RuleImpact:
    decisions: int
    users: int
    sessions: int
    top_users: list[tuple[int, str, int]]  # user id, username, decisions


def rule_impact(rule_id: int, window: timedelta) -> RuleImpact:
    decisions = RuleDecision.objects.filter(rule_id=rule_id, created_at__gte=timezone.now() - window)
    totals = decisions.aggregate(
        decisions=Count("id"),
        users=Count("user_id", distinct=True),
        sessions=Count("session_id", distinct=True),
    )
    top = list(
        decisions.exclude(user_id=None)
        .values("user_id")
        .annotate(n=Count("id"))
        .order_by("-n", "user_id")[:5]
    )
    names = dict(User.objects.filter(pk__in=[row["user_id"] for row in top]).values_list("pk", "username"))
    return RuleImpact(
        decisions=totals["decisions"],
        users=totals["users"],
        sessions=totals["sessions"],
        top_users=[
            (row["user_id"], names.get(row["user_id"], f"#{row['user_id']}"), row["n"]) for row in top
        ],
    )


def with_usernames(events: QuerySet[AccessEvent]) -> QuerySet[AccessEvent]:
    """Each event with its user's name as `username` (the trail keeps ids, not accounts)."""
    return events.annotate(
        username=Subquery(User.objects.filter(pk=OuterRef("user_id")).values("username")[:1])
    )


def object_access_history(*, object_type: str, object_id: int, limit: int = 50) -> QuerySet[AccessEvent]:
    """The latest decisions on one object, newest first, each with its user's name."""
    return with_usernames(AccessEvent.objects.filter(object_type=object_type, object_id=object_id)).order_by(
        "-pk"
    )[:limit]
