"""Nothing lost by construction: live events are numbered per stream; a socket that misses
one (a full queue, a Redis hiccup) tells its page to catch up from the database, and a
store path at its limit answers "busy" instead of queueing without bound.

A lost event is made the way the channel layer loses one: its number was taken, and it
never arrived.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from channels_app.livechat import selectors
from channels_app.models import LiveChatChannel
from config.redis import redis_client
from inbox import services
from inbox.events import (
    GAP_GRACE_SECONDS,
    SEQUENCE_TTL_SECONDS,
    STARTED_SEQUENCE_TTL_SECONDS,
    SequenceWatch,
    _numbered,
    inbox_group,
)
from inbox.models import ContactIdentity, Conversation, Message
from inbox.policy import AccessContext
from tests.livechat.conftest import Chat, agent_socket, db, new_id, next_event, say, visitor

pytestmark = pytest.mark.django_db(transaction=True)


async def _lose_one(group: str) -> None:
    await sync_to_async(redis_client().incr)(f"portcullis:live:seq:{group}")


async def _frames_until(communicator: Any, kind: str, timeout: float) -> list[dict[str, Any]]:
    """Frames received up to and including the first of `kind`."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] == kind:
            return frames


def test_sequence_watch_waits_for_late_numbers_and_catches_up_on_loss_or_restart() -> None:
    watch = SequenceWatch()
    watch.start({"inbox.1": 4})
    assert not watch.see("inbox.1", 5)
    assert not watch.see("inbox.1", 7)  # 6 skipped: it may come from another process
    assert watch.waiting
    assert not watch.see("inbox.1", 6)  # and it did
    assert not watch.give_up()

    assert not watch.see("inbox.1", 9)
    assert watch.give_up()  # 8 never came
    assert not watch.waiting

    assert watch.see("inbox.1", 1)  # the count went back
    assert watch.see("inbox.1", 5000)  # too many lost to wait for each (a Redis restart)
    assert not watch.see("inbox.1", "5001")  # not a number: not counted

    # Against Redis's counter: numbers given since are awaited, a reset is caught up.
    assert not watch.compare("inbox.1", 5002)
    assert watch.waiting
    assert not watch.see("inbox.1", 5001) and not watch.see("inbox.1", 5002)
    assert not watch.give_up()
    assert watch.compare("inbox.1", 0)  # Redis restarted and no event since
    watch.start({"inbox.2": 0})
    assert watch.see("inbox.2", 10**15)  # a new stream's first event: nothing known before it


def test_a_number_given_up_on_that_comes_late_is_no_second_catch_up() -> None:
    """Two processes number one stream; one publishing slower than the grace makes the page
    catch up once. Its event arriving after that is late, not a counter that went back."""
    watch = SequenceWatch()
    watch.start({"inbox.1": 10})
    assert not watch.see("inbox.1", 12)  # 11 taken by the other process, on its way
    assert watch.give_up()  # the grace is over: the page catches up (11's change with it)
    assert not watch.see("inbox.1", 11)  # and then 11 arrives: nothing more to do
    assert not watch.see("inbox.1", 13)
    # A lower number that was never awaited is still a counter gone back.
    assert watch.see("inbox.1", 5)


def test_a_batch_of_sends_is_numbered_per_stream_in_order_from_the_clock() -> None:
    first, other = f"inbox.{new_id()}", f"inbox.{new_id()}"
    event = {"type": "inbox.event", "event": "message.created"}
    typing = {"type": "livechat.typing"}
    before = time.time_ns() // 1000

    numbered = _numbered([(first, event), (other, event), (first, typing), (first, event)])

    # A new stream starts from the clock, then counts one by one, in the order sent.
    start = numbered[0]["seq"]
    assert start > before
    assert numbered[3]["seq"] == start + 1
    # Each stream counts for itself: the other one's first number is its own start.
    assert numbered[1]["seq"] == start
    # A momentary notice carries no number, and takes none.
    assert "seq" not in numbered[2]
    assert int(redis_client().get(f"portcullis:live:seq:{first}")) == start + 1
    assert 0 < redis_client().ttl(f"portcullis:live:seq:{first}") <= SEQUENCE_TTL_SECONDS
    # The next batch goes on from there.
    assert _numbered([(first, event)])[0]["seq"] == start + 2


