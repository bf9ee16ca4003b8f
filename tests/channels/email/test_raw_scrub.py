"""A mail's raw copy (`InboundEmail.raw`, and the row's subject) after its message was
stored with a card redacted: scrubbed the same way in the subject and in every text part,
however transfer-encoded, against a real IMAP server (Dovecot)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from email import message_from_bytes, policy

import pytest

from channels_app.common.inbound import RAW_SCRUBBED_NOTE
from channels_app.email import services
from channels_app.models import EmailChannel, InboundEmail
from inbox.models import DlpRule, Message
from tests.channels.conftest import MailAccount, mail

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"
MASKED = "4111 11•• •••• 1111"


@pytest.fixture
def enforced() -> DlpRule:
    rule = DlpRule.objects.get(name="Card numbers in customer messages")  # seeded in monitor mode
    rule.mode = DlpRule.Mode.ENFORCE
    rule.save()
    return rule


def card_mail() -> bytes:
    """The body base64-encoded, as many clients send UTF-8: no digit of it is visible in the
    bytes, so a scrub that does not decode the parts would miss it."""
    body = base64.encodebytes(f"Hallo, meine Karte: {CARD}. Grüße".encode()).decode()
    lines = [
        "From: Ada <ada@example.org>",
        "To: support@example.com",
        f"Subject: Card {CARD} charged twice",
        "Message-ID: <card-1@example.org>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/alternative; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        body,
        "--b",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        f"<p>Meine Karte: <b>{CARD}</b>. Gr=C3=BC=C3=9Fe</p>",
        "--b--",
        "",
    ]
    return "\r\n".join(lines).encode()


def every_text(raw: bytes) -> str:
    """The subject and each decoded text part: what a reader of the raw copy would get."""
    parsed = message_from_bytes(raw, policy=policy.default)
    parts = [str(parsed["Subject"])]
    parts += [part.get_content() for part in parsed.walk() if part.get_content_maintype() == "text"]
    return "\n".join(parts)


def test_a_redacted_mail_is_scrubbed_in_its_raw_copy(
    enforced: DlpRule, mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    mail_account.append(card_mail())
    assert services.email_channel_poll(channel_id=channel.pk).imported == 1
    row = InboundEmail.objects.get()
    text = every_text(bytes(row.raw))
    assert f"Card {MASKED} charged twice" in text and f"Karte: {MASKED}. Grüße" in text
    assert f"<b>{MASKED}</b>" in text
    card = CARD.replace(" ", "")
    assert card not in re.sub(r"[^0-9]", "", text)
    assert card.encode() not in re.sub(rb"[^0-9]", b"", bytes(row.raw))
    assert row.subject == f"Card {MASKED} charged twice"
    assert row.status == InboundEmail.Status.IMPORTED and RAW_SCRUBBED_NOTE in row.reason
    assert MASKED in Message.objects.get().text
    # The scrubbed copy is still a mail the parser reads (a retry, an export for a case).
    assert message_from_bytes(bytes(row.raw), policy=policy.default)["Message-ID"] == "<card-1@example.org>"


def test_a_mail_without_a_card_keeps_its_bytes(
    enforced: DlpRule, mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    mail_account.append(raw := mail(subject="Order 2024-118734 never arrived"))
    services.email_channel_poll(channel_id=channel.pk)
    row = InboundEmail.objects.get()
    assert bytes(row.raw) == raw and RAW_SCRUBBED_NOTE not in row.reason
