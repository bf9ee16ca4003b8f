"""A policy rule reaches open agent sockets: their live scope within a second of the
change, and every frame at once."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.utils import timezone

from inbox.models import PolicyRule
from tests.inbox.conftest import make_conversation
from tests.livechat.conftest import Chat, agent_socket, db

WITHIN = 1.0


def _deny_now(chat: Chat) -> PolicyRule:
    """A deny rule on the chat inbox whose time window has just closed."""
    now = timezone.now()
    rule = PolicyRule.objects.create(
        name="chat closed",
        mode=PolicyRule.Mode.ENFORCE,
        effect=PolicyRule.Effect.DENY,
        window_start=(now + timedelta(hours=2)).time().replace(second=0, microsecond=0),
        window_end=(now + timedelta(hours=3)).time().replace(second=0, microsecond=0),
        time_zone="UTC",
    )
    rule.inboxes.set([chat.inbox])
    return rule


async def test_an_enforced_rule_reaches_an_open_socket_within_a_second(chat: Chat) -> None:
    conversation = await db(make_conversation)(chat.inbox)
    alice, connected, _ = await agent_socket(chat.agent)
    assert connected
    await alice.send_json_to({"type": "typing", "conversation_id": conversation.pk})
    typing = await alice.receive_json_from(timeout=5)
    assert typing["type"] == "event" and typing["event"] == "typing"

    started = time.monotonic()
    await db(_deny_now)(chat)
    assert await alice.receive_json_from(timeout=WITHIN + 1) == {"type": "access.changed"}
    assert time.monotonic() - started <= WITHIN

    await alice.send_json_to({"type": "typing", "conversation_id": conversation.pk})
    refused: Any = await alice.receive_json_from(timeout=5)
    assert refused["type"] == "error" and refused["code"] == "not_found"
    # Closed here, before the database is flushed: a socket still inside a query would hold
    # the lock the flush waits for.
    await alice.disconnect()
