"""The visitor's socket: origin allowlist, signed tokens, identity, limits, durable messages."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from unittest import mock

import pytest
from django.core import signing

from channels_app.livechat import consumers
from channels_app.livechat import services as livechat
from channels_app.models import LiveChatChannel
from inbox import services
from inbox.models import ChannelKind, ContactIdentity, Conversation, Message
from inbox.policy import AccessContext
from tests.livechat.conftest import (
    SHOP,
    Chat,
    agent_socket,
    db,
    new_id,
    next_event,
    say,
    visitor,
    visitor_socket,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_missing_or_foreign_origin_and_unknown_key_are_refused(chat: Chat) -> None:
    for origin in (None, "http://evil.test", "https://shop.test", "http://shop.test:8080", "null"):
        communicator, connected = await visitor_socket(chat.channel.key, origin=origin)
        assert not connected, origin
    communicator, connected = await visitor_socket("lc_no-such-key")
    assert not connected
    communicator, connected = await visitor_socket(chat.channel.key)
    assert connected
    await communicator.disconnect()


async def test_disabled_channel_refuses_and_closes_open_sockets(chat: Chat, monkeypatch: Any) -> None:
    # The socket trusts its last look at the channel (on connect) for a while; here not at all.
    monkeypatch.setattr(consumers, "CHANNEL_RECHECK_SECONDS", 0.0)
    communicator, _ = await visitor(chat.channel.key)
    await db(LiveChatChannel.objects.filter(pk=chat.channel.pk).update)(enabled=False)
    # An update() skips signals: the next message still finds the channel closed.
    await communicator.send_json_to({"type": "message", "id": new_id(), "text": "still there?"})
    closed = await communicator.receive_json_from(timeout=5)
    assert closed == {"type": "closed", "code": 4404, "message": "This chat is closed."}
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    _, connected = await visitor_socket(chat.channel.key)
    assert not connected

    # Through the admin (a save), open sockets close at once, without waiting for a frame.
    await db(LiveChatChannel.objects.filter(pk=chat.channel.pk).update)(enabled=True)
    communicator, _ = await visitor(chat.channel.key)
    channel = await db(LiveChatChannel.objects.get)(pk=chat.channel.pk)
    channel.allowed_origins = "https://www.shop.test"
    await db(channel.save)()
    closed = await communicator.receive_json_from(timeout=1)
    assert closed["type"] == "closed" and closed["code"] == 4404


async def test_message_is_stored_before_the_agent_hears_of_it(chat: Chat) -> None:
    agent, connected, _ = await agent_socket(chat.agent)
    assert connected
    communicator, welcome = await visitor(chat.channel.key)
    assert welcome["history"] == [] and welcome["token"]
    ack = await say(communicator, "Do you ship to Norway?")
    assert ack["type"] == "ack"
    event = await next_event(agent)
    assert event["event"] == "conversation.created"
    assert event["message_id"] == ack["message"]["id"]
    message = await db(Message.objects.select_related("conversation").get)(pk=event["message_id"])
    assert message.text == "Do you ship to Norway?"
    assert message.direction == Message.Direction.INBOUND
    assert message.conversation.inbox_id == chat.inbox.pk
    identity = await db(ContactIdentity.objects.get)(contact_id=message.conversation.contact_id)
    assert identity.channel_kind == ChannelKind.LIVECHAT and identity.handle.startswith(
        f"{chat.channel.pk}:v:"
    )
    await communicator.disconnect()
    await agent.disconnect()


async def test_resent_message_is_stored_once(chat: Chat) -> None:
    communicator, _ = await visitor(chat.channel.key)
    client_id = new_id()
    acks = []
    for _ in range(2):  # the widget resends what was not acknowledged before a reconnect
        await communicator.send_json_to({"type": "message", "id": client_id, "text": "once"})
        while (frame := await communicator.receive_json_from(timeout=5))["type"] != "ack":
            pass
        acks.append(frame["message"]["id"])
    assert acks[0] == acks[1]
    assert await db(Message.objects.filter(text="once").count)() == 1


async def test_reconnect_resumes_the_conversation_and_only_with_the_token(chat: Chat) -> None:
    first, welcome = await visitor(chat.channel.key)
    await say(first, "first message")
    await first.disconnect()

    again, resumed = await visitor(chat.channel.key, token=welcome["token"])
    assert [m["text"] for m in resumed["history"]] == ["first message"]
    assert resumed["history"][0]["direction"] == "in"
    await say(again, "second message")
    await again.disconnect()
    assert await db(Conversation.objects.filter(inbox=chat.inbox).count)() == 1

    stranger, fresh = await visitor(chat.channel.key)
    assert fresh["history"] == []
    await stranger.disconnect()


def _token_claims(channel: LiveChatChannel, handle: str) -> dict[str, Any]:
    return {"c": channel.pk, "h": handle, "n": "", "e": "", "p": True}


async def test_forged_expired_and_foreign_tokens_are_refused(chat: Chat) -> None:
    first, welcome = await visitor(chat.channel.key)
    await say(first, "mine")
    await first.disconnect()
    claims = signing.TimestampSigner(salt=livechat.TOKEN_SALT).unsign_object(welcome["token"])
    handle = claims["h"]

    other_channel = await db(LiveChatChannel.objects.get)(inbox=chat.other_inbox)
    signer = signing.TimestampSigner(salt=livechat.TOKEN_SALT)
    stale = int(time.time()) - 25 * 3600
    with mock.patch.object(signer, "timestamp", return_value=signing.b62_encode(stale)):
        expired = signer.sign_object(_token_claims(chat.channel, handle))
    forged_key = signing.TimestampSigner(key="not-the-server-key", salt=livechat.TOKEN_SALT)
    tampered = welcome["token"].replace(welcome["token"][-5:], "AAAAA")
    tokens = {
        "expired": expired,
        "signed with another key": forged_key.sign_object(_token_claims(chat.channel, handle)),
        "tampered": tampered,
        "another channel's": signer.sign_object(_token_claims(other_channel, handle)),
        "garbage": "x" * 5000,
    }
    for what, token in tokens.items():
        communicator, connected = await visitor_socket(chat.channel.key)
        assert connected
        await communicator.send_json_to({"type": "hello", "token": token})
        closed = await communicator.receive_json_from(timeout=5)
        assert closed["type"] == "closed" and closed["code"] == 4401, what
        output = await communicator.receive_output(timeout=5)
        assert output == {"type": "websocket.close", "code": 4401}, what


async def test_identity_verification_when_mandatory(chat: Chat) -> None:
    await db(LiveChatChannel.objects.filter(pk=chat.channel.pk).update)(identity_required=True)
    channel = await db(LiveChatChannel.objects.get)(pk=chat.channel.pk)
    good = livechat.identity_hash(channel.identity_secret, "customer-42")
    refusals: list[dict[str, Any]] = [
        {},
        {"user_id": "customer-42"},
        {"user_id": "customer-42", "user_hash": "0" * 64},
        {"user_id": "customer-43", "user_hash": good},
        {"user_id": "customer 42", "user_hash": good},
        {"user_id": 42, "user_hash": good},
    ]
    for hello in refusals:
        communicator, connected = await visitor_socket(chat.channel.key)
        assert connected
        await communicator.send_json_to({"type": "hello", **hello})
        closed = await communicator.receive_json_from(timeout=5)
        assert closed["code"] == 4403, hello
    communicator, _ = await visitor(chat.channel.key, user_id="customer-42", user_hash=good.upper())
    ack = await say(communicator, "signed in")
    assert ack["type"] == "ack"
    await communicator.disconnect()
    identity = await db(ContactIdentity.objects.get)(channel_kind=ChannelKind.LIVECHAT)
    assert identity.handle == f"{chat.channel.pk}:u:customer-42"

    # The same site user on another device sees the same conversation.
    other_device, resumed = await visitor(chat.channel.key, user_id="customer-42", user_hash=good)
    assert [m["text"] for m in resumed["history"]] == ["signed in"]
    await other_device.disconnect()


async def test_identity_bound_token_does_not_resume_without_the_identity(chat: Chat) -> None:
    secret = chat.channel.identity_secret
    signed_in, welcome = await visitor(
        chat.channel.key, user_id="u1", user_hash=livechat.identity_hash(secret, "u1")
    )
    await say(signed_in, "private")
    await signed_in.disconnect()
    # The next person at the same computer, signed out of the site, starts afresh.
    next_person, fresh = await visitor(chat.channel.key, token=welcome["token"])
    assert fresh["history"] == []
    await next_person.disconnect()


async def test_oversized_frame_closes_that_socket_only(chat: Chat) -> None:
    big, _ = await visitor(chat.channel.key)
    other, _ = await visitor(chat.channel.key, ip="198.51.100.9")
    await big.send_to(text_data='{"type": "message", "id": "aaaaaaaaaa", "text": "' + "x" * 20_000 + '"}')
    assert await big.receive_output(timeout=5) == {"type": "websocket.close", "code": 1009}
    await big.send_to(bytes_data=b"\x00\x01")
    assert (await say(other, "I am fine"))["type"] == "ack"
    await other.disconnect()


async def test_frame_limit_counts_bytes_not_characters(chat: Chat, settings: Any) -> None:
    """A euro sign is one character, and three bytes on the wire."""
    limit = settings.LIVECHAT_MAX_FRAME_BYTES
    big, _ = await visitor(chat.channel.key)
    frame = '{"type": "message", "id": "aaaaaaaaaa", "text": "' + "€" * (limit // 3 + 1) + '"}'
    assert len(frame) < limit < len(frame.encode())
    await big.send_to(text_data=frame)
    assert await big.receive_output(timeout=5) == {"type": "websocket.close", "code": 1009}
    # Under the limit in bytes, the same characters go through intact.
    fine, _ = await visitor(chat.channel.key, ip="198.51.100.9")
    text = "€" * 1000
    client_id = new_id()
    await fine.send_to(
        text_data=json.dumps({"type": "message", "id": client_id, "text": text}, ensure_ascii=False)
    )
    ack = await fine.receive_json_from(timeout=5)
    assert ack["type"] == "ack" and ack["id"] == client_id and ack["message"]["text"] == text
    await fine.disconnect()


async def test_binary_frames_are_refused(chat: Chat) -> None:
    communicator, _ = await visitor(chat.channel.key)
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 1003}


async def test_flood_is_throttled_then_closed_without_affecting_others(chat: Chat) -> None:
    flooder, _ = await visitor(chat.channel.key)
    other, _ = await visitor(chat.channel.key, ip="198.51.100.9")
    for _ in range(60):
        await flooder.send_json_to({"type": "ping"})
    frames: list[dict[str, Any]] = []
    while True:
        output = await flooder.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            assert output["code"] == 4429
            break
        frames.append(json.loads(output["text"]))
    kinds = [frame.get("code", frame["type"]) for frame in frames]
    assert "pong" in kinds and "rate_limited" in kinds and kinds[-1] == 4429
    assert (await say(other, "unaffected"))["type"] == "ack"
    await other.disconnect()


async def test_message_rate_limit_per_visitor_and_per_address(chat: Chat, settings: Any) -> None:
    settings.LIVECHAT_VISITOR_MESSAGES_PER_WINDOW = 3
    settings.LIVECHAT_IP_MESSAGES_PER_WINDOW = 5
    settings.LIVECHAT_RATE_WINDOW_SECONDS = 60
    first, _ = await visitor(chat.channel.key)
    results = [(await say(first, f"m{i}"))["type"] for i in range(4)]
    assert results == ["ack", "ack", "ack", "error"]
    # Another visitor at the same address: the address's budget (refused attempts count
    # too, or a flood would cost nothing) runs out next.
    second, _ = await visitor(chat.channel.key)
    results = [(await say(second, f"n{i}"))["type"] for i in range(3)]
    assert results == ["ack", "error", "error"]
    # Elsewhere, nobody is affected.
    third, _ = await visitor(chat.channel.key, ip="198.51.100.20")
    assert (await say(third, "hello"))["type"] == "ack"
    assert await db(Message.objects.count)() == 5


async def test_agent_reply_reaches_the_visitor_with_the_agents_first_name(chat: Chat) -> None:
    communicator, _ = await visitor(chat.channel.key)
    ack = await say(communicator, "help")
    conversation = await db(Conversation.objects.get)(messages__pk=ack["message"]["id"])
    reply = await db(services.conversation_reply)(
        ctx=AccessContext(user=chat.agent), conversation=conversation, text="Yes, we do!"
    )
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != "message" or frame["message"][
        "direction"
    ] != "out":
        pass
    assert frame["message"]["text"] == "Yes, we do!"
    assert frame["message"]["author"] == "Alice"
    await db(reply.refresh_from_db)()
    assert reply.delivery_status == Message.DeliveryStatus.SENT

    # The visitor reads it: the agent's message is marked read.
    await communicator.send_json_to({"type": "read", "up_to": reply.pk})
    await asyncio.sleep(0.3)
    await db(reply.refresh_from_db)()
    assert reply.delivery_status == Message.DeliveryStatus.READ


async def test_every_reply_in_an_inbox_is_sent_not_just_the_first(chat: Chat) -> None:
    """Replies have no provider id of their own: each must still be unique in the inbox."""
    first, _ = await visitor(chat.channel.key)
    second, _ = await visitor(chat.channel.key)
    replies = []
    for communicator in (first, second, first):
        ack = await say(communicator, "question")
        conversation = await db(Conversation.objects.get)(messages__pk=ack["message"]["id"])
        replies.append(
            await db(services.conversation_reply)(
                ctx=AccessContext(user=chat.agent), conversation=conversation, text="answer"
            )
        )
    for reply in replies:
        await db(reply.refresh_from_db)()
        assert reply.delivery_status == Message.DeliveryStatus.SENT


async def test_prechat_fields_are_asked_and_enforced(chat: Chat) -> None:
    await db(LiveChatChannel.objects.filter(pk=chat.channel.pk).update)(
        prechat_name="optional", prechat_email="required"
    )
    communicator, welcome = await visitor(chat.channel.key)
    assert welcome["prechat"] == {"name": "optional", "email": "required", "needed": True}
    refused = await say(communicator, "hi")
    assert refused["code"] == "prechat_required"
    await communicator.send_json_to({"type": "prechat", "name": "Jane", "email": "not an email"})
    assert (await communicator.receive_json_from(timeout=5))["code"] == "invalid_email"
    await communicator.send_json_to({"type": "prechat", "name": "Jane\u202e", "email": "jane@example.org"})
    token = await communicator.receive_json_from(timeout=5)
    assert token["type"] == "token" and token["prechat_needed"] is False
    assert (await say(communicator, "hi"))["type"] == "ack"
    message = await db(Message.objects.get)(text="hi")
    assert message.sender_name == "Jane (jane@example.org, unverified)"
    await communicator.disconnect()
    # The new token remembers the answers.
    again, resumed = await visitor(chat.channel.key, token=token["token"])
    assert resumed["prechat"]["needed"] is False
    await again.disconnect()


async def test_offline_form_stores_a_message_with_the_address(chat: Chat) -> None:
    communicator, welcome = await visitor(chat.channel.key)
    assert welcome["online"] is False and welcome["offline_form"] is True
    await communicator.send_json_to({"type": "offline", "id": new_id(), "email": "x", "text": "call me"})
    assert (await communicator.receive_json_from(timeout=5))["code"] == "invalid_email"
    await communicator.send_json_to(
        {"type": "offline", "id": new_id(), "email": "omar@example.org", "text": "call me"}
    )
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != "ack":
        pass
    message = await db(Message.objects.get)(pk=frame["message"]["id"])
    assert message.text.startswith("Offline message. Reply to omar@example.org (given by the visitor")
    assert message.text.endswith("call me")


async def test_agent_presence_makes_the_chat_online(chat: Chat) -> None:
    agent, _, _ = await agent_socket(chat.agent)
    await agent.send_json_to({"type": "presence", "status": "online"})
    await asyncio.sleep(0.3)
    communicator, welcome = await visitor(chat.channel.key)
    assert welcome["online"] is True
    await agent.send_json_to({"type": "presence", "status": "away"})
    await asyncio.sleep(0.3)
    later, welcome = await visitor(chat.channel.key)
    assert welcome["online"] is False
    for socket in (agent, communicator, later):
        await socket.disconnect()


async def test_visitor_typing_reaches_agents_of_the_inbox(chat: Chat) -> None:
    agent, _, _ = await agent_socket(chat.agent)
    communicator, _ = await visitor(chat.channel.key)
    ack = await say(communicator, "hello")
    created = await next_event(agent)
    await communicator.send_json_to({"type": "typing"})
    typing = await next_event(agent)
    assert typing["event"] == "typing" and typing["visitor"] is True
    assert typing["conversation_id"] == created["conversation_id"]
    assert ack["message"]["id"] == created["message_id"]


async def test_frames_before_hello_and_unknown_frames_are_errors(chat: Chat) -> None:
    communicator, _ = await visitor_socket(chat.channel.key)
    await communicator.send_json_to({"type": "message", "id": new_id(), "text": "sneaky"})
    assert (await communicator.receive_json_from(timeout=5))["code"] == "hello_first"
    await communicator.send_to(text_data="not json")
    assert (await communicator.receive_json_from(timeout=5))["code"] == "invalid"
    await communicator.send_json_to({"type": "hello"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "welcome"
    await communicator.send_json_to({"type": "bogus"})
    assert (await communicator.receive_json_from(timeout=5))["code"] == "invalid"
    for bad in (
        {"type": "message", "id": "short", "text": "x"},
        {"type": "message", "id": new_id(), "text": " "},
    ):
        await communicator.send_json_to(bad)
        assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    assert await db(Message.objects.count)() == 0
    await communicator.disconnect()


async def test_origin_is_checked_against_the_normalised_allowlist(chat: Chat) -> None:
    channel = await db(LiveChatChannel.objects.get)(pk=chat.channel.pk)
    channel.allowed_origins = "HTTPS://Shop.Example:443\nhttp://127.0.0.1:8001/"
    await db(channel.full_clean)()
    await db(channel.save)()
    assert channel.allowed_origins == "https://shop.example\nhttp://127.0.0.1:8001"
    for origin, allowed in (
        ("https://shop.example", True),
        ("http://127.0.0.1:8001", True),
        ("https://shop.example:8443", False),
        ("https://evil.shop.example", False),
        (SHOP, False),
    ):
        communicator, connected = await visitor_socket(chat.channel.key, origin=origin)
        assert connected is allowed, origin
        if connected:
            await communicator.disconnect()


async def test_a_socket_that_never_says_hello_is_closed(chat: Chat, monkeypatch: Any) -> None:
    from channels_app.livechat import consumers

    monkeypatch.setattr(consumers, "HELLO_TIMEOUT_SECONDS", 0.3)
    communicator, connected = await visitor_socket(chat.channel.key)
    assert connected
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4408}
