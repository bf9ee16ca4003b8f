"""The websocket gate: the same rule as the HTTP gate, for the agents' sockets."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.db import close_old_connections

from accounts.devices.sockets import socket_device_proven
from accounts.models import User
from accounts.services import session_lifetime_check, session_otp_device

T = TypeVar("T")


def scope_header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def scope_client_ip(scope: dict[str, Any]) -> str | None:
    # The ASGI server's peer address: behind a proxy it is told which forwarded header to
    # trust (uvicorn --forwarded-allow-ips), so a client cannot forge it.
    client = scope.get("client")
    return str(client[0]) if client else None


@functools.cache
def socket_db_executor() -> ThreadPoolExecutor:
    """Made on first use (settings are read then), once per process, sized by
    SOCKET_DB_THREADS; its threads start as calls need them."""
    return ThreadPoolExecutor(max_workers=settings.SOCKET_DB_THREADS, thread_name_prefix="socket-db")


def socket_db(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run database work for a socket in the sockets' own thread pool (socket_db_executor),
    not on the one shared thread that thread-sensitive calls queue on: sockets must not
    wait behind each other.

    Connections are recycled inside the call (each pool thread keeps its own, within
    CONN_MAX_AGE), where the call's own connection is the one that is seen.
    """

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False, executor=socket_db_executor())


class PooledDatabaseConsumer(AsyncWebsocketConsumer):
    """A consumer whose database work all goes through `socket_db`.

    Channels' base dispatch recycles database connections before every handler, on the one
    shared thread: every frame and every group event of every socket in the process would
    queue there. These consumers touch the database only inside `socket_db` (which recycles
    its own thread's connection), so the hop is skipped.
    """

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class FrameBudget:
    """A token bucket for one socket's inbound frames: bursts pass, a flood does not."""

    def __init__(self, *, burst: int, per_second: float) -> None:
        self.burst = burst
        self.per_second = per_second
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


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
    standing = session_lifetime_check(
        session=session, user_id=user.pk, user_agent=scope_header(scope, b"user-agent")
    )
    return standing.end_reason is None


def socket_may_open(scope: dict[str, Any]) -> bool:
    # The device proof is checked at connect only: it works once (accounts.devices.sockets).
    url = f"{scope.get('scheme', 'ws')}://{scope_header(scope, b'host')}{scope['path']}"
    return socket_is_verified(scope) and socket_device_proven(scope, url=url, address=scope_client_ip(scope))


class VerifiedSocketMiddleware(BaseMiddleware):
    """Refuses (never accepts) a socket whose session is not OTP-verified or whose
    handshake lacks a fresh proof of the session's device key."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not await database_sync_to_async(socket_may_open)(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await super().__call__(scope, receive, send)
