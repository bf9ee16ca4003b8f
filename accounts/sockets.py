"""The websocket gate: the same rule as the HTTP gate, for the agents' sockets."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier

from accounts.models import User
from accounts.services import session_lifetime_check, session_otp_device


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def socket_is_verified(scope: dict[str, Any]) -> bool:
    """Whether the socket's session is a live, OTP-verified session of an active user.

    Consumers call it again while the socket is open: trust is re-checked, not cached.
    """
    user = scope.get("user")
    session = scope.get("session")
    if not isinstance(user, User) or session is None:
        return False
    user.refresh_from_db(fields=["is_active", "locked_at"])
    if not user.is_active or user.is_locked:
        return False
    if session_otp_device(session=session, user=user) is None:
        return False
    reason = session_lifetime_check(
        session=session, user_id=user.pk, user_agent=_header(scope, b"user-agent")
    )
    return reason is None


class VerifiedSocketMiddleware(BaseMiddleware):
    """Refuses (never accepts) a socket whose session is not OTP-verified."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not await database_sync_to_async(socket_is_verified)(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await super().__call__(scope, receive, send)
