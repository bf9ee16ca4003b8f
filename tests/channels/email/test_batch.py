"""A fetched batch is stored by the inbox's batch store: statements per batch, not per
message; a message the database refuses is quarantined alone; a mail is stored once,
whichever batch brings it again; a reply finds its parent stored a moment before in the
same batch; the next batch is parsed while one is imported, and the order holds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.email import parse as email_parse
from channels_app.email import services
from channels_app.email.imap import Mailbox
from channels_app.models import EmailChannel, InboundEmail
from inbox.models import Conversation, Message
from tests.channels.conftest import MailAccount, mail

pytestmark = pytest.mark.django_db(transaction=True)


def _batch(count: int, tag: str) -> list[bytes]:
    """New senders, each writing once and answering themselves once in the same batch (by
    In-Reply-To): every statement a batch takes, contacts created, threads joined."""
    mails = []
    for number in range(count // 2):
        sender = f"c{number}-{tag}@example.org"
        parent = f"<p{number}-{tag}@example.org>"
        mails.append(mail(sender=sender, subject=f"Order {number}", message_id=parent))
        mails.append(mail(sender=sender, subject=f"Re: Order {number}", headers={"In-Reply-To": parent}))
    return mails


def _poll_statements(mail_account: MailAccount, channel: EmailChannel, mails: list[bytes]) -> int:
    mail_account.append(*mails)
    with CaptureQueriesContext(connection) as queries:
        result = services.email_channel_poll(channel_id=channel.pk)
    assert result.imported == len(mails)
    return len(queries.captured_queries)


def test_a_batch_takes_the_same_statements_for_4_mails_as_for_40(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    # The first poll of a channel also records its mailbox's UIDVALIDITY.
    _poll_statements(mail_account, channel, _batch(2, "first"))
    small = _poll_statements(mail_account, channel, _batch(4, "small"))
    large = _poll_statements(mail_account, channel, _batch(40, "large"))
    # Stored one by one, 40 mails would take hundreds of statements more than 4.
    assert large == small, (small, large)
    assert large / 40 < 1.5
    assert Conversation.objects.filter(inbox=channel.inbox).count() == 23
    assert Message.objects.filter(inbox=channel.inbox).count() == 46


def test_a_message_the_database_refuses_is_quarantined_alone(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = email_parse.parse

    def poisoning(raw: bytes, *, max_attachment_bytes: int) -> email_parse.ParsedEmail:
        parsed = parse(raw, max_attachment_bytes=max_attachment_bytes)
        if parsed.subject == "Poison":
            # PostgreSQL refuses a NUL in text: what no parser repair was expected to miss.
            parsed.text += "\x00"
        return parsed

    monkeypatch.setattr(email_parse, "parse", poisoning)
    channel = make_channel(mail_account)
    uids = mail_account.append(
        mail(sender="a@example.org", subject="First"),
        mail(sender="b@example.org", subject="Poison"),
        mail(sender="c@example.org", subject="Third"),
    )
    result = services.email_channel_poll(channel_id=channel.pk)
    assert (result.imported, result.quarantined) == (2, 1)
    rows = {row.subject: row for row in InboundEmail.objects.filter(channel=channel)}
    assert rows["Poison"].status == "quarantined" and rows["Poison"].message_id is None
    assert "The database refused the message (DataError)" in rows["Poison"].reason
    assert {rows["First"].status, rows["Third"].status} == {"imported"}
    texts = sorted(
        Message.objects.filter(inbox=channel.inbox).values_list("conversation__subject", flat=True)
    )
    assert texts == ["First", "Third"]
    # Every row is settled (stored or quarantined with its reason): all three are told.
    seen = {uid for uid, flags in mail_account.flags().items() if "\\Seen" in flags}
    assert seen == set(uids)


def test_duplicates_within_and_across_batches_are_stored_once(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    same = mail(sender="a@example.org", subject="Twice", message_id="<twice@example.org>")
    mail_account.append(same, same, mail(sender="b@example.org", subject="Other"))
    first = services.email_channel_poll(channel_id=channel.pk)
    assert (first.stored, first.duplicates, first.imported) == (2, 1, 2)
    # The same bytes again in a later batch, and the whole mailbox fetched again (the
    # channel's position lost): nothing is stored twice.
    mail_account.append(same)
    EmailChannel.objects.filter(pk=channel.pk).update(last_uid=0)
    again = services.email_channel_poll(channel_id=channel.pk)
    assert (again.stored, again.imported) == (0, 0)
    assert Message.objects.filter(inbox=channel.inbox).count() == 2
    assert Message.objects.filter(inbox=channel.inbox, provider_message_id="twice@example.org").count() == 1
    assert InboundEmail.objects.filter(channel=channel).count() == 2
    seen = {uid for uid, flags in mail_account.flags().items() if "\\Seen" in flags}
    assert len(seen) == 4


def test_a_reply_joins_its_parent_stored_earlier_in_the_same_batch(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], make_user: Callable[..., Any]
) -> None:
    channel = make_channel(mail_account)
    parent = "<parent@customer.example.org>"
    mail_account.append(
        mail(sender="Customer <customer@example.org>", subject="Broken screen", message_id=parent),
        mail(sender="customer@example.org", subject="Re: Broken screen", headers={"In-Reply-To": parent}),
        # No headers at all: threaded by its subject into the conversation opened above.
        mail(sender="customer@example.org", subject="RE: broken screen"),
        # Someone who has seen the id: a conversation of their own, and a note saying why.
        mail(sender="stranger@evil.example.net", subject="Re: Broken screen", headers={"References": parent}),
    )
    result = services.email_channel_poll(channel_id=channel.pk)
    assert result.imported == 4
    customers = Conversation.objects.get(
        inbox=channel.inbox, contact__identities__handle="customer@example.org"
    )
    assert customers.messages.count() == 3
    strangers = Conversation.objects.get(
        inbox=channel.inbox, contact__identities__handle="stranger@evil.example.net"
    )
    assert strangers.messages.count() == 1
    (note,) = strangers.notes.all()
    assert f"#{customers.pk}" in note.text and "not that conversation's contact" in note.text


def test_a_batch_keeps_the_raw_bytes_exactly_and_compresses_its_text_with_lz4(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    # Long enough to be compressed (PostgreSQL compresses values of rows over ~2 KB).
    raw = mail(subject="Long", body="My printer is on fire again. " * 400)
    mail_account.append(raw)
    assert services.email_channel_poll(channel_id=channel.pk).imported == 1
    # Stored as bytes, not through an escaped literal: every byte as the server gave it.
    assert bytes(InboundEmail.objects.get(channel=channel).raw) == raw
    with connection.cursor() as cursor:
        # lz4 where the server was built with it (inbox migration 0015), else its default.
        cursor.execute(
            "SELECT CASE WHEN 'lz4' = ANY(enumvals) THEN 'lz4' ELSE 'pglz' END"
            " FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        (expected,) = cursor.fetchone()
        cursor.execute(
            "SELECT pg_column_compression(text) FROM inbox_message WHERE inbox_id = %s", [channel.inbox_id]
        )
        assert cursor.fetchall() == [(expected,)]


def test_the_next_batch_is_parsed_while_one_is_imported_and_replies_still_find_their_parents(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two mails a batch, each mail answering the one before: every batch's first reply has
    # its parent in the batch imported just before it.
    monkeypatch.setattr(services, "FETCH_BATCH_SIZE", 2)
    channel = make_channel(mail_account)
    mails = [mail(sender="customer@example.org", subject="Order 0", message_id="<m0@example.org>")]
    for number in range(1, 8):
        mails.append(
            mail(
                sender="customer@example.org",
                subject=f"Re: Order {number}",  # a subject of its own: threaded by its header alone
                message_id=f"<m{number}@example.org>",
                headers={"In-Reply-To": f"<m{number - 1}@example.org>"},
            )
        )
    mail_account.append(*mails)
    parse, batch_import = email_parse.parse, services._batch_import
    imports_started: set[int] = set()  # each by the number of its batch's last mail
    import_seen = threading.Condition()
    overlapped: list[bool] = []

    def number(email: email_parse.ParsedEmail) -> int:
        return int(email.subject.rsplit(" ", 1)[1])

    def parse_seeing_the_import_before(raw: bytes, *, max_attachment_bytes: int) -> email_parse.ParsedEmail:
        parsed = parse(raw, max_attachment_bytes=max_attachment_bytes)
        if number(parsed) % 2 == 0 and number(parsed) > 0:  # a batch's first mail, not the first batch
            # Parsed inline, this returns before the batch before is stored: the wait times out.
            with import_seen:
                overlapped.append(
                    import_seen.wait_for(lambda: number(parsed) - 1 in imports_started, timeout=2)
                )
        return parsed

    def import_noting(
        channel: EmailChannel, rows: list[InboundEmail], parsed: dict[int, Any], result: Any
    ) -> None:
        with import_seen:
            imports_started.add(max(number(email) for email in parsed.values()))
            import_seen.notify_all()
        batch_import(channel, rows, parsed, result)

    monkeypatch.setattr(email_parse, "parse", parse_seeing_the_import_before)
    monkeypatch.setattr(services, "_batch_import", import_noting)
    result = services.email_channel_poll(channel_id=channel.pk)
    assert result.imported == 8
    # Each batch but the first was still being parsed when the batch before was imported.
    assert overlapped == [True, True, True]
    (conversation,) = Conversation.objects.filter(inbox=channel.inbox)
    assert conversation.messages.count() == 8


def test_a_duplicate_is_marked_on_the_server_only_once_the_copy_it_repeats_is_imported(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "FETCH_BATCH_SIZE", 2)
    channel = make_channel(mail_account)
    same = mail(sender="a@example.org", subject="Twice", message_id="<twice@example.org>")
    uids = mail_account.append(same, same, mail(sender="b@example.org", subject="Other"))
    mark_done = Mailbox.mark_done
    first_copy_when_marked: dict[int, str] = {}

    def marking(self: Mailbox, marked: list[int]) -> None:
        for uid in marked:
            first_copy_when_marked[uid] = InboundEmail.objects.get(channel=channel, uid=uids[0]).status
        mark_done(self, marked)

    monkeypatch.setattr(Mailbox, "mark_done", marking)
    result = services.email_channel_poll(channel_id=channel.pk)
    assert (result.stored, result.duplicates, result.imported) == (2, 1, 2)
    # The second copy's UID has no row of its own: it is marked once the first copy's row
    # is imported, not while that row is still being parsed beside the next fetch.
    assert first_copy_when_marked[uids[1]] == InboundEmail.Status.IMPORTED
    assert set(first_copy_when_marked) == set(uids)
