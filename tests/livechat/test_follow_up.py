"""A visitor's follow-up message on the state their socket holds (issue #16, "cheap store
paths"): the channel known to allow the page and the thread the last message joined make
it two statements; the held state is a hint, and whenever the database says otherwise the
message takes the full path."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async as db
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.livechat import consumers
from channels_app.livechat import services as livechat
from channels_app.livechat.services import Held, Received, Visitor
from channels_app.models import LiveChatChannel
from inbox import services
from inbox.models import Contact, Conversation, DlpFinding, DlpRule, Message
from inbox.policy import AccessContext
from inbox.services import KnownThread
from tests.livechat.conftest import SHOP, Chat, agent_socket, new_id, next_event, say, visitor

pytestmark = pytest.mark.django_db(transaction=True)

_visitors = itertools.count(1)


def _visitor(chat: Chat) -> Visitor:
    handle = f"{chat.channel.pk}:v:visitor-{next(_visitors)}"
    return Visitor(channel_id=chat.channel.pk, inbox_id=chat.inbox.pk, handle=handle)


def _send(visitor: Visitor, text: str, *, held: Held | None = None, client_id: str | None = None) -> Received:
    return livechat.visitor_message_receive(
        visitor=visitor,
        origin=SHOP,
        ip_address="203.0.113.7",
        client_id=client_id or new_id(),
        text=text,
        held=held or Held(),
    )


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"][:90] for query in queries]


def _held(received: Received) -> Held:
    """What the consumer holds after a message: the channel just checked, and its thread."""
    return Held(channel_allowed=True, thread=received.thread)


# --- The store ----------------------------------------------------------------------------


def test_a_follow_up_costs_two_statements_where_the_full_path_costs_nine(chat: Chat) -> None:
    ada = _visitor(chat)
    first = _send(ada, "Do you ship to Norway?")
    conversation = Conversation.objects.get(pk=first.conversation_id)
    assert first.thread == KnownThread(conversation.contact_id, conversation.pk)

    # Without held state (the path every follow-up took before): channel, duplicate check,
    # redaction rules, then in a transaction identity, open conversation, update, insert.
    with CaptureQueriesContext(connection) as full:
        _send(ada, "And to Iceland?")
    assert len(full) == 9, _statements(full)
    assert (full[3]["sql"], full[-1]["sql"]) == ("BEGIN", "COMMIT")

    # With it: the redaction rules, and one statement that inserts and wakes (atomic by
    # itself: no transaction around it).
    with CaptureQueriesContext(connection) as held:
        follow_up = _send(ada, "And to the Faroes?", held=_held(first))
    assert len(held) == 2, _statements(held)
    assert follow_up.thread == first.thread and follow_up.conversation_id == conversation.pk

    message = Message.objects.get(pk=follow_up.shown["id"])
    assert (message.text, message.direction, message.delivery_status) == (
        "And to the Faroes?",
        Message.Direction.INBOUND,
        Message.DeliveryStatus.RECEIVED,
    )
    assert message.conversation_id == conversation.pk and message.inbox_id == chat.inbox.pk
    assert message.provider_message_id and message.sender_name == "Website visitor"
    # The widget is answered with the row as stored.
    assert follow_up.shown["created_at"] == message.created_at.isoformat()
    conversation.refresh_from_db()
    assert conversation.last_activity_at == message.created_at
    assert [m.text for m in conversation.messages.order_by("id")] == [
        "Do you ship to Norway?",
        "And to Iceland?",
        "And to the Faroes?",
    ]


def test_a_new_visitors_first_message_looks_for_no_conversation_of_its_new_contact(chat: Chat) -> None:
    """The contact is created in the store's own transaction: no conversation can have it
    yet, so its open conversations are not looked up (the costliest query of the path)."""
    ada = _visitor(chat)
    with CaptureQueriesContext(connection) as first:
        received = _send(ada, "Hello?")
    # Channel, duplicate check, redaction rules, then in a transaction the identity, the new
    # contact, its identity, the conversation and the message.
    assert len(first) == 10, _statements(first)
    reads = [q["sql"] for q in first if q["sql"].startswith("SELECT") and '"inbox_conversation"' in q["sql"]]
    assert reads == []
    conversation = Conversation.objects.get(pk=received.conversation_id)
    assert received.thread == KnownThread(conversation.contact_id, conversation.pk)
    assert conversation.contact.identities.get().handle == ada.handle


def test_a_follow_up_wakes_a_snoozed_conversation_as_the_full_path_does(chat: Chat) -> None:
    ada = _visitor(chat)
    first = _send(ada, "hello")
    Conversation.objects.filter(pk=first.conversation_id).update(
        status=Conversation.Status.SNOOZED, snoozed_until=timezone.now() + timedelta(days=1)
    )
    follow_up = _send(ada, "anyone?", held=_held(first))
    assert follow_up.conversation_id == first.conversation_id
    conversation = Conversation.objects.get(pk=first.conversation_id)
    assert (conversation.status, conversation.snoozed_until) == (Conversation.Status.OPEN, None)


def test_a_resend_on_the_held_thread_stores_nothing_and_answers_the_original(chat: Chat) -> None:
    ada = _visitor(chat)
    first = _send(ada, "hello")
    client_id = new_id()
    original = _send(ada, "once", held=_held(first), client_id=client_id)
    Conversation.objects.filter(pk=first.conversation_id).update(status=Conversation.Status.PENDING)
    before = Conversation.objects.get(pk=first.conversation_id)

    again = _send(ada, "once", held=_held(first), client_id=client_id)

    assert again.shown == original.shown
    # Nothing new to hold: the socket keeps what it had.
    assert again.thread is None
    assert Message.objects.filter(conversation_id=first.conversation_id).count() == 2
    # A resend wakes nothing: the agent's "pending" and the activity time stand.
    after = Conversation.objects.get(pk=first.conversation_id)
    assert (after.status, after.last_activity_at) == (Conversation.Status.PENDING, before.last_activity_at)


def test_a_conversation_resolved_meanwhile_makes_the_follow_up_start_a_new_one(chat: Chat) -> None:
    ada = _visitor(chat)
    first = _send(ada, "hello")
    resolved = Conversation.objects.get(pk=first.conversation_id)
    services.conversation_status_set(
        ctx=AccessContext(user=chat.agent), conversation=resolved, status=Conversation.Status.RESOLVED
    )

    follow_up = _send(ada, "one more thing", held=_held(first))

    assert follow_up.conversation_id != resolved.pk
    new = Conversation.objects.get(pk=follow_up.conversation_id)
    assert (new.contact_id, new.status, new.subject) == (
        resolved.contact_id,
        Conversation.Status.OPEN,
        "one more thing",
    )
    assert follow_up.thread == KnownThread(new.contact_id, new.pk)
    resolved.refresh_from_db()
    assert resolved.status == Conversation.Status.RESOLVED
    assert resolved.messages.count() == 1


def test_a_deleted_conversation_makes_the_follow_up_take_the_full_path(chat: Chat) -> None:
    ada = _visitor(chat)
    first = _send(ada, "hello")
    Conversation.objects.filter(pk=first.conversation_id).delete()
    follow_up = _send(ada, "still there?", held=_held(first))
    assert first.thread is not None
    assert Conversation.objects.filter(
        pk=follow_up.conversation_id, contact_id=first.thread.contact_id
    ).exists()
    assert follow_up.thread == KnownThread(first.thread.contact_id, follow_up.conversation_id)


def test_another_visitors_thread_is_never_used(chat: Chat) -> None:
    """The held thread is checked against the handle: a thread that is not this visitor's
    (however it got there) sends the message down the full path, into their own."""
    ada, eve = _visitor(chat), _visitor(chat)
    adas = _send(ada, "my order number is 1234")
    eves = _send(eve, "hello")

    stolen = _send(eve, "what did Ada write?", held=_held(adas))

    assert stolen.conversation_id == eves.conversation_id
    assert Message.objects.filter(conversation_id=adas.conversation_id).count() == 1
    # Nor with Eve's contact beside Ada's conversation: the conversation is not hers.
    assert eves.thread is not None and adas.thread is not None
    mixed = Held(
        channel_allowed=True, thread=KnownThread(eves.thread.contact_id, adas.thread.conversation_id)
    )
    assert _send(eve, "and now?", held=mixed).conversation_id == eves.conversation_id
    assert Message.objects.filter(conversation_id=adas.conversation_id).count() == 1


def test_a_merged_contact_continues_where_the_full_path_would(chat: Chat) -> None:
    ada = _visitor(chat)
    first = _send(ada, "hello")
    assert first.thread is not None
    target = Contact.objects.create(name="Ada (merged)")
    Contact.objects.filter(pk=first.thread.contact_id).update(merged_into=target)

    follow_up = _send(ada, "after the merge", held=_held(first))

    # The full path follows the merge: a conversation of the contact merged into.
    assert Conversation.objects.get(pk=follow_up.conversation_id).contact_id == target.pk
    assert follow_up.thread == KnownThread(target.pk, follow_up.conversation_id)


def test_redaction_and_its_findings_on_the_held_thread(chat: Chat) -> None:
    DlpRule.objects.create(
        name="Cards in chat",
        kinds=["card"],
        min_confidence=75,
        action=DlpRule.Action.REDACT,
        mode=DlpRule.Mode.ENFORCE,
    )
    ada = _visitor(chat)
    first = _send(ada, "hello")
    follow_up = _send(ada, "my card is 4111 1111 1111 1111", held=_held(first))
    assert follow_up.conversation_id == first.conversation_id
    message = Message.objects.get(pk=follow_up.shown["id"])
    assert message.text == "my card is 4111 11•• •••• 1111" == follow_up.shown["text"]
    finding = DlpFinding.objects.get(message=message)
    assert (finding.conversation_id, finding.outcome) == (first.conversation_id, DlpFinding.Outcome.REDACTED)


# --- Over the socket ----------------------------------------------------------------------


async def _next_of(communicator: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next frame of this type (the echoes of the visitor's own messages come between)."""
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != kind:
        pass
    return dict(frame)


