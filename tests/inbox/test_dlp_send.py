"""Outbound DLP in the one send pipeline: what leaves is checked again against the rules in
force at the send, so a rule enforced (or a text changed) after queueing still stops it.
The provider is a local HTTP server speaking the WhatsApp Cloud API."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from pytest_httpserver import HTTPServer

from channels_app.common import outbound
from channels_app.models import MetaChannel
from inbox.models import Contact, ContactIdentity, Conversation, DlpFinding, DlpRule, Message
from inbox.services import conversation_reply
from tests.channels.webhooks.conftest import (  # noqa: F401  # fixtures used by name
    httpserver_listen_address,
    meta_channel,
    social_settings,
)
from tests.inbox.conftest import Segments, ctx, grant_inbox

pytestmark = pytest.mark.django_db

WHATSAPP = "https://wa.me/4915123456789"
CARD = "4111 1111 1111 1111"


def whatsapp_conversation(channel: MetaChannel) -> Conversation:
    contact = Contact.objects.create(name="Customer")
    ContactIdentity.objects.create(contact=contact, channel_kind="whatsapp", handle="15551234567")
    conversation = Conversation.objects.create(
        inbox=channel.inbox, contact=contact, last_activity_at=timezone.now()
    )
    Message.objects.create(
        conversation=conversation,
        inbox=channel.inbox,
        direction=Message.Direction.INBOUND,
        text="Hello?",
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    return conversation


@pytest.fixture
def setup(
    meta_channel: Callable[..., MetaChannel],  # noqa: F811  # the imported fixture, by name
    make_user: Callable[..., Any],
    settings: Any,
) -> tuple[Conversation, Any]:
    # The provider's stand-in lives on loopback (social_settings allows its port).
    settings.CHANNEL_ALLOW_PRIVATE_HOSTS = ["127.0.0.1/32"]
    channel = meta_channel()
    agent = make_user("Agent")
    grant_inbox(channel.inbox, agent)
    return whatsapp_conversation(channel), agent


def provider_accepts(httpserver: HTTPServer) -> None:
    httpserver.expect_request(re.compile(r"/\d+/messages"), method="POST").respond_with_json(
        {"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT"}]}
    )


def test_a_rule_enforced_after_queueing_stops_the_send(
    setup: tuple[Conversation, Any], httpserver: HTTPServer
) -> None:
    conversation, agent = setup
    # Queued while the seeded shadow-channel rule is still in monitor mode.
    message = conversation_reply(ctx=ctx(agent), conversation=conversation, text=f"Chat with us: {WHATSAPP}")
    assert [f.outcome for f in message.dlp_findings.all()] == ["monitored"]
    DlpRule.objects.filter(name="Shadow-channel invitations").update(action="block", mode="enforce")

    outbound.reply_deliver(message.pk)

    assert httpserver.log == []  # nothing reached the provider
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.FAILED
    assert "wa.me/49•••••••••89" in message.delivery_detail and WHATSAPP not in message.delivery_detail
    assert list(message.dlp_findings.values_list("outcome", flat=True).order_by("pk")) == [
        "monitored",
        "blocked",
    ]


def test_a_text_changed_after_queueing_is_checked_as_it_leaves(
    setup: tuple[Conversation, Any], httpserver: HTTPServer
) -> None:
    conversation, agent = setup
    message = conversation_reply(ctx=ctx(agent), conversation=conversation, text="We are on it.")
    Message.objects.filter(pk=message.pk).update(text=f"Your card {CARD}")

    outbound.reply_deliver(message.pk)

    assert httpserver.log == []
    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.FAILED
    assert "4111 11•• •••• 1111" in message.delivery_detail


def test_a_justification_given_at_queueing_lets_the_reply_go(
    setup: tuple[Conversation, Any], httpserver: HTTPServer
) -> None:
    conversation, agent = setup
    DlpRule.objects.filter(name="Shadow-channel invitations").update(mode="enforce")
    message = conversation_reply(
        ctx=ctx(agent),
        conversation=conversation,
        text=f"Our business line: {WHATSAPP}",
        justification="Customer asked for the business line.",
    )
    provider_accepts(httpserver)

    outbound.reply_deliver(message.pk)

    message.refresh_from_db()
    assert message.delivery_status == Message.DeliveryStatus.SENT, message.delivery_detail
    assert len(httpserver.log) == 1
    assert DlpFinding.objects.filter(message=message).count() == 1  # the send added no finding


def test_a_whatsapp_link_in_an_api_reply_is_refused_with_its_finding(
    segments: Segments, verified_client: Callable[..., Any]
) -> None:
    DlpRule.objects.filter(name="Shadow-channel invitations").update(action="block", mode="enforce")
    conversation = segments.support_conversations[0]
    response = verified_client(segments.support_agent).post(
        f"/api/v1/conversations/{conversation.pk}/messages/",
        {"text": f"Quicker on WhatsApp: {WHATSAPP}"},
        content_type="application/json",
    )
    assert response.status_code == 400 and response.json()["code"] == "dlp_blocked"
    [finding] = response.json()["findings"]
    assert (finding["kind"], finding["masked"]) == ("messenger_link", "wa.me/49•••••••••89")
    assert not conversation.messages.filter(direction=Message.Direction.OUTBOUND).exists()
