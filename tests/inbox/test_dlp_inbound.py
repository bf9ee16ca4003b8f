"""Inbound redaction at ingest: card numbers in customer messages, on every channel (all
store through `inbound_message_record`), keep their first six and last four digits; the
original is never written to the message, its HTML or the conversation's subject."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client

from channels_app.models import TelegramChannel
from inbox.models import ChannelKind, DlpFinding, DlpRule, Inbox, Message, Module
from inbox.services import InboundMessage, inbound_message_record
from tests.channels.webhooks.conftest import (  # noqa: F401  # fixtures used by name
    drain,
    httpserver_listen_address,
    social_settings,
    telegram_channel,
    telegram_post,
    telegram_update,
)

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"
MASKED = "4111 11•• •••• 1111"
RULE = "Card numbers in customer messages"


@pytest.fixture
def enforced() -> DlpRule:
    rule = DlpRule.objects.get(name=RULE)  # seeded in monitor mode
    rule.mode = DlpRule.Mode.ENFORCE
    rule.save()
    return rule


def receive(kind: str, text: str, *, html: str = "", subject: str = "") -> Message:
    inbox = Inbox.objects.create(name=f"{kind} inbox", channel_kind=kind, module=Module.SUPPORT)
    inbound = InboundMessage(
        inbox=inbox,
        channel_kind=kind,
        handle=f"{kind}-customer",
        sender_name="Ada",
        text=text,
        html=html,
        subject=subject,
    )
    return inbound_message_record(inbound).message


def stored_anywhere(digits: str) -> bool:
    """Whether the digits are in any message, conversation or finding row, however spaced."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM inbox_message m JOIN inbox_conversation c ON c.id = m.conversation_id "
            "WHERE regexp_replace(m.text || m.html || c.subject, '[^0-9]', '', 'g') LIKE %s",
            [f"%{digits}%"],
        )
        in_messages = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM inbox_dlpfinding WHERE masked_excerpt LIKE %s", [f"%{digits}%"])
        return bool(in_messages or cursor.fetchone()[0])


@pytest.mark.parametrize("kind", ChannelKind.values)
def test_a_card_is_redacted_at_ingest_on_every_channel(kind: str, enforced: DlpRule) -> None:
    message = receive(
        kind,
        f"My card is {CARD}, expiry 12/29.",
        html=f"<p>My card is <b>{CARD}</b></p>",
        subject=f"Card {CARD} charged twice",
    )
    message.refresh_from_db()
    assert message.text == f"My card is {MASKED}, expiry 12/29."
    assert MASKED in message.html and MASKED in message.conversation.subject
    assert not stored_anywhere(CARD.replace(" ", ""))
    [finding] = DlpFinding.objects.filter(message=message)
    assert (finding.outcome, finding.masked_excerpt, finding.user) == ("redacted", MASKED, None)


def test_in_monitor_mode_the_card_is_kept_and_the_finding_recorded() -> None:
    message = receive(ChannelKind.EMAIL, f"Card {CARD}")
    assert message.text == f"Card {CARD}"
    assert DlpFinding.objects.get(message=message).outcome == "monitored"


def test_what_a_customer_quotes_is_redacted_too(enforced: DlpRule) -> None:
    message = receive(ChannelKind.EMAIL, f"See below.\n> card {CARD}\n")
    assert MASKED in message.text and CARD not in message.text


def test_order_numbers_and_clean_messages_are_left_alone(enforced: DlpRule) -> None:
    message = receive(ChannelKind.SMS, "Order 2024-118734 never arrived, tracking 1Z999AA10123456784")
    assert message.text == "Order 2024-118734 never arrived, tracking 1Z999AA10123456784"
    assert not DlpFinding.objects.exists()


def test_redaction_rules_never_hold_an_agents_reply(enforced: DlpRule) -> None:
    from inbox.dlp import Target, selectors

    assert enforced not in selectors.rules_for(inbox_id=0, target=Target.REPLY)
    assert selectors.rules_for(inbox_id=0, target=Target.INBOUND) == [enforced]


def test_a_card_sent_through_a_telegram_webhook_is_stored_redacted(
    enforced: DlpRule,
    client: Client,
    telegram_channel: Callable[..., TelegramChannel],  # noqa: F811  # the imported fixture, by name
) -> None:
    channel = telegram_channel()
    response = telegram_post(client, channel, telegram_update(7001, text=f"pay with {CARD} please"))
    assert response.status_code == 200
    drain(channel)
    message = Message.objects.get(inbox=channel.inbox)
    assert message.text == f"pay with {MASKED} please"
    assert not stored_anywhere(CARD.replace(" ", ""))