@pytest.fixture
def store_queries(monkeypatch: Any) -> list[int]:
    """The statements each visitor message's store made, counted in the socket's own
    database thread (where the consumer runs it)."""
    counts: list[int] = []
    receive = livechat.visitor_message_receive

    def counted(**kwargs: Any) -> Received:
        with CaptureQueriesContext(connection) as queries:
            received = receive(**kwargs)
        counts.append(len(queries))
        return received

    monkeypatch.setattr(livechat, "visitor_message_receive", counted)
    return counts


async def test_the_sockets_follow_ups_cost_two_statements_and_agents_hear_of_them(
    chat: Chat, store_queries: list[int]
) -> None:
    agent, connected, _ = await agent_socket(chat.agent)
    assert connected
    customer, _ = await visitor(chat.channel.key)
    first = await say(customer, "first")
    assert (await next_event(agent))["event"] == "conversation.created"
    second = await say(customer, "second")
    third = await say(customer, "third")

    assert store_queries[1:] == [2, 2]
    for ack in (second, third):
        event = await next_event(agent)
        assert (event["event"], event["message_id"]) == ("message.created", ack["message"]["id"])
    messages = await db(lambda: list(Message.objects.order_by("id").values_list("conversation_id", "text")))()
    conversation_id = messages[0][0]
    assert messages == [(conversation_id, "first"), (conversation_id, "second"), (conversation_id, "third")]
    assert first["message"]["id"] < second["message"]["id"] < third["message"]["id"]


