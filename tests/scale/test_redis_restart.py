"""Redis restarted during live chat (its data gone, as with no persistence): the open
sockets stay open, the next message is stored and acknowledged, and the agent's page is
told to catch up from the database (the event counters restarted with Redis). Chatwoot's
users report ActionCable dead after a Redis restart; here the channel layer reconnects and
resubscribes, and the numbering shows what may have been lost meanwhile.

Runs against a Redis of its own (tests/scale/conftest.py), never the shared one.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import serve_app
from tests.livechat.conftest import Chat
from tests.scale.conftest import PrivateRedis
from tests.scale.test_cross_process import _agent, _agent_session, _frame, _visitor

pytestmark = pytest.mark.django_db(transaction=True)

RECOVERED_WITHIN = 10.0


async def _acked(visitor: Any, client_id: str, text: str, within: float) -> dict[str, Any]:
    """Send until acknowledged, as the widget does after an error."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await visitor.send(json.dumps({"type": "message", "id": client_id, "text": text}))
        try:
            while True:
                frame = await _frame(visitor, "ack", timeout=1)
                if frame["id"] == client_id:
                    return frame
        except TimeoutError:
            continue
    pytest.fail(f"{text!r} was not acknowledged within {within} s")


def test_sockets_recover_and_catch_up_after_a_redis_restart(
    chat: Chat, tmp_path: Path, on_private_redis: PrivateRedis
) -> None:
    client = _agent_session(chat.agent)

    async def scenario(base: str) -> None:
        agent = await _agent(base, client)
        visitor = await _visitor(base, chat.channel.key)
        await _acked(visitor, "before-restart", "before", within=5)
        before = await _frame(agent, "event")
        assert before["event"] == "conversation.created"

        on_private_redis.stop()
        on_private_redis.start()
        started = time.monotonic()

        await _acked(visitor, "after-restart", "after", within=RECOVERED_WITHIN)
        # The counters restarted with Redis: the page is told to catch up, whether the
        # event itself arrived (numbered far ahead) or was lost while the layer resubscribed.
        await _frame(agent, "resync", timeout=RECOVERED_WITHIN - (time.monotonic() - started))
        await visitor.close()
        await agent.close()

    # Rechecks every second: a restart with no event after it is found there too.
    with serve_app(
        tmp_path,
        REDIS_URL=on_private_redis.url,
        CHANNEL_LAYER_PREFIX="scale",
        LIVE_ACCESS_RECHECK_SECONDS="1",
    ) as base:
        asyncio.run(scenario(base))
