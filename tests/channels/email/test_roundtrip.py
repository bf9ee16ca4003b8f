"""Mail in through Dovecot, a reply out through SMTP, the answer back into the same thread.

Everything runs through the real pieces: Dovecot, the Celery worker on Redis, PostgreSQL,
aiosmtpd, and the inbox's own reply service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from accounts import roles
from channels_app.common import outbound
from channels_app.common import tasks as outbound_tasks
from channels_app.email import services, tasks
from channels_app.models import EmailChannel, InboundEmail
from inbox import policy as access_policy
from inbox.events import inbox_group
from inbox.models import ChannelKind, Conversation, Inbox, Message, Module, Team
from inbox.services import conversation_reply
from tests.channels.conftest import MailAccount, SmtpServer, mail, wait_for
from tests.inbox.conftest import ctx, grant_inbox

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker", "role_groups"),
]


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


class EventListener:
    """Listens to an inbox's live-event group from an event loop of its own, as an agent's
    socket would, and collects what arrives."""

    def __init__(self, inbox_id: int) -> None:
        self.group = inbox_group(inbox_id)
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.channel_name = ""
        self.thread = threading.Thread(target=asyncio.run, args=(self._listen(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        self.channel_name = await layer.new_channel()
        await layer.group_add(self.group, self.channel_name)
        self.ready.set()
        try:
            while (event := await layer.receive(self.channel_name))["type"] != "test.stop":
                self.events.append(event)
        finally:
            await layer.group_discard(self.group, self.channel_name)

    def stop(self) -> None:
        async_to_sync(get_channel_layer().send)(self.channel_name, {"type": "test.stop"})
        self.thread.join(10)


def test_round_trip(
    request: pytest.FixtureRequest,
    mail_account: MailAccount,
    make_channel: Callable[..., EmailChannel],
    smtp_server: SmtpServer,
    make_user: Callable[..., Any],
) -> None:
    support = Inbox.objects.create(name="Support mail", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    sales = Inbox.objects.create(name="Sales mail", channel_kind=ChannelKind.EMAIL, module=Module.SALES)
    channel = make_channel(mail_account, inbox=support, email_address="help@support.example.com")
    support_team, sales_team = Team.objects.create(name="Support"), Team.objects.create(name="Sales")
    grant_inbox(support, support_team)
    grant_inbox(sales, sales_team)
    sue, bob = make_user(roles.AGENT, username="sue"), make_user(roles.AGENT, username="bob")
    sue.groups.add(support_team)
    bob.groups.add(sales_team)

    listener = EventListener(support.pk)
    request.addfinalizer(listener.stop)

    # 1. A customer writes; beat's fan-out polls the channel on the worker.
    first_id = "<first-123@example.org>"
    mail_account.append(mail(subject="Printer on fire", message_id=first_id, to="help@support.example.com"))
    tasks.email_poll_due.delay()
    conversation = wait_for(lambda: Conversation.objects.filter(inbox=support).first())
    # The live update reaches a listening socket after the commit.
    event = wait_for(lambda: listener.events and listener.events[0], timeout=10)
    assert event["event"] == "conversation.created" and event["conversation_id"] == conversation.pk
    inbound = conversation.messages.get()
    assert inbound.text.strip() == "Hello, my printer is on fire."
    assert inbound.provider_message_id == "first-123@example.org"
    assert conversation.subject == "Printer on fire"
    assert conversation.contact.identities.get().handle == "customer@example.org"
    wait_for(lambda: "\\Seen" in mail_account.flags().get(1, ""))

    # 2. Only the support segment sees it.
    assert access_policy.visible_conversations(ctx(sue)).filter(pk=conversation.pk).exists()
    assert not access_policy.visible_conversations(ctx(bob)).filter(pk=conversation.pk).exists()

    # 3. Sue replies; the worker sends it over SMTP, threaded.
    reply = conversation_reply(ctx=ctx(sue), conversation=conversation, text="Unplug it, we are on our way.")
    assert reply.delivery_status == Message.DeliveryStatus.QUEUED
    wait_for(lambda: smtp_server.handler.messages)
    wait_for(lambda: Message.objects.get(pk=reply.pk).delivery_status == Message.DeliveryStatus.SENT)
    (captured,) = smtp_server.handler.messages
    assert captured.mail_from == "help@support.example.com"
    assert captured.rcpt_tos == ["customer@example.org"]
    sent = parsed(captured.content)
    assert sent["In-Reply-To"] == first_id
    assert sent["References"] == first_id
    assert sent["Subject"] == "Re: Printer on fire"
    assert sent["From"].addresses[0].addr_spec == "help@support.example.com"
    assert sent["To"] == "customer@example.org"
    our_id = sent["Message-ID"]
    assert our_id.startswith(f"<portcullis.{reply.pk}.") and our_id.endswith("@support.example.com>")
    assert Message.objects.get(pk=reply.pk).provider_message_id == our_id.strip("<>")
    assert sent.get_content().strip() == "Unplug it, we are on our way."

    # The send task running again sends nothing twice.
    outbound_tasks.reply_send.delay(reply.pk)
    outbound.reply_deliver(reply.pk)
    assert len(smtp_server.handler.messages) == 1

    # 4. The customer answers under another subject: the headers, not the subject, thread it.
    mail_account.append(
        mail(
            subject="Thanks!!",
            body="It is out now.",
            headers={"In-Reply-To": our_id, "References": f"{first_id} {our_id}"},
        )
    )
    tasks.email_poll.delay(channel.pk)
    wait_for(lambda: conversation.messages.count() == 3)
    assert Conversation.objects.filter(inbox=support).count() == 1
    assert list(conversation.messages.order_by("created_at", "id").values_list("direction", flat=True)) == [
        "in",
        "out",
        "in",
    ]
    assert InboundEmail.objects.filter(channel=channel, status=InboundEmail.Status.IMPORTED).count() == 2


def test_new_subject_without_references_starts_a_new_conversation(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    mail_account.append(mail(subject="Order 1"), mail(subject="Re: order 1"), mail(subject="Invoice"))
    services.email_channel_poll(channel_id=channel.pk)
    subjects = sorted(Conversation.objects.filter(inbox=channel.inbox).values_list("subject", flat=True))
    # "Re: order 1" from the same contact continues "Order 1"; "Invoice" is its own thread.
    assert subjects == ["Invoice", "Order 1"]
    # The same subject from someone else proves nothing.
    mail_account.append(mail(sender="other@example.net", subject="Order 1"))
    services.email_channel_poll(channel_id=channel.pk)
    assert Conversation.objects.filter(inbox=channel.inbox, subject="Order 1").count() == 2


def test_reply_failures_are_shown_and_transient_ones_retried(
    mail_account: MailAccount,
    make_channel: Callable[..., EmailChannel],
    smtp_server: SmtpServer,
    make_user: Callable[..., Any],
) -> None:
    channel = make_channel(mail_account)
    agent = make_user(roles.AGENT)
    grant_inbox(channel.inbox, agent)
    mail_account.append(mail())
    services.email_channel_poll(channel_id=channel.pk)
    conversation = Conversation.objects.get(inbox=channel.inbox)

    # A temporary refusal is retried with backoff until the server takes it.
    smtp_server.handler.refusals.append("451 4.3.0 Try again later")
    retried = conversation_reply(ctx=ctx(agent), conversation=conversation, text="First answer")
    wait_for(lambda: Message.objects.get(pk=retried.pk).delivery_status == "sent", timeout=30)
    assert len(smtp_server.handler.messages) == 1

    # A permanent refusal fails at once, with the server's reason.
    smtp_server.handler.refusals.append("550 5.1.1 No such user")
    refused = conversation_reply(ctx=ctx(agent), conversation=conversation, text="Second answer")
    failed = wait_for(lambda: Message.objects.filter(pk=refused.pk, delivery_status="failed").first())
    assert "550" in failed.delivery_detail and "No such user" in failed.delivery_detail
    assert len(smtp_server.handler.messages) == 1


def test_send_rechecks_the_author_and_the_channel(
    mail_account: MailAccount,
    make_channel: Callable[..., EmailChannel],
    smtp_server: SmtpServer,
    make_user: Callable[..., Any],
) -> None:
    channel = make_channel(mail_account)
    agent = make_user(roles.AGENT)
    grant_inbox(channel.inbox, agent)
    mail_account.append(mail())
    services.email_channel_poll(channel_id=channel.pk)
    conversation = Conversation.objects.get(inbox=channel.inbox)
    # Written while allowed, sent after the grant was revoked: it must not go out.
    message = Message.objects.create(
        conversation=conversation,
        inbox=channel.inbox,
        direction=Message.Direction.OUTBOUND,
        sender_user=make_user(roles.AGENT),
        text="I was never allowed here",
        delivery_status=Message.DeliveryStatus.QUEUED,
    )
    outbound.reply_deliver(message.pk)
    message.refresh_from_db()
    assert message.delivery_status == "failed" and "may no longer reply" in message.delivery_detail
    EmailChannel.objects.filter(pk=channel.pk).update(enabled=False)
    queued = conversation_reply(ctx=ctx(agent), conversation=conversation, text="Channel is off")
    failed = wait_for(lambda: Message.objects.filter(pk=queued.pk, delivery_status="failed").first())
    assert "disabled" in failed.delivery_detail
    assert smtp_server.handler.messages == []


def test_two_concurrent_sends_deliver_once(
    mail_account: MailAccount,
    make_channel: Callable[..., EmailChannel],
    smtp_server: SmtpServer,
    make_user: Callable[..., Any],
) -> None:
    channel = make_channel(mail_account)
    agent = make_user(roles.AGENT)
    grant_inbox(channel.inbox, agent)
    mail_account.append(mail())
    services.email_channel_poll(channel_id=channel.pk)
    conversation = Conversation.objects.get(inbox=channel.inbox)
    message = Message.objects.create(
        conversation=conversation,
        inbox=channel.inbox,
        direction=Message.Direction.OUTBOUND,
        sender_user=agent,
        text="Once only",
        delivery_status=Message.DeliveryStatus.QUEUED,
    )
    errors: list[BaseException] = []

    def send() -> None:
        from django.db import connection

        try:
            outbound.reply_deliver(message.pk)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(smtp_server.handler.messages) == 1
    assert Message.objects.get(pk=message.pk).delivery_status == "sent"
