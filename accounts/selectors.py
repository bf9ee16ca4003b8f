from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.utils import timezone

from accounts.models import User, UserSession
from accounts.services import SESSION_LAST_SEEN_KEY, SESSION_STARTED_KEY


def is_verified(user: Any) -> bool:
    """Whether the request's user passed a second factor in this session.

    django-otp's middleware installs `is_verified` on the request's user; a user object
    without it (a service account, an anonymous user) is not verified.
    """
    check = getattr(user, "is_verified", None)
    return bool(user.is_authenticated and check is not None and check())


@dataclass(frozen=True)
class SessionRow:
    id: int
    created_at: datetime
    last_seen_at: datetime
    ip_address: str | None
    user_agent: str
    is_current: bool


def session_list(*, user: User, current_id: int | None) -> list[SessionRow]:
    rows = UserSession.objects.filter(user=user, ended_at__isnull=True).order_by("-last_seen_at")[:50]
    return [
        SessionRow(r.pk, r.created_at, r.last_seen_at, r.ip_address, r.user_agent, r.pk == current_id)
        for r in rows
    ]


@dataclass(frozen=True)
class SessionClock:
    """Seconds until a session ends: on inactivity (unless the person does something) and
    absolutely (whatever they do)."""

    idle_seconds: int
    absolute_seconds: int


def session_clock(*, session: SessionBase) -> SessionClock | None:
    """The clock of a signed-in session as this request leaves it, or None without one."""
    started = session.get(SESSION_STARTED_KEY)
    last_seen = session.get(SESSION_LAST_SEEN_KEY)
    if started is None or last_seen is None:
        return None
    now = timezone.now().timestamp()
    return SessionClock(
        idle_seconds=max(0, int(float(last_seen) + settings.SESSION_IDLE_TIMEOUT.total_seconds() - now)),
        absolute_seconds=max(
            0, int(float(started) + settings.SESSION_ABSOLUTE_TIMEOUT.total_seconds() - now)
        ),
    )
