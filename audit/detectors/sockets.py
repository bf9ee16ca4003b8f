"""A socket subscribing beyond its usual inboxes: the inbox groups an agent's socket joins
(on connect, and when a re-check widens its scope) against the inboxes this user's
sockets joined over the last MONITOR_BASELINE_DAYS. A stolen session opening a segment
the person never works in, or a grant widened behind a supervisor's back, shows here.

The socket only enqueues (one broker push, off its event loop's thread); the judgement
runs on Celery. What it needs is one cache entry per user — each inbox's last join and
when observation began — so there is nothing to scan in the access log. After a quiet
spell of MONITOR_BASELINE_DAYS the entry lapses and learning starts again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypedDict

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from audit.alerts.models import Alert, AlertKind, AlertSeverity
from audit.alerts.services import Finding, alert_raise
from inbox.models import Inbox


class SocketInboxes(TypedDict):
    since: float  # the first join observed (Unix time): the learning period counts from it
    last_join: dict[str, float]  # inbox id -> its last join


def socket_inboxes_key(user_id: int) -> str:
    return f"monitor:socket_inboxes:{user_id}"


def socket_inboxes_joined(*, user_id: int, inbox_ids: list[int]) -> None:
    """The agent socket joined these inboxes' groups: judged on Celery, not on the socket."""
    from audit.tasks import socket_inboxes_judge

    socket_inboxes_judge.delay(user_id, sorted(inbox_ids))


def socket_inboxes_judge(*, user_id: int, inbox_ids: list[int]) -> Alert | None:
    """Record the joins, and raise an alert on inboxes new to this user's sockets once the
    learning period is over."""
    now = timezone.now()
    window = timedelta(days=settings.MONITOR_BASELINE_DAYS)
    key = socket_inboxes_key(user_id)
    stored = cache.get(key)
    seen: SocketInboxes = stored if stored else SocketInboxes(since=now.timestamp(), last_join={})
    usual = {int(pk) for pk, at in seen["last_join"].items() if at > (now - window).timestamp()}
    new = sorted(set(inbox_ids) - usual)
    since = datetime.fromtimestamp(seen["since"], tz=now.tzinfo)
    learning = now - since < timedelta(days=settings.MONITOR_LEARNING_DAYS)
    last_join = {pk: at for pk, at in seen["last_join"].items() if int(pk) in usual}
    last_join.update({str(pk): now.timestamp() for pk in inbox_ids})
    cache.set(key, {"since": seen["since"], "last_join": last_join}, timeout=window.total_seconds())
    if learning or not new:
        return None
    names = dict(Inbox.objects.filter(pk__in=new).values_list("pk", "name"))
    return alert_raise(
        Finding(
            kind=AlertKind.SOCKET_NEW_INBOXES,
            severity=AlertSeverity.MEDIUM,
            score=min(100, 40 + 10 * len(new)),
            pattern="inboxes:" + ",".join(map(str, new)),
            user_id=user_id,
            summary=f"A live socket followed {len(new)} inbox(es) this user's sockets had not in "
            f"{settings.MONITOR_BASELINE_DAYS} days: {', '.join(names.get(pk, str(pk)) for pk in new)}.",
            evidence={
                "new_inboxes": [{"id": pk, "name": names.get(pk, "")} for pk in new],
                "joined": inbox_ids,
            },
            baseline={
                "usual_inboxes": sorted(usual),
                "days": settings.MONITOR_BASELINE_DAYS,
                "observed_since": since.isoformat(),
                "learning_days": settings.MONITOR_LEARNING_DAYS,
            },
        )
    )