async def test_a_returning_visitors_first_message_continues_their_open_conversation(
    chat: Chat, store_queries: list[int]
) -> None:
    first, welcome = await visitor(chat.channel.key)
    opened = await say(first, "first page")
    await first.disconnect()
    conversation = await db(Conversation.objects.get)(messages__pk=opened["message"]["id"])

    # The next page: the channel was read on connect, the thread on hello; neither again.
    again, _ = await visitor(chat.channel.key, token=welcome["token"])
    await say(again, "second page")
    assert store_queries[-1] == 2
    await again.disconnect()

    # Resolved before the visitor returns: nothing is held, and a new conversation opens.
    await db(services.conversation_status_set)(
        ctx=AccessContext(user=chat.agent), conversation=conversation, status=Conversation.Status.RESOLVED
    )
    back, _ = await visitor(chat.channel.key, token=welcome["token"])
    later = await say(back, "third page")
    texts = await db(lambda: list(conversation.messages.order_by("id").values_list("text", flat=True)))()
    assert texts == ["first page", "second page"]
    new = await db(Conversation.objects.get)(messages__pk=later["message"]["id"])
    assert (new.pk != conversation.pk, new.contact_id) == (True, conversation.contact_id)


async def test_a_resend_over_the_socket_answers_the_original(chat: Chat, store_queries: list[int]) -> None:
    customer, _ = await visitor(chat.channel.key)
    await say(customer, "first")
    client_id = new_id()
    acks = []
    for _ in range(2):
        await customer.send_json_to({"type": "message", "id": client_id, "text": "twice sent"})
        acks.append((await _next_of(customer, "ack"))["message"])
    assert acks[0] == acks[1]
    assert await db(Message.objects.filter(text="twice sent").count)() == 1
    # The held thread survives the resend: the next message is still two statements.
    await say(customer, "third")
    assert store_queries[-1] == 2


