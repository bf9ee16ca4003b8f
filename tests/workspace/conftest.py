"""What the workspace tests share: the inbox tests' segments (two inboxes, two teams, two
agents), and for the browser tests a morning's queue, the app server and Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser

from accounts import roles
from accounts.models import User
from inbox.models import CannedResponse, ChannelKind, Inbox, Team
from tests.browser import chromium, serve_app
from tests.inbox.conftest import grant_inbox, make_conversation, segments  # noqa: F401  # a fixture

DESKTOP = {"viewport": {"width": 1440, "height": 900}}


@dataclass
class Queue:
    agent: User
    device: TOTPDevice
    inbox: Inbox
    # Newest first, as the list shows them.
    conversation_ids: list[int]
    # A teammate on the same inbox (username "bob").
    colleague_device: TOTPDevice


@pytest.fixture
def queue(transactional_db: Any, make_user: Any) -> Queue:
    """A morning's queue: four open conversations and a canned response. Written before the
    browser starts: Playwright's event loop then owns this thread."""
    for role in roles.ROLE_PERMISSIONS:
        Group.objects.get_or_create(name=role)
    inbox = Inbox.objects.create(name="Email support", channel_kind=ChannelKind.EMAIL)
    team = Team.objects.create(name="Support team")
    grant_inbox(inbox, team)
    agent = make_user(roles.AGENT, username="alice", first_name="Alice", last_name="Agent")
    agent.groups.add(team)
    colleague = make_user(roles.AGENT, username="bob", first_name="Bob")
    colleague.groups.add(team)
    CannedResponse.objects.create(shortcut="thanks", text="Thank you for writing to us.")
    CannedResponse.objects.create(shortcut="refund", text="Your refund is on its way.")
    conversations = [
        make_conversation(inbox, text=f"Printer {number} stopped syncing") for number in range(4)
    ]
    ids = [c.pk for c in reversed(conversations)]
    return Queue(
        agent, TOTPDevice.objects.get(user=agent), inbox, ids, TOTPDevice.objects.get(user=colleague)
    )


@pytest.fixture
def app_server(queue: Queue, tmp_path: Path) -> Iterator[str]:
    with serve_app(tmp_path) as base:
        yield base


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    with chromium(monkeypatch) as launched:
        yield launched
