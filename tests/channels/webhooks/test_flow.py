"""End to end on a real Celery worker (Redis broker, PostgreSQL): a signed delivery in,
an agent's reply out to the provider's API server, its statuses back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from channels_app.common.tasks import SEND_MAX_RETRIES
from channels_app.models import InboundEvent, MetaChannel
from channels_app.webhooks import services as social_services
from inbox.models import Conversation, Inbox, Message
from inbox.services import conversation_reply
from tests.channels.conftest import wait_for
from tests.channels.webhooks.conftest import meta_post, whatsapp_status, whatsapp_text
from tests.inbox.conftest import ctx, grant_inbox

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker", "role_groups"),
]


def sent_messages(server: HTTPServer) -> int:
    return sum(1 for request, response in server.log if response.status_code == 200)


@pytest.fixture
def conversation(
    client: Client, meta_channel: Callable[..., MetaChannel], make_user: Callable[..., Any]
) -> tuple[MetaChannel, Conversation, Any]:
    channel = meta_channel()
    agent = make_user("Agent")
    grant_inbox(channel.inbox, agent)
    assert (
        meta_post(
            client, channel, whatsapp_text(channel, wamid="wamid.FLOW1", text="Is it shipped?")
        ).status_code
        == 200
    )
    found = wait_for(lambda: Conversation.objects.filter(inbox=channel.inbox).first())
    return channel, found, agent


def test_delivery_in_reply_out_statuses_back(
    client: Client, conversation: tuple[MetaChannel, Conversation, Any], httpserver: HTTPServer
) -> None:
    channel, found, agent = conversation
    assert found.messages.get().text == "Is it shipped?"
    wait_for(lambda: InboundEvent.objects.filter(status=InboundEvent.Status.PROCESSED).exists())

    httpserver.expect_request(f"/{channel.account_id}/messages", method="POST").respond_with_json(
        {"messaging_product": "whatsapp", "messages": [{"id": "wamid.FLOWOUT"}]}
    )
    message = conversation_reply(ctx=ctx(agent), conversation=found, text="Yes, this morning.")
    wait_for(
        lambda: Message.objects.filter(pk=message.pk, delivery_status=Message.DeliveryStatus.SENT).exists()
    )
    assert Message.objects.get(pk=message.pk).provider_message_id == "wamid.FLOWOUT"
    assert sent_messages(httpserver) == 1

    meta_post(client, channel, whatsapp_status(channel, wamid="wamid.FLOWOUT", status="delivered"))
    wait_for(
        lambda: Message.objects.filter(
            pk=message.pk, delivery_status=Message.DeliveryStatus.DELIVERED
        ).exists()
    )
    meta_post(client, channel, whatsapp_status(channel, wamid="wamid.FLOWOUT", status="read"))
    wait_for(
        lambda: Message.objects.filter(pk=message.pk, delivery_status=Message.DeliveryStatus.READ).exists()
    )


def test_provider_down_is_retried_shown_and_nothing_lost(
    conversation: tuple[MetaChannel, Conversation, Any], httpserver: HTTPServer
) -> None:
    channel, found, agent = conversation
    seen_retrying = threading.Event()
    attempts: list[int] = []

    def flaky(request: Request) -> Response:
        attempts.append(1)
        if len(attempts) == 1:
            return Response("Service Unavailable", status=503)
        # The second try waits until the test has seen the retry shown in the conversation.
        seen_retrying.wait(timeout=20)
        return Response('{"messages": [{"id": "wamid.AFTERDOWN"}]}', content_type="application/json")

    httpserver.expect_request(f"/{channel.account_id}/messages", method="POST").respond_with_handler(flaky)
    message = conversation_reply(ctx=ctx(agent), conversation=found, text="Checking…")
    shown = wait_for(
        lambda: Message.objects.filter(
            pk=message.pk, delivery_detail__startswith="Retrying (attempt 1)"
        ).first()
    )
    assert shown.delivery_status == Message.DeliveryStatus.QUEUED and "HTTP 503" in shown.delivery_detail
    seen_retrying.set()
    wait_for(
        lambda: Message.objects.filter(pk=message.pk, delivery_status=Message.DeliveryStatus.SENT).exists()
    )
    sent = Message.objects.get(pk=message.pk)
    assert sent.provider_message_id == "wamid.AFTERDOWN" and sent.delivery_detail == ""
    assert len(attempts) == 2


def test_provider_down_for_good_ends_failed_with_the_reason(
    conversation: tuple[MetaChannel, Conversation, Any], httpserver: HTTPServer
) -> None:
    channel, found, agent = conversation
    httpserver.expect_request(f"/{channel.account_id}/messages", method="POST").respond_with_data(
        "down", status=502
    )
    message = conversation_reply(ctx=ctx(agent), conversation=found, text="Hello?")
    failed = wait_for(
        lambda: Message.objects.filter(pk=message.pk, delivery_status=Message.DeliveryStatus.FAILED).first(),
        timeout=60,
    )
    assert failed.delivery_detail.startswith("Gave up after retries") and "HTTP 502" in failed.delivery_detail
    assert failed.text == "Hello?"
    assert len(httpserver.log) == SEND_MAX_RETRIES + 1


def test_segment_isolation_end_to_end(client: Client, meta_channel: Callable[..., MetaChannel]) -> None:
    support, sales = meta_channel(), meta_channel()
    meta_post(client, support, whatsapp_text(support, wamid="wamid.SEG1", sender="15550000001"))
    meta_post(client, sales, whatsapp_text(sales, wamid="wamid.SEG2", sender="15550000001"))
    wait_for(lambda: Message.objects.count() == 2)
    for channel, wamid in ((support, "wamid.SEG1"), (sales, "wamid.SEG2")):
        inbox: Inbox = channel.inbox
        assert list(Message.objects.filter(inbox=inbox).values_list("provider_message_id", flat=True)) == [
            wamid
        ]
        assert Conversation.objects.filter(inbox=inbox).count() == 1


def test_a_channel_drained_a_moment_ago_is_drained_after_the_interval_with_all_that_came_since(
    client: Client, meta_channel: Callable[..., MetaChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Longer than the five deliveries take, on a slow machine too (the test's worker runs in
    # this process: it reads the patched constant).
    monkeypatch.setattr(social_services, "DRAIN_INTERVAL_SECONDS", 1.0)
    channel = meta_channel()
    events = InboundEvent.objects.filter(channel=channel)
    processed = events.filter(status=InboundEvent.Status.PROCESSED)
    assert meta_post(client, channel, whatsapp_text(channel, wamid="wamid.PACE0")).status_code == 200
    first = wait_for(processed.first)
    for index in range(1, 6):
        assert (
            meta_post(client, channel, whatsapp_text(channel, wamid=f"wamid.PACE{index}")).status_code == 200
        )
    wait_for(lambda: processed.count() == 6)
    later = set(events.exclude(pk=first.pk).values_list("processed_at", flat=True))
    assert len(later) == 1  # one drain took the five
    # Started a second after the first drain began (less the moment that one took to look).
    assert later.pop() - first.processed_at >= timedelta(seconds=0.9)
    assert Message.objects.filter(conversation__inbox=channel.inbox).count() == 6
