"""Masking on the live path (issue #14): what a website visitor writes reaches an agent's
socket as ids only, so an agent without "view PII" gets nothing unmasked over it; the page
then fetches the message over HTTP, where the masking applies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from accounts.models import User
from tests.livechat.conftest import Chat, agent_socket, db, say, visitor

pytestmark = pytest.mark.django_db(transaction=True)

PRIVATE = "Call me on +49 151 23456789 or mail jane.doe@example.org, card 4111 1111 1111 1111."
SECRETS = ("23456789", "jane.doe", "4111", "Jane")


async def frames_until_quiet(communicator: WebsocketCommunicator, quiet: float = 1.0) -> list[dict[str, Any]]:
    # receive_nothing, not a timed-out receive: asgiref cancels the application on a timeout.
    frames = []
    while not await communicator.receive_nothing(timeout=quiet):
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


async def test_a_visitors_message_reaches_an_agent_without_view_pii_as_ids_only(
    chat: Chat, make_user: Callable[..., User]
) -> None:
    trainee = await db(make_user)(username="tina")  # in no role: no "view PII"
    await db(trainee.groups.add)(chat.team)
    socket, connected, _ = await agent_socket(trainee)
    assert connected
    customer, _ = await visitor(chat.channel.key, name="Jane Doe", email="jane.doe@example.org")
    await customer.send_json_to({"type": "typing"})
    ack = await say(customer, PRIVATE)
    assert ack["type"] == "ack"
    await customer.send_json_to({"type": "typing"})
    frames = await frames_until_quiet(socket)
    events = [frame for frame in frames if frame["type"] == "event"]
    assert {"conversation.created", "message.created"} & {event["event"] for event in events}
    sent = json.dumps(frames, ensure_ascii=False)
    assert not [secret for secret in SECRETS if secret in sent], sent
