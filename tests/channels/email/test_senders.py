"""Hostile senders: knowing a Message-ID threads nobody into someone else's conversation,
a forged or ambiguous From is quarantined, a reused Message-ID hides no mail, and replies
go to the conversation's contact only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts import roles
from channels_app.email import parse as email_parse
from channels_app.email import selectors, services
from channels_app.models import EmailChannel, InboundEmail
from inbox.models import ChannelKind, Contact, ContactIdentity, Conversation, Message
from inbox.services import conversation_reply
from tests.channels.conftest import MailAccount, SmtpServer, mail, wait_for
from tests.inbox.conftest import ctx, grant_inbox

VICTIM = "victim@customer.example.org"
ATTACKER = "attacker@evil.example.net"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker", "role_groups")
def test_a_stranger_replying_by_headers_gets_a_conversation_of_their_own(
    mail_account: MailAccount,
    make_channel: Callable[..., EmailChannel],
    smtp_server: SmtpServer,
    make_user: Callable[..., Any],
) -> None:
    channel = make_channel(mail_account)
    agent = make_user(roles.AGENT)
    grant_inbox(channel.inbox, agent)
    victim_id = "<invoice-77@customer.example.org>"
    mail_account.append(mail(sender=f"Victim <{VICTIM}>", subject="Invoice 77", message_id=victim_id))
    services.email_channel_poll(channel_id=channel.pk)
    victims = Conversation.objects.get(inbox=channel.inbox)
    reply = conversation_reply(ctx=ctx(agent), conversation=victims, text="Your invoice is attached.")
    sent = wait_for(lambda: Message.objects.filter(pk=reply.pk, delivery_status="sent").first())
    our_id = sent.provider_message_id

    # The attacker has seen the thread's ids (a forwarded copy, a CC) and threads by them.
    mail_account.append(
        mail(
            sender=f"Accounts <{ATTACKER}>",
            subject="Re: Invoice 77",
            body="Please send the invoice to this address from now on.",
            headers={"In-Reply-To": f"<{our_id}>", "References": f"{victim_id} <{our_id}>"},
        )
    )
    services.email_channel_poll(channel_id=channel.pk)
    assert victims.messages.count() == 2
    strangers = Conversation.objects.exclude(pk=victims.pk).get(inbox=channel.inbox)
    assert strangers.contact.identities.get().handle == ATTACKER
    (note,) = strangers.notes.all()
    assert f"#{victims.pk}" in note.text and ATTACKER in note.text
    assert "not that conversation's contact" in note.text

    # The agent answers the victim's conversation: the victim gets it, not the last sender.
    smtp_server.handler.messages.clear()
    answer = conversation_reply(ctx=ctx(agent), conversation=victims, text="Here it is again.")
    wait_for(lambda: Message.objects.filter(pk=answer.pk, delivery_status="sent").exists())
    assert [captured.rcpt_tos for captured in smtp_server.handler.messages] == [[VICTIM]]

    # The contact's own answer still joins by its headers, and leaves no note.
    mail_account.append(mail(sender=VICTIM, subject="Thanks", headers={"In-Reply-To": f"<{our_id}>"}))
    services.email_channel_poll(channel_id=channel.pk)
    assert victims.messages.count() == 4 and not victims.notes.exists()


@pytest.mark.django_db
def test_replies_go_to_the_contact_even_when_someone_else_wrote_last(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], make_user: Callable[..., Any]
) -> None:
    channel = make_channel(mail_account)
    mail_account.append(mail(sender=VICTIM))
    services.email_channel_poll(channel_id=channel.pk)
    conversation = Conversation.objects.get(inbox=channel.inbox)
    # A stranger's mail inside the thread, as one that joined before senders were checked.
    raw = mail(sender=ATTACKER, subject="Re: Printer on fire")
    InboundEmail.objects.create(
        channel=channel,
        dedup_key=email_parse.dedup_key(raw),
        raw=raw,
        size=len(raw),
        status=InboundEmail.Status.IMPORTED,
        from_address=ATTACKER,
        message=Message.objects.create(
            conversation=conversation,
            inbox=channel.inbox,
            direction=Message.Direction.INBOUND,
            provider_message_id="stranger@evil.example.net",
            delivery_status=Message.DeliveryStatus.RECEIVED,
        ),
    )
    reply = Message.objects.create(
        conversation=conversation,
        inbox=channel.inbox,
        direction=Message.Direction.OUTBOUND,
        sender_user=make_user(roles.AGENT),
        text="Answer",
        delivery_status=Message.DeliveryStatus.QUEUED,
    )
    assert selectors.email_reply_context(reply).recipient == VICTIM
    # A second address of the contact's own is answered where they last wrote from.
    ContactIdentity.objects.create(
        contact=conversation.contact, channel_kind=ChannelKind.EMAIL, handle="v2@example.org"
    )
    mail_account.append(mail(sender="v2@example.org", subject="Re: Printer on fire"))
    services.email_channel_poll(channel_id=channel.pk)
    later = Message.objects.create(
        conversation=conversation,
        inbox=channel.inbox,
        direction=Message.Direction.OUTBOUND,
        text="Second answer",
        delivery_status=Message.DeliveryStatus.QUEUED,
    )
    assert selectors.email_reply_context(later).recipient == "v2@example.org"


FORGED_SENDERS = {
    # Only a display name holds an address; the addr-spec is empty. Old code fell back to
    # the Sender header and took the victim as the sender.
    "display name over an empty address": (f'From: "{VICTIM}" <>\nSender: {VICTIM}\n', "malformed"),
    # One parser reads the victim, another the attacker.
    "unquoted address before the real one": (f"From: {VICTIM} <{ATTACKER}>\n", "malformed"),
    "address followed by an empty one": (f"From: {VICTIM} <>\n", "malformed"),
    "address glued to an angle address": (f'From: "x" <{VICTIM}>@evil.example.net\n', "malformed"),
    # An encoded word decodes to an address: lenient readers take it for the sender.
    "address in an encoded word": (f"From: =?utf-8?q?{VICTIM}?= <{ATTACKER}>\n", "different parsers"),
    "two From headers": (f"From: {VICTIM}\nFrom: {ATTACKER}\n", "2 From headers"),
    "two addresses in From": (f"From: {VICTIM}, {ATTACKER}\n", "not exactly one"),
    "domain literal": ("From: root@[127.0.0.1]\n", "no usable address"),
}


@pytest.mark.django_db
def test_forged_and_ambiguous_senders_are_quarantined_with_the_reason(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    raws = [
        f"{header}Subject: {name}\nMessage-ID: <{n}@forged>\n\nbody\n".replace("\n", "\r\n").encode()
        for n, (name, (header, _)) in enumerate(FORGED_SENDERS.items())
    ]
    uids = mail_account.append(*raws)
    channel = make_channel(mail_account)
    result = services.email_channel_poll(channel_id=channel.pk)
    assert result.quarantined == len(FORGED_SENDERS) and result.imported == 0
    rows = {row.uid: row for row in InboundEmail.objects.filter(channel=channel)}
    for uid, (name, (_, reason)) in zip(uids, FORGED_SENDERS.items(), strict=True):
        assert rows[uid].status == "quarantined" and reason in rows[uid].reason, (name, rows[uid].reason)
    assert not ContactIdentity.objects.filter(handle=VICTIM).exists()
    assert not Message.objects.filter(inbox=channel.inbox).exists()
    # Quarantined is stored and final: the mailbox is told.
    assert all("\\Seen" in mail_account.flags()[uid] for uid in uids)


@pytest.mark.django_db
def test_a_display_name_naming_another_address_is_dropped(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    mail_account.append(
        mail(sender=f'"{VICTIM}" <{ATTACKER}>'),
        mail(sender=f'"{VICTIM}" <{VICTIM.upper()}>', subject="Outlook style"),
    )
    channel = make_channel(mail_account)
    services.email_channel_poll(channel_id=channel.pk)
    messages = Message.objects.filter(inbox=channel.inbox)
    names = dict(messages.values_list("conversation__subject", "sender_name"))
    # The attacker is the sender, under their own address: agents never read the victim's.
    assert names == {"Printer on fire": ATTACKER, "Outlook style": VICTIM}
    dropped = InboundEmail.objects.get(channel=channel, subject="Printer on fire")
    assert dropped.from_address == ATTACKER and "named another address" in dropped.reason
    assert Contact.objects.filter(identities__handle=ATTACKER).count() == 1


@pytest.mark.django_db
def test_two_mails_sharing_a_message_id_are_both_kept(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    shared = "<shared-1@customer.example.org>"
    channel = make_channel(mail_account)
    first_uid = mail_account.append(mail(sender=VICTIM, subject="Refund", message_id=shared))
    services.email_channel_poll(channel_id=channel.pk)
    # Another mail under the same id: a reused id, or one replayed to hide the original.
    second_uid = mail_account.append(mail(sender=ATTACKER, subject="Other", body="other", message_id=shared))
    third_uid = mail_account.append(mail(sender=VICTIM, subject="Third", body="third", message_id=shared))
    result = services.email_channel_poll(channel_id=channel.pk)
    assert (result.stored, result.imported) == (2, 2)
    rows = InboundEmail.objects.filter(channel=channel)
    assert sorted(rows.values_list("uid", flat=True)) == sorted(first_uid + second_uid + third_uid)
    assert set(rows.values_list("status", flat=True)) == {"imported"}
    messages = Message.objects.filter(inbox=channel.inbox).order_by("id")
    assert [m.text.strip() for m in messages] == ["Hello, my printer is on fire.", "other", "third"]
    ids = [m.provider_message_id or "" for m in messages]
    # The first keeps the id; the later ones are kept under their digests, which are never
    # put in a header, so nobody threads a reply into them.
    assert ids[0] == "shared-1@customer.example.org"
    assert all(other.startswith(email_parse.PSEUDO_ID_PREFIX) for other in ids[1:]) and len(set(ids)) == 3
    # Every UID told to the server has its own stored row.
    seen = {uid for uid, flags in mail_account.flags().items() if "\\Seen" in flags}
    assert seen == set(rows.values_list("uid", flat=True))
    # Appended again byte for byte, a mail is the same mail: not stored twice.
    mail_account.append(mail(sender=VICTIM, subject="Third", body="third", message_id=shared))
    again = services.email_channel_poll(channel_id=channel.pk)
    assert (again.stored, again.duplicates) == (0, 1)