async def test_a_conversation_resolved_by_an_agent_between_messages_starts_a_new_one(chat: Chat) -> None:
    agent, _, _ = await agent_socket(chat.agent)
    customer, _ = await visitor(chat.channel.key)
    first = await say(customer, "first")
    await next_event(agent)
    conversation = await db(Conversation.objects.get)(messages__pk=first["message"]["id"])
    await db(services.conversation_status_set)(
        ctx=AccessContext(user=chat.agent), conversation=conversation, status=Conversation.Status.RESOLVED
    )
    assert (await next_event(agent))["event"] == "conversation.status"

    again = await say(customer, "back again")
    event = await next_event(agent)
    assert event["event"] == "conversation.created" and event["message_id"] == again["message"]["id"]
    assert event["conversation_id"] != conversation.pk
    # And the new one is the one held: the next message joins it.
    later = await say(customer, "and again")
    assert (await next_event(agent))["conversation_id"] == event["conversation_id"]
    assert await db(
        Message.objects.filter(pk=later["message"]["id"], conversation_id=event["conversation_id"]).exists
    )()


async def test_a_channel_disabled_between_messages_refuses_the_follow_up(chat: Chat) -> None:
    customer, _ = await visitor(chat.channel.key)
    await say(customer, "first")
    channel = await db(LiveChatChannel.objects.get)(pk=chat.channel.pk)
    channel.enabled = False
    await db(channel.save)()  # the admin's save: the channel-changed event
    closed = await _next_of(customer, "closed")
    assert closed == {"type": "closed", "code": 4404, "message": "This chat is closed."}
    assert (await customer.receive_output(timeout=5))["type"] == "websocket.close"
    await customer.send_json_to({"type": "message", "id": new_id(), "text": "still there?"})
    assert await customer.receive_nothing(timeout=0.5)
    assert await db(Message.objects.filter(text="still there?").exists)() is False


async def test_a_held_channel_is_read_again_once_its_time_is_up(chat: Chat, monkeypatch: Any) -> None:
    """A change that sent no event (an update(), or the event lost) is found by the next
    message once the socket's trust in its last look has run out."""
    monkeypatch.setattr(consumers, "CHANNEL_RECHECK_SECONDS", 0.0)
    customer, _ = await visitor(chat.channel.key)
    await say(customer, "first")
    await say(customer, "second")  # read again (the trust ran out at once), still allowed
    await db(LiveChatChannel.objects.filter(pk=chat.channel.pk).update)(enabled=False)
    await customer.send_json_to({"type": "message", "id": new_id(), "text": "after the update"})
    closed = await _next_of(customer, "closed")
    assert closed["type"] == "closed" and closed["code"] == 4404
    assert await db(Message.objects.filter(text="after the update").exists)() is False


async def test_a_frame_cannot_name_the_thread(chat: Chat) -> None:
    """The held ids are the socket's: a frame naming another visitor's conversation and
    contact is stored in the sender's own conversation."""
    ada, _ = await visitor(chat.channel.key)
    adas = await say(ada, "private")
    target = await db(Conversation.objects.get)(messages__pk=adas["message"]["id"])
    eve, _ = await visitor(chat.channel.key, ip="203.0.113.9")
    await say(eve, "hello")
    await eve.send_json_to(
        {
            "type": "message",
            "id": new_id(),
            "text": "let me in",
            "conversation_id": target.pk,
            "contact_id": target.contact_id,
            "thread": {"conversation_id": target.pk, "contact_id": target.contact_id},
        }
    )
    ack = await _next_of(eve, "ack")
    stored = await db(Message.objects.select_related("conversation").get)(pk=ack["message"]["id"])
    assert stored.conversation_id != target.pk and stored.conversation.contact_id != target.contact_id
    assert await db(target.messages.count)() == 1
