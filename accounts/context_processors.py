"""Template context every page needs from the accounts app."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.selectors import is_verified, session_clock


def session_warning(request: HttpRequest) -> dict[str, Any]:
    """The session's clock for the idle warning (static/js/session.js), on verified pages."""
    # A request refused before the authentication middleware (a bad Host) has no user.
    user = getattr(request, "user", None)
    if user is None or not is_verified(user):
        return {}
    clock = session_clock(session=request.session)
    if clock is None:
        return {}
    return {
        "session_clock": clock,
        "session_warning_seconds": int(settings.SESSION_IDLE_WARNING.total_seconds()),
    }