async def test_a_new_streams_first_event_is_no_gap_for_the_agent_or_the_widget(chat: Chat) -> None:
    """Joining a stream never numbered starts its counter: its first event is the next
    number, not a jump read as "catch up" (which cost every new visitor's page a reload of
    its history, and every agent a resync)."""
    alice, _, _ = await agent_socket(chat.agent)
    customer, _ = await visitor(chat.channel.key)
    ack = await say(customer, "first")
    # Every widget that connects starts its stream's counter: for an hour, not for days.
    conversation = await db(Conversation.objects.get)(messages__pk=ack["message"]["id"])
    handle = await db(
        lambda: ContactIdentity.objects.values_list("handle", flat=True).get(contact=conversation.contact_id)
    )()
    started = f"portcullis:live:seq:{selectors.visitor_group(handle)}"
    assert 0 < await sync_to_async(redis_client().ttl)(started) <= STARTED_SEQUENCE_TTL_SECONDS
    frames = [await alice.receive_json_from(timeout=5)]
    assert await alice.receive_nothing(timeout=GAP_GRACE_SECONDS + 0.5)
    assert [(frame["type"], frame.get("event")) for frame in frames] == [("event", "conversation.created")]

    # The first numbered event of the visitor's stream: the agent's reply, and no sync.
    await db(services.conversation_reply)(
        ctx=AccessContext(user=chat.agent), conversation=conversation, text="Hello!"
    )
    frames = await _frames_until(customer, "message", timeout=5)  # its own message's echo
    frames += await _frames_until(customer, "message", timeout=5)
    assert frames[-1]["message"]["text"] == "Hello!"
    assert await customer.receive_nothing(timeout=GAP_GRACE_SECONDS + 0.5)
    assert "sync" not in [frame["type"] for frame in frames]


async def test_a_lost_inbox_event_makes_the_agent_page_catch_up(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    customer, _ = await visitor(chat.channel.key)
    await say(customer, "first")
    first = await next_event(alice)
    assert isinstance(first["seq"], int)
    # In order: no catching up.
    assert await alice.receive_nothing(timeout=GAP_GRACE_SECONDS + 0.5)

    await _lose_one(inbox_group(chat.inbox.pk))
    await say(customer, "second")
    frames = await _frames_until(alice, "resync", timeout=GAP_GRACE_SECONDS + 2)
    # The event after the gap is still delivered; the resync follows once the grace passed.
    [after] = [frame for frame in frames if frame["type"] == "event"]
    assert after["seq"] == first["seq"] + 2


async def test_events_of_inboxes_the_agent_may_not_see_still_count(chat: Chat) -> None:
    """Bill sees only the billing inbox: events of others never reach him, and a gap in
    his own stream is still found."""
    bill, _, _ = await agent_socket(chat.other_agent)
    customer, _ = await visitor(chat.channel.key)
    await say(customer, "not for Bill")
    assert await bill.receive_nothing(timeout=1)
    other_channel = await db(LiveChatChannel.objects.get)(inbox=chat.other_inbox)
    billing_customer, _ = await visitor(other_channel.key, ip="203.0.113.8")
    await _lose_one(inbox_group(chat.other_inbox.pk))
    await say(billing_customer, "for Bill")
    frames = await _frames_until(bill, "resync", timeout=GAP_GRACE_SECONDS + 2)
    assert [frame["event"] for frame in frames if frame["type"] == "event"] == ["conversation.created"]


async def test_a_lost_reply_makes_the_widget_catch_up_from_the_database(chat: Chat) -> None:
    customer, _ = await visitor(chat.channel.key)
    ack = await say(customer, "help")
    conversation = await db(Conversation.objects.get)(messages__pk=ack["message"]["id"])
    handle = await db(
        lambda: ContactIdentity.objects.values_list("handle", flat=True).get(contact=conversation.contact_id)
    )()
    # The first reply is stored, and its live event lost on the way.
    lost = await db(Message.objects.create)(
        conversation=conversation,
        inbox=chat.inbox,
        direction=Message.Direction.OUTBOUND,
        text="Lost on the way",
        sender_user=chat.agent,
        delivery_status=Message.DeliveryStatus.SENT,
    )
    await _lose_one(selectors.visitor_group(handle))
    await db(services.conversation_reply)(
        ctx=AccessContext(user=chat.agent), conversation=conversation, text="Still there?"
    )
    frames = await _frames_until(customer, "sync", timeout=GAP_GRACE_SECONDS + 3)
    assert [frame["message"]["text"] for frame in frames if frame["type"] == "message"][-1] == "Still there?"
    history = [message["text"] for message in frames[-1]["history"]]
    assert history == ["help", "Lost on the way", "Still there?"]
    assert frames[-1]["history"][1]["id"] == lost.pk


async def test_a_saturated_store_answers_busy_and_keeps_the_socket(chat: Chat, settings: Any) -> None:
    customer, _ = await visitor(chat.channel.key)
    settings.LIVECHAT_STORES_IN_FLIGHT = 0
    client_id = new_id()
    for _ in range(3):  # the widget sends it again after each pause; none is a strike
        await customer.send_json_to({"type": "message", "id": client_id, "text": "kept"})
        busy = await customer.receive_json_from(timeout=5)
        assert busy["type"] == "error" and busy["code"] == "busy" and busy["id"] == client_id
        assert busy["retry_after_ms"] == settings.LIVECHAT_BUSY_RETRY_MS
    assert await db(Message.objects.filter(text="kept").count)() == 0
    await customer.send_json_to({"type": "ping"})
    assert await customer.receive_json_from(timeout=5) == {"type": "pong"}

    settings.LIVECHAT_STORES_IN_FLIGHT = 64
    await customer.send_json_to({"type": "message", "id": client_id, "text": "kept"})
    [ack] = [frame for frame in await _frames_until(customer, "ack", timeout=5) if frame["type"] == "ack"]
    assert ack["id"] == client_id and ack["message"]["text"] == "kept"
    assert await db(Message.objects.filter(text="kept").count)() == 1
