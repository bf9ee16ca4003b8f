"""A webhook delivery's raw copy (`InboundEvent.body`) after its message was stored with a
card redacted: scrubbed the same way (first 6 / last 4) and noted on the row, so the
original is kept nowhere; kept as it came in monitor mode or when nothing was redacted."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest
from django.test import Client

from channels_app.common.inbound import RAW_SCRUBBED_NOTE
from channels_app.models import CallRecord, InboundEvent, TelegramChannel, TwilioChannel
from inbox.models import ChannelKind, DlpRule, Message
from tests.channels.webhooks.conftest import drain, make_inbox, telegram_post, telegram_update, twilio_post
from tests.channels.webhooks.test_twilio import call, sms

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"
MASKED = "4111 11•• •••• 1111"


@pytest.fixture
def enforced() -> DlpRule:
    rule = DlpRule.objects.get(name="Card numbers in customer messages")  # seeded in monitor mode
    rule.mode = DlpRule.Mode.ENFORCE
    rule.save()
    return rule


def digits(data: bytes) -> str:
    return re.sub(rb"[^0-9]", b"", data).decode()


def test_a_twilio_sms_body_is_scrubbed_once_stored(
    enforced: DlpRule, client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    channel = twilio_channel()
    assert twilio_post(client, channel, "sms", sms(Body=f"Card {CARD}, exp 12/29")).status_code == 200
    event = InboundEvent.objects.get()
    assert CARD.replace(" ", "") in digits(bytes(event.body))  # as it came, until processed
    drain(channel)
    event.refresh_from_db()
    fields = dict(parse_qsl(bytes(event.body).decode()))
    assert fields["Body"] == f"Card {MASKED}, exp 12/29"
    assert fields["From"] == sms()["From"] and fields["MessageSid"] == sms()["MessageSid"]
    assert CARD.replace(" ", "") not in digits(bytes(event.body))
    assert event.status == InboundEvent.Status.PROCESSED and RAW_SCRUBBED_NOTE in event.reason
    assert Message.objects.get().text == f"Card {MASKED}, exp 12/29"


def test_a_telegram_update_is_scrubbed_in_every_value(
    enforced: DlpRule, client: Client, telegram_channel: Callable[..., TelegramChannel]
) -> None:
    channel = telegram_channel()
    telegram_post(client, channel, telegram_update(7101, text=f"pay with {CARD} please"))
    drain(channel)
    event = InboundEvent.objects.get()
    update = json.loads(bytes(event.body))
    assert update["message"]["text"] == f"pay with {MASKED} please"
    assert update["update_id"] == 7101 and RAW_SCRUBBED_NOTE in event.reason


def test_in_monitor_mode_and_without_a_card_the_delivery_is_kept_as_it_came(
    client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    channel = twilio_channel()
    twilio_post(client, channel, "sms", sms(Body=f"Card {CARD}"))
    twilio_post(client, channel, "sms", sms(MessageSid="SM" + "2" * 32))
    before = {event.pk: bytes(event.body) for event in InboundEvent.objects.all()}
    drain(channel)
    assert {event.pk: bytes(event.body) for event in InboundEvent.objects.all()} == before
    assert not InboundEvent.objects.filter(reason__contains=RAW_SCRUBBED_NOTE).exists()


def test_a_card_read_into_a_voicemail_transcription_is_redacted(
    enforced: DlpRule, client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    """The transcription arrives after the call's message exists, past the ingest's
    redaction: it is redacted in the call record and in the message all the same."""
    channel = twilio_channel(inbox=make_inbox(ChannelKind.VOICE))
    twilio_post(client, channel, "voice", call(CallStatus="ringing", Direction="inbound"))
    drain(channel)
    spoken = f"my card is {CARD} thanks"
    twilio_post(
        client,
        channel,
        "transcription",
        call(TranscriptionSid="TR1", TranscriptionStatus="completed", TranscriptionText=spoken),
    )
    drain(channel)
    record = CallRecord.objects.get()
    assert record.transcription == f"my card is {MASKED} thanks"
    assert CARD not in Message.objects.get().text and MASKED in Message.objects.get().text
