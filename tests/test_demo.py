"""`make run` loads the demo organisation; loading it twice changes nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

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


# `make run` without DATABASE_URL: the store's statements must be SQLite's too.
_SQLITE_VISITOR = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from channels_app.livechat import services as livechat
from channels_app.livechat.services import Held, Visitor
from channels_app.models import LiveChatChannel
from inbox.models import ChannelKind, Inbox, Message
inbox = Inbox.objects.create(name="Website chat", channel_kind=ChannelKind.LIVECHAT)
channel = LiveChatChannel.objects.create(inbox=inbox, allowed_origins="http://shop.test", prechat_name="off")
visitor = Visitor(channel_id=channel.pk, inbox_id=inbox.pk, handle=f"{channel.pk}:v:demo-visitor")
def say(text, client_id, held):
    return livechat.visitor_message_receive(
        visitor=visitor, origin="http://shop.test", ip_address="127.0.0.1",
        client_id=client_id, text=text, held=held,
    )
first = say("Hello?", "client-id-1", Held())
# What the socket holds after it, as the consumer does.
second = say("Anyone there?", "client-id-2", Held(channel_allowed=True, thread=first.thread))
again = say("Anyone there?", "client-id-2", Held(channel_allowed=True, thread=second.thread))
print(json.dumps({
    "conversations": [first.conversation_id, second.conversation_id, again.conversation_id],
    "texts": list(Message.objects.order_by("id").values_list("text", flat=True)),
}))
"""


def test_the_sqlite_demo_stores_a_visitors_first_and_next_messages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A new visitor's first message creates the contact and conversation, and the next one
    (on what the socket holds) joins it, as on PostgreSQL; a resend is stored once."""
    env = {
        key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", _SQLITE_VISITOR],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stored = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(set(stored["conversations"])) == 1
    assert stored["texts"] == ["Hello?", "Anyone there?"]
