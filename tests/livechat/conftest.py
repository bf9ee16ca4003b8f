"""Live chat fixtures: a chat inbox with its channel, agents, and sockets through the real
ASGI application (its routing and gates) on the real Redis channel layer."""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async as db
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client

from accounts import roles
from accounts.models import User
from channels_app.models import LiveChatChannel
from config.asgi import application
from inbox.models import ChannelKind, Inbox, Module, Team
from tests.conftest import start_session
from tests.inbox.conftest import grant_inbox

SHOP = "http://shop.test"
_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def fresh_redis(settings: Any, tmp_path: Any) -> None:
    # Rate-limit windows, presence and channel-layer state of an earlier test must not leak.
    cache.clear()
    settings.MEDIA_ROOT = str(tmp_path / "media")


# Sockets a test opened; the ones it left open are closed after it.
_open: list[WebsocketCommunicator] = []


@pytest.fixture(autouse=True)
async def closed_sockets() -> AsyncIterator[None]:
    yield
    while _open:
        communicator = _open.pop()
        # Already closed by the server: nothing left to do.
        with contextlib.suppress(Exception):
            await communicator.disconnect()
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()


@dataclass
class Chat:
    inbox: Inbox
    channel: LiveChatChannel
    team: Team
    agent: User
    other_inbox: Inbox
    other_agent: User


@pytest.fixture
def chat(role_groups: None, make_user: Callable[..., User]) -> Chat:
    number = next(_counter)
    inbox = Inbox.objects.create(name=f"Website chat {number}", channel_kind=ChannelKind.LIVECHAT)
    other = Inbox.objects.create(
        name=f"Billing chat {number}", channel_kind=ChannelKind.LIVECHAT, module=Module.BILLING
    )
    team = Team.objects.create(name=f"Chat team {number}")
    grant_inbox(inbox, team)
    other_team = Team.objects.create(name=f"Billing team {number}")
    grant_inbox(other, other_team)
    agent = make_user(roles.AGENT, first_name="Alice")
    agent.groups.add(team)
    other_agent = make_user(roles.AGENT, first_name="Bill")
    other_agent.groups.add(other_team)
    channel = LiveChatChannel.objects.create(inbox=inbox, allowed_origins=SHOP, prechat_name="off")
    LiveChatChannel.objects.create(inbox=other, allowed_origins=SHOP, prechat_name="off")
    return Chat(inbox, channel, team, agent, other, other_agent)


def cookie_of(client: Client) -> str:
    return "; ".join(f"{key}={morsel.value}" for key, morsel in client.cookies.items())


async def visitor_socket(
    key: str, *, origin: str | None = SHOP, ip: str = "203.0.113.7"
) -> tuple[WebsocketCommunicator, bool]:
    headers = [(b"origin", origin.encode())] if origin is not None else []
    communicator = WebsocketCommunicator(application, f"/ws/widget/{key}/", headers=headers)
    communicator.scope["client"] = (ip, 50000)
    _open.append(communicator)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def visitor(
    key: str, *, token: str | None = None, ip: str = "203.0.113.7", **hello: Any
) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """A connected visitor past its hello; returns the socket and the welcome."""
    communicator, connected = await visitor_socket(key, ip=ip)
    assert connected
    await communicator.send_json_to({"type": "hello", "token": token, **hello})
    welcome = await communicator.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome", welcome
    return communicator, welcome


def new_id() -> str:
    return secrets.token_urlsafe(12)


async def say(communicator: WebsocketCommunicator, text: str) -> dict[str, Any]:
    """Send a message and return its acknowledgement (skipping other frames)."""
    client_id = new_id()
    await communicator.send_json_to({"type": "message", "id": client_id, "text": text})
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] in ("ack", "error") and frame.get("id") == client_id:
            return dict(frame)


async def agent_socket(
    user: User, *, origin: str = "http://testserver", client: Client | None = None
) -> tuple[WebsocketCommunicator, bool, Client]:
    if client is None:
        client = Client()
        await db(start_session)(client, user, verified=True)
    headers = [
        (b"origin", origin.encode()),
        (b"host", b"testserver"),
        (b"cookie", cookie_of(client).encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    _open.append(communicator)
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        hello = await communicator.receive_json_from(timeout=5)
        assert hello["type"] == "hello"
    return communicator, connected, client


async def next_event(communicator: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    """The next forwarded inbox event, skipping everything else."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == "event":
            return dict(frame)
