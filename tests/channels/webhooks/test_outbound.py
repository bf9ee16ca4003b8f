"""Replies out through each provider's HTTP API: shapes, refusals, retries, statuses.

The task bodies are called directly here; test_flow.py runs them on a Celery worker."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from channels_app.common import outbound
from channels_app.common.provider_http import ProviderError
from channels_app.models import InboundEvent, MetaChannel, TelegramChannel, TwilioChannel
from channels_app.webhooks import selectors as social_selectors
from channels_app.webhooks import services as social_services
from channels_app.webhooks.providers.meta import selectors as meta_selectors
from inbox.models import (
    ChannelKind,
    Contact,
    ContactIdentity,
    Conversation,
    Inbox,
    InboxUserObjectPermission,
    Message,
)
from inbox.services import conversation_reply
from tests.channels.webhooks.conftest import (
    ACCESS_TOKEN,
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_TOKEN,
    PHONE,
    PUBLIC_BASE,
    drain,
    meta_post,
    twilio_post,
    whatsapp_status,
)
from tests.inbox.conftest import ctx, grant_inbox

pytestmark = pytest.mark.django_db


def conversation_with(
    inbox: Inbox, handle: str, *, last_inbound_ago: timedelta = timedelta(minutes=5)
) -> Conversation:
    contact = Contact.objects.create(name="Customer")
    ContactIdentity.objects.create(
        contact=contact, channel_kind=social_selectors.handle_kind(inbox.channel_kind), handle=handle
    )
    conversation = Conversation.objects.create(inbox=inbox, contact=contact, last_activity_at=timezone.now())
    message = Message.objects.create(
        conversation=conversation,
        inbox=inbox,
        direction=Message.Direction.INBOUND,
        text="Hello?",
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - last_inbound_ago)
    return conversation


@pytest.fixture
def agent(make_user: Callable[..., Any]) -> Callable[[Inbox], Any]:
    def make(inbox: Inbox) -> Any:
        user = make_user("Agent")
        grant_inbox(inbox, user)
        return user

    return make


def reply(conversation: Conversation, user: Any, text: str = "We are on it.") -> Message:
    return conversation_reply(ctx=ctx(user), conversation=conversation, text=text)


def test_whatsapp_reply_is_sent_and_its_statuses_follow(
    client: Client,
    meta_channel: Callable[..., MetaChannel],
    httpserver: HTTPServer,
    agent: Callable[[Inbox], Any],
) -> None:
    channel = meta_channel()
    conversation = conversation_with(channel.inbox, "15551234567")
    message = reply(conversation, agent(channel.inbox))
    httpserver.expect_oneshot_request(
        f"/{channel.account_id}/messages",
        method="POST",
        headers={"Authorization": f"Bearer {ACCESS_TOKEN}"},
        json={
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "15551234567",
            "type": "text",
            "text": {"preview_url": False, "body": "We are on it."},
        },
    ).respond_with_json(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "15551234567", "wa_id": "15551234567"}],
            "messages": [{"id": "wamid.OUT1"}],
        }
    )
    outbound.reply_deliver(message.pk)
    httpserver.check_assertions()
    message.refresh_from_db()
    assert (
        message.delivery_status == Message.DeliveryStatus.SENT and message.provider_message_id == "wamid.OUT1"
    )
    # A second run of the task does not send again.
    outbound.reply_deliver(message.pk)
    assert len(httpserver.log) == 1

    for status in ("delivered", "read", "delivered"):  # the last one arrives late: ignored
        meta_post(client, channel, whatsapp_status(channel, wamid="wamid.OUT1", status=status))
    drain(channel)
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.READ


def test_whatsapp_failed_status_is_shown_with_its_reason(
    client: Client, meta_channel: Callable[..., MetaChannel], agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    conversation = conversation_with(channel.inbox, "15551234567")
    message = reply(conversation, agent(channel.inbox))
    Message.objects.filter(pk=message.pk).update(
        delivery_status=Message.DeliveryStatus.SENT, provider_message_id="wamid.F"
    )
    meta_post(
        client,
        channel,
        whatsapp_status(
            channel,
            wamid="wamid.F",
            status="failed",
            errors=[{"code": 131026, "title": "Message undeliverable"}],
        ),
    )
    drain(channel)
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.FAILED
    assert message.delivery_detail == "131026: Message undeliverable"


def test_status_for_a_reply_not_yet_committed_waits(
    client: Client, meta_channel: Callable[..., MetaChannel], agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    conversation = conversation_with(channel.inbox, "15551234567")
    message = reply(conversation, agent(channel.inbox))
    meta_post(client, channel, whatsapp_status(channel, wamid="wamid.LATE", status="delivered"))
    assert drain(channel) == 0
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.RECEIVED and event.next_attempt_at is not None
    # The send commits; the retry finds it.
    Message.objects.filter(pk=message.pk).update(
        delivery_status=Message.DeliveryStatus.SENT, provider_message_id="wamid.LATE"
    )
    assert drain(channel, now=event.next_attempt_at) == 1
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.DELIVERED


def _whatsapp_status(client: Client, channel: Any, provider_id: str) -> None:
    meta_post(client, channel, whatsapp_status(channel, wamid=provider_id, status="delivered"))


def _messenger_delivery(client: Client, channel: Any, provider_id: str) -> None:
    now_ms = int(time.time() * 1000)
    event = {
        "sender": {"id": "6789012345"},
        "recipient": {"id": channel.account_id},
        "timestamp": now_ms,
        "delivery": {"mids": [provider_id], "watermark": now_ms},
    }
    meta_post(
        client, channel, {"object": "page", "entry": [{"id": channel.account_id, "messaging": [event]}]}
    )


def _twilio_status(client: Client, channel: Any, provider_id: str) -> None:
    params = {"MessageSid": provider_id, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
    twilio_post(client, channel, "sms-status", params)


STATUS_CALLBACKS = {
    "whatsapp": (lambda fixtures: fixtures.meta_channel(), _whatsapp_status),
    "messenger": (lambda fixtures: fixtures.meta_channel(ChannelKind.MESSENGER), _messenger_delivery),
    "twilio": (lambda fixtures: fixtures.twilio_channel(), _twilio_status),
}


@pytest.fixture(params=sorted(STATUS_CALLBACKS))
def status_callback(request: pytest.FixtureRequest) -> tuple[Any, Callable[[Client, Any, str], None]]:
    """A channel of the provider, and how its provider reports a message delivered."""
    make_channel, post = STATUS_CALLBACKS[request.param]
    fixtures = SimpleNamespace(
        meta_channel=request.getfixturevalue("meta_channel"),
        twilio_channel=request.getfixturevalue("twilio_channel"),
    )
    return make_channel(fixtures), post


def drain_when_due(channel: Any, times: int = 1) -> InboundEvent:
    """Drain the channel `times` times, each when its one event is due (again)."""
    for _ in range(times):
        drain(channel, now=InboundEvent.objects.get().next_attempt_at)
    return InboundEvent.objects.get()


def test_status_for_a_message_we_never_sent_is_ignored_after_bounded_tries(
    client: Client, status_callback: tuple[Any, Callable[[Client, Any, str], None]]
) -> None:
    channel, post = status_callback
    post(client, channel, "never-sent-1")
    tries = social_services.UNKNOWN_STATUS_TRIES
    waiting = drain_when_due(channel, tries - 1)
    assert waiting.status == InboundEvent.Status.RECEIVED and waiting.next_attempt_at is not None
    assert f"try {tries - 1} of {tries}" in waiting.reason
    ignored = drain_when_due(channel)
    assert ignored.status == InboundEvent.Status.IGNORED and ignored.attempts == tries
    assert ignored.next_attempt_at is None and ignored.processed_at is not None
    assert ignored.reason.startswith("Ignored: a delivered status for a message we never sent")
    assert f"after {tries} tries" in ignored.reason and "'never-sent-1'" in ignored.reason
    # Settled: nothing is due any more, however late the next drain.
    assert drain(channel, now=timezone.now() + timedelta(days=1)) == 0


def test_status_whose_reply_commits_on_the_last_try_still_applies(
    client: Client, meta_channel: Callable[..., MetaChannel], agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    message = reply(conversation_with(channel.inbox, "15551234567"), agent(channel.inbox))
    _whatsapp_status(client, channel, "wamid.SLOW")
    waiting = drain_when_due(channel, social_services.UNKNOWN_STATUS_TRIES - 1)
    Message.objects.filter(pk=message.pk).update(
        delivery_status=Message.DeliveryStatus.SENT, provider_message_id="wamid.SLOW"
    )
    assert drain(channel, now=waiting.next_attempt_at) == 1
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.DELIVERED


def test_whatsapp_window_closed_refuses_free_form_replies(
    meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    conversation = conversation_with(channel.inbox, "15551234567", last_inbound_ago=timedelta(hours=25))
    assert not meta_selectors.whatsapp_window_open(conversation)
    closes_at = meta_selectors.whatsapp_window_closes_at(conversation)
    assert closes_at is not None and closes_at < timezone.now()
    message = reply(conversation, agent(channel.inbox))
    outbound.reply_deliver(message.pk)
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.FAILED
    assert (
        "24-hour customer service window" in message.delivery_detail and "template" in message.delivery_detail
    )
    assert not httpserver.log

    fresh = conversation_with(channel.inbox, "15559999999", last_inbound_ago=timedelta(hours=23))
    assert meta_selectors.whatsapp_window_open(fresh)
    assert not meta_selectors.whatsapp_window_open(fresh, now=timezone.now() + timedelta(hours=2))


def test_window_does_not_apply_to_other_channels(meta_channel: Callable[..., MetaChannel]) -> None:
    channel = meta_channel(ChannelKind.MESSENGER)
    conversation = conversation_with(channel.inbox, "6789", last_inbound_ago=timedelta(days=3))
    assert meta_selectors.whatsapp_window_open(conversation)


@pytest.mark.parametrize("kind", [ChannelKind.MESSENGER, ChannelKind.INSTAGRAM])
def test_messenger_and_instagram_send_shape(
    meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any], kind: str
) -> None:
    channel = meta_channel(kind)
    conversation = conversation_with(channel.inbox, "6789012345")
    message = reply(conversation, agent(channel.inbox), "Merci")
    httpserver.expect_oneshot_request(
        f"/{channel.account_id}/messages",
        method="POST",
        json={"recipient": {"id": "6789012345"}, "messaging_type": "RESPONSE", "message": {"text": "Merci"}},
    ).respond_with_json({"recipient_id": "6789012345", "message_id": "m_out"})
    outbound.reply_deliver(message.pk)
    httpserver.check_assertions()
    message.refresh_from_db()
    assert (message.delivery_status, message.provider_message_id) == (Message.DeliveryStatus.SENT, "m_out")


def test_telegram_send(
    telegram_channel: Callable[..., TelegramChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = telegram_channel()
    conversation = conversation_with(channel.inbox, "4242")
    message = reply(conversation, agent(channel.inbox), "Hello from support")
    httpserver.expect_oneshot_request(
        f"/bot{BOT_TOKEN}/sendMessage", method="POST", json={"chat_id": "4242", "text": "Hello from support"}
    ).respond_with_json(
        {
            "ok": True,
            "result": {"message_id": 77, "chat": {"id": 4242}, "date": 0, "text": "Hello from support"},
        }
    )
    outbound.reply_deliver(message.pk)
    httpserver.check_assertions()
    message.refresh_from_db()
    assert (message.delivery_status, message.provider_message_id) == (Message.DeliveryStatus.SENT, "4242:77")


def test_telegram_throttle_is_transient_with_its_wait(
    telegram_channel: Callable[..., TelegramChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = telegram_channel()
    message = reply(conversation_with(channel.inbox, "4242"), agent(channel.inbox))
    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendMessage").respond_with_json(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        },
        status=429,
    )
    with pytest.raises(ProviderError) as raised:
        outbound.reply_deliver(message.pk)
    assert raised.value.transient and raised.value.retry_after == 7.0
    assert BOT_TOKEN not in str(raised.value)
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.QUEUED


def test_sms_send_through_twilio(
    twilio_channel: Callable[..., TwilioChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = twilio_channel()
    message = reply(
        conversation_with(channel.inbox, "+15557654321"), agent(channel.inbox), "Your order shipped"
    )
    seen: list[Request] = []

    def created(request: Request) -> Response:
        seen.append(request)
        body = {"sid": "SM" + "a" * 32, "status": "queued", "to": "+15557654321", "from": PHONE}
        return Response(json.dumps(body), status=201, content_type="application/json")

    httpserver.expect_request(
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", method="POST"
    ).respond_with_handler(created)
    outbound.reply_deliver(message.pk)
    [request] = seen
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    )
    form = {key: values[0] for key, values in parse_qs(request.get_data(as_text=True)).items()}
    assert form == {
        "To": "+15557654321",
        "From": PHONE,
        "Body": "Your order shipped",
        "StatusCallback": f"{PUBLIC_BASE}/hooks/twilio/{channel.pk}/sms-status/",
    }
    message.refresh_from_db()
    assert (
        message.delivery_status == Message.DeliveryStatus.SENT
        and message.provider_message_id == "SM" + "a" * 32
    )


def test_permanent_refusal_fails_at_once_with_the_providers_reason(
    meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    message = reply(conversation_with(channel.inbox, "15551234567"), agent(channel.inbox))
    httpserver.expect_request(f"/{channel.account_id}/messages").respond_with_json(
        {
            "error": {
                "message": "(#100) Invalid parameter",
                "type": "OAuthException",
                "code": 100,
                "fbtrace_id": "x",
            }
        },
        status=400,
    )
    outbound.reply_deliver(message.pk)
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.FAILED
    assert "Invalid parameter" in message.delivery_detail and "code 100" in message.delivery_detail


def test_meta_rate_limit_code_is_transient(
    meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    message = reply(conversation_with(channel.inbox, "15551234567"), agent(channel.inbox))
    httpserver.expect_request(f"/{channel.account_id}/messages").respond_with_json(
        {"error": {"message": "Rate limit hit", "code": 130429}}, status=400
    )
    with pytest.raises(ProviderError) as raised:
        outbound.reply_deliver(message.pk)
    assert raised.value.transient


def test_reply_refused_when_the_author_lost_access(
    meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    user = agent(channel.inbox)
    message = reply(conversation_with(channel.inbox, "15551234567"), user)
    InboxUserObjectPermission.objects.filter(user=user).delete()
    outbound.reply_deliver(message.pk)
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.FAILED
    assert "may no longer reply" in message.delivery_detail
    assert not httpserver.log


def test_reply_refused_when_too_long_or_channel_disabled(
    meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer, agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel(ChannelKind.INSTAGRAM)
    user = agent(channel.inbox)
    conversation = conversation_with(channel.inbox, "6789")
    long_reply = reply(conversation, user, "x" * 1001)
    outbound.reply_deliver(long_reply.pk)
    long_reply.refresh_from_db()
    assert "longer than the 1000 characters" in long_reply.delivery_detail
    MetaChannel.objects.filter(pk=channel.pk).update(enabled=False)
    other = reply(conversation, user, "short")
    outbound.reply_deliver(other.pk)
    other.refresh_from_db()
    assert other.delivery_status == Message.DeliveryStatus.FAILED and "disabled" in other.delivery_detail
    assert not httpserver.log


def test_give_up_and_retry_note(
    meta_channel: Callable[..., MetaChannel], agent: Callable[[Inbox], Any]
) -> None:
    channel = meta_channel()
    message = reply(conversation_with(channel.inbox, "15551234567"), agent(channel.inbox))
    outbound.reply_retry_note(message_id=message.pk, attempt=2, reason="the provider did not answer in time")
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.QUEUED
    assert message.delivery_detail == "Retrying (attempt 2): the provider did not answer in time"
    outbound.reply_give_up(message_id=message.pk, reason="the provider did not answer in time")
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.FAILED
    assert message.delivery_detail.startswith("Gave up after retries")
    assert message.text == "We are on it."


def test_messenger_read_watermark_marks_every_earlier_reply_read(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel(ChannelKind.MESSENGER)
    conversation = conversation_with(channel.inbox, "6789012345")
    replies = [
        Message.objects.create(
            conversation=conversation,
            inbox=channel.inbox,
            direction=Message.Direction.OUTBOUND,
            text=f"Reply {n}",
            provider_message_id=f"m_out{n}",
            delivery_status=status,
        )
        for n, status in enumerate([Message.DeliveryStatus.SENT, Message.DeliveryStatus.DELIVERED])
    ]
    watermark = int(timezone.now().timestamp() * 1000) + 1000
    meta_post(
        client,
        channel,
        {
            "object": "page",
            "entry": [
                {
                    "id": channel.account_id,
                    "messaging": [
                        {
                            "sender": {"id": "6789012345"},
                            "recipient": {"id": channel.account_id},
                            "read": {"watermark": watermark},
                        }
                    ],
                }
            ],
        },
    )
    drain(channel)
    assert {m.delivery_status for m in Message.objects.filter(pk__in=[r.pk for r in replies])} == {
        Message.DeliveryStatus.READ
    }
