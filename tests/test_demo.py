"""`make run` loads the demo organisation; loading it twice changes nothing."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from channels_app.models import EmailChannel, LiveChatChannel
from inbox import policy
from inbox.models import Conversation, Inbox
from inbox.policy import AccessContext

pytestmark = pytest.mark.django_db


def test_demo_loads_once_with_two_segments(tmp_path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.BASE_DIR = tmp_path
    first = io.StringIO()
    call_command("load_demo", stdout=first)
    assert "otpauth://totp/Portcullis%3Aalice" in first.getvalue()
    counts = (User.objects.count(), Inbox.objects.count(), Conversation.objects.count())
    second = io.StringIO()
    call_command("load_demo", stdout=second)
    assert "otpauth://" not in second.getvalue()  # shown once only
    assert (User.objects.count(), Inbox.objects.count(), Conversation.objects.count()) == counts

    def seen(username: str) -> set[str]:
        ctx = AccessContext(user=User.objects.get(username=username))
        return set(policy.visible_conversations(ctx).values_list("inbox__name", flat=True))

    assert seen("alice") == {"Email support", "Website chat"}
    assert seen("bob") == {"Sales WhatsApp"}
    assert seen("carol") == {"Billing"}
    assert seen("supervisor") == {"Email support", "Website chat", "Sales WhatsApp", "Billing"}
    # The supervisors manage the agents' accounts, not each other's: that is for an administrator.
    supervisor = AccessContext(user=User.objects.get(username="supervisor"))
    assert set(policy.managed_users(supervisor).values_list("username", flat=True)) == {
        "alice",
        "bob",
        "carol",
    }


def test_demo_follows_the_ports_it_is_served_on(tmp_path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.BASE_DIR = tmp_path
    call_command("load_demo", stdout=io.StringIO())
    channel = LiveChatChannel.objects.get(key="lc_demo-website-chat")
    assert channel.allowed_origins.split() == ["http://127.0.0.1:8001", "http://localhost:8001"]

    # `make run PORT=8123 DEMO_PORT=8124 DEMO_SMTP_PORT=8125` on the same database.
    call_command(
        "load_demo",
        "--app-url=http://127.0.0.1:8123",
        "--site-port=8124",
        "--smtp-port=8125",
        stdout=io.StringIO(),
    )
    channel.refresh_from_db()
    assert channel.allowed_origins.split() == ["http://127.0.0.1:8124", "http://localhost:8124"]
    assert LiveChatChannel.objects.count() == 1
    page = (tmp_path / "var" / "demo-site" / "index.html").read_text()
    assert (
        '<script src="http://127.0.0.1:8123/static/widget/portcullis-widget.js" '
        'data-portcullis-key="lc_demo-website-chat" defer></script>'
    ) in page
    assert "<code>http://127.0.0.1:8124</code>" in page and "{{" not in page

    # Both email inboxes reply through the sink; no poll falls due during the demo.
    mailboxes = {c.inbox.name: c for c in EmailChannel.objects.select_related("inbox")}
    assert set(mailboxes) == {"Email support", "Billing"}
    for mailbox in mailboxes.values():
        assert (mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_security) == ("127.0.0.1", 8125, "none")
        assert mailbox.enabled and mailbox.poll_enqueued_at is not None
        next_poll = mailbox.poll_enqueued_at + timedelta(seconds=mailbox.poll_interval_seconds)
        assert next_poll > timezone.now() + timedelta(hours=23)


def test_a_channel_a_supervisor_added_is_left_alone(tmp_path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.BASE_DIR = tmp_path
    call_command("load_demo", stdout=io.StringIO())
    LiveChatChannel.objects.filter(key="lc_demo-website-chat").update(key="lc_their-own")
    call_command("load_demo", "--site-port=9000", stdout=io.StringIO())
    assert list(LiveChatChannel.objects.values_list("key", "allowed_origins")) == [
        ("lc_their-own", "http://127.0.0.1:8001\nhttp://localhost:8001")
    ]
