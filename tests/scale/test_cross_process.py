"""Across processes: two ASGI servers (uvicorn) on one PostgreSQL and one Redis. The visitor
is on one, the agent on the other; messages go both ways, numbered per stream, and a
grant revoked in a third process (this test's) reaches the agent's socket within a second.
What connects them is only what production has: the database and the Redis channel layer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect

from accounts.models import User
from accounts.sockets import socket_db
from inbox.models import InboxGroupObjectPermission
from tests.browser import serve_app
from tests.conftest import start_session
from tests.livechat.conftest import SHOP, Chat, cookie_of

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN = 1.0


async def _frame(ws: ClientConnection, kind: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") == kind:
            return dict(frame)


def _agent_session(user: User) -> Client:
    client = Client()
    start_session(client, user, verified=True)
    return client


async def _visitor(base: str, key: str) -> ClientConnection:
    ws = await connect(
        f"{base.replace('http', 'ws', 1)}/ws/widget/{key}/",
        origin=SHOP,
        user_agent_header=None,  # type: ignore[arg-type]
    )
    await ws.send(json.dumps({"type": "hello"}))
    assert (await _frame(ws, "welcome"))["type"] == "welcome"
    return ws


async def _agent(base: str, client: Client) -> ClientConnection:
    ws = await connect(
        f"{base.replace('http', 'ws', 1)}/ws/agent/",
        origin=base,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie_of(client)},
        # The session is bound to the browser that opened it: here, one that sends none.
        user_agent_header=None,
    )
    assert (await _frame(ws, "hello"))["type"] == "hello"
    return ws


async def _reply(base: str, client: Client, conversation_id: int, text: str) -> None:
    cookies = {key: morsel.value for key, morsel in client.cookies.items()}
    async with httpx.AsyncClient(base_url=base, cookies=cookies, headers={"User-Agent": ""}) as http:
        page = await http.get(f"/conversations/{conversation_id}/")
        assert page.status_code == 200, page.status_code
        response = await http.post(
            f"/conversations/{conversation_id}/reply/",
            data={"reply": text},
            headers={"X-CSRFToken": http.cookies[settings.CSRF_COOKIE_NAME], "Referer": base + "/"},
        )
        assert response.status_code in (200, 302), response.status_code


def test_visitor_and_agent_on_two_servers(chat: Chat, tmp_path: Path) -> None:
    client = _agent_session(chat.agent)
    revoke: Callable[[], Any] = InboxGroupObjectPermission.objects.filter(
        group=chat.team, content_object=chat.inbox
    ).delete

    async def scenario(visitor_base: str, agent_base: str) -> None:
        agent = await _agent(agent_base, client)
        visitor = await _visitor(visitor_base, chat.channel.key)
        # Visitor (server A) → agent (server B).
        await visitor.send(json.dumps({"type": "message", "id": "cross-process-1", "text": "from A"}))
        ack = await _frame(visitor, "ack")
        created = await _frame(agent, "event")
        assert created["event"] == "conversation.created"
        assert created["message_id"] == ack["message"]["id"] and isinstance(created["seq"], int)

        # Agent (through server B's reply form) → visitor (server A).
        await _reply(agent_base, client, created["conversation_id"], "from B")
        while (frame := await _frame(visitor, "message"))["message"]["direction"] != "out":
            pass  # the visitor's own message, echoed to their other tabs
        assert frame["message"]["text"] == "from B"

        # A revocation made in a third process reaches the socket on B within a second.
        started = time.monotonic()
        await socket_db(revoke)()
        assert await _frame(agent, "access.changed", timeout=WITHIN + 1) == {"type": "access.changed"}
        assert time.monotonic() - started <= WITHIN
        await visitor.close()
        await agent.close()

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with serve_app(tmp_path / "a") as server_a, serve_app(tmp_path / "b") as server_b:
        asyncio.run(scenario(server_a, server_b))
