from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts.models import User, UserSession


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
