"""`make run` loads the demo organisation; loading it twice changes nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from accounts.models import User
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
