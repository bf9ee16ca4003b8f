"""Device trust on the agents' socket: the device its handshake proved carries its trust
level into the socket's policy decisions, so "this inbox needs an approved device" binds
socket subscribes as it binds pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import BrowserDevice
from audit.models import RuleDecision
from config.asgi import application
from inbox.models import Conversation, PolicyRule
from tests.devices.conftest import DeviceKey, bind
from tests.inbox.conftest import make_conversation
from tests.livechat.conftest import Chat, _open, cookie_of, db

pytestmark = pytest.mark.django_db(transaction=True)

SOCKET_URL = "ws://testserver/ws/agent/"


def approved_device_rule(chat: Chat, mode: str) -> tuple[PolicyRule, Conversation]:
    rule = PolicyRule.objects.create(
        name="Chat needs an approved device",
        mode=mode,
        effect=PolicyRule.Effect.DENY,
        min_device_trust=PolicyRule.DeviceTrust.HIGH,
    )
    rule.inboxes.set([chat.inbox])
    return rule, make_conversation(chat.inbox)


async def proven_socket(chat: Chat, **device_fields: Any) -> WebsocketCommunicator:
    """The agent's socket, opened with a fresh proof of the session's device key."""
    client, key = Client(), DeviceKey()
    await db(bind)(client, chat.agent, key, **device_fields)
    headers = [
        (b"origin", b"http://testserver"),
        (b"host", b"testserver"),
        (b"cookie", cookie_of(client).encode()),
    ]
    path = f"/ws/agent/?device_proof={quote(key.proof('GET', SOCKET_URL))}"
    communicator = WebsocketCommunicator(application, path, headers=headers)
    _open.append(communicator)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    return communicator


async def typing_answer(communicator: WebsocketCommunicator, conversation: Conversation) -> dict[str, Any]:
    await communicator.send_json_to({"type": "typing", "conversation_id": conversation.pk})
    return dict(await communicator.receive_json_from(timeout=5))


async def test_an_enforced_approved_device_rule_refuses_an_unapproved_devices_socket(chat: Chat) -> None:
    _, conversation = await db(approved_device_rule)(chat, PolicyRule.Mode.ENFORCE)
    # Proven, but only unreviewed (medium): the inbox is not followed, its frames refused.
    socket = await proven_socket(chat)
    refused = await typing_answer(socket, conversation)
    assert refused["type"] == "error" and refused["code"] == "not_found"
    await socket.disconnect()


async def test_an_approved_devices_socket_meets_the_rule(chat: Chat) -> None:
    # Without the device's trust in the socket's context this is refused too (absent: unmet).
    _, conversation = await db(approved_device_rule)(chat, PolicyRule.Mode.ENFORCE)
    socket = await proven_socket(chat, approval=BrowserDevice.Approval.APPROVED)
    answer = await typing_answer(socket, conversation)
    assert answer["type"] == "event" and answer["event"] == "typing"
    await socket.disconnect()


async def test_a_monitored_rule_lets_the_socket_through_and_records_who_would_be_denied(chat: Chat) -> None:
    rule, conversation = await db(approved_device_rule)(chat, PolicyRule.Mode.MONITOR)
    socket = await proven_socket(chat)
    answer = await typing_answer(socket, conversation)
    assert answer["type"] == "event" and answer["event"] == "typing"
    await socket.disconnect()
    decisions = await db(lambda: list(RuleDecision.objects.filter(rule_id=rule.pk, user_id=chat.agent.pk)))()
    assert decisions and {d.outcome for d in decisions} == {"would_deny"}
    assert all(d.inputs["surface"] == "socket" and d.inputs["device_trust"] == "medium" for d in decisions)
