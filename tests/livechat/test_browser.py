"""End to end in a real browser: a visitor on a customer's site and an agent in the inbox.

A uvicorn process serves the application on the test database; a second tiny server plays
the customer's website on another origin and embeds the widget with the admin's snippet.
The agent signs in through the real forms with a TOTP code. Debian's Chromium, driven by
Playwright, plays both people; screenshots of both sides land in test-artifacts/.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, expect

from accounts import roles
from accounts.models import User
from channels_app.models import LiveChatChannel
from inbox.models import ChannelKind, Inbox, InboxGroupObjectPermission, Team
from tests.browser import ARTIFACTS, chromium, free_port, serve_app, sign_in
from tests.inbox.conftest import grant_inbox

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def app_server(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    with serve_app(tmp_path) as base:
        yield base


@pytest.fixture
def customer_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static web server on another origin (another host name, another port)."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    with chromium(monkeypatch) as launched:
        yield launched


@dataclass
class Setup:
    inbox: Inbox
    team: Team
    agent: User
    device: TOTPDevice


@pytest.fixture
def setup(app_server: str, customer_site: tuple[str, Path], make_user: Any, role_groups: None) -> Setup:
    """The chat inbox, its agent and channel, and the customer's page embedding the widget.

    Written before the browser starts: Playwright's event loop would then own this thread."""
    site_origin, site_root = customer_site
    inbox = Inbox.objects.create(name="Website chat", channel_kind=ChannelKind.LIVECHAT)
    team = Team.objects.create(name="Chat team")
    grant_inbox(inbox, team)
    agent = make_user(roles.AGENT, username="alice", first_name="Alice", last_name="Agent")
    agent.groups.add(team)
    channel = LiveChatChannel.objects.create(inbox=inbox, allowed_origins=site_origin, prechat_name="off")
    snippet = (
        f'<script src="{app_server}/static/widget/portcullis-widget.js" '
        f'data-portcullis-key="{channel.key}" defer></script>'
    )
    (site_root / "index.html").write_text(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Acme</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body><h1>Acme Printers</h1>{snippet}</body></html>"
    )
    (site_root / "receipt.png").write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e5273f9e0000000049454e44ae426082"
        )
    )
    return Setup(inbox, team, agent, TOTPDevice.objects.get(user=agent))


def test_visitor_and_agent_chat_in_real_time(
    setup: Setup, app_server: str, customer_site: tuple[str, Path], browser: Browser
) -> None:
    site_origin, site_root = customer_site
    ARTIFACTS.mkdir(exist_ok=True)

    # The agent signs in (password, then TOTP) and keeps the inbox list open.
    agent_page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(agent_page, app_server, "alice", setup.device)
    expect(agent_page.locator("[data-live-state]")).to_have_text("Live")
    agent_page.evaluate("window.__notReloaded = true")

    # The visitor, on a phone-sized screen, on the customer's site.
    visitor_page = browser.new_context(viewport={"width": 390, "height": 780}, is_mobile=True).new_page()
    visitor_page.goto(f"{site_origin}/index.html")
    launcher = visitor_page.get_by_role("button", name="Chat with us")
    launcher.click()
    expect(visitor_page.locator(".pc-state")).to_have_text("We are online")
    message_box = visitor_page.get_by_label("Message", exact=True)
    message_box.fill("Do you ship printers to Norway?")
    message_box.press("Enter")
    expect(visitor_page.locator(".pc-mine .pc-receipt")).to_have_text(" · Sent")

    # It appears in the agent's list without a reload.
    row = agent_page.get_by_role("link", name="Do you ship printers to Norway?")
    expect(row).to_be_visible(timeout=5000)
    assert agent_page.evaluate("window.__notReloaded") is True
    row.click()
    expect(agent_page.locator("#thread")).to_contain_text("Do you ship printers to Norway?")
    expect(agent_page.locator("[data-live-state]")).to_have_text("Live")

    # Live in the conversation too: a second message and a file.
    agent_page.evaluate("window.__notReloaded = true")
    message_box.fill("We are a school, 40 seats.")
    message_box.press("Enter")
    expect(agent_page.locator("#thread")).to_contain_text("We are a school, 40 seats.", timeout=5000)
    visitor_page.locator("input[type=file]").set_input_files(str(site_root / "receipt.png"))
    expect(agent_page.locator("#thread")).to_contain_text("receipt.png", timeout=5000)
    assert agent_page.evaluate("window.__notReloaded") is True

    # The agent types (the visitor sees it) and replies from the page's reply form.
    agent_page.get_by_role("textbox", name="Reply").fill("Yes, we ship to Norway. Delivery takes 3 days.")
    expect(visitor_page.locator(".pc-typing")).to_have_text("Alice is typing…", timeout=5000)
    agent_page.get_by_role("button", name="Send reply").click()
    reply = visitor_page.locator(".pc-theirs", has_text="Yes, we ship to Norway.")
    expect(reply).to_be_visible(timeout=5000)
    expect(reply.locator(".pc-who")).to_have_text("Alice")
    expect(agent_page.locator("#thread .delivery").last).to_have_text("Read", timeout=5000)

    visitor_page.screenshot(path=str(ARTIFACTS / "livechat-visitor.png"), full_page=True)
    agent_page.screenshot(path=str(ARTIFACTS / "livechat-agent.png"), full_page=True)

    # A supervisor revokes the team's grant: the agent's live view closes at once. (Written
    # from another thread, as the admin would: this one runs Playwright's event loop.)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        revoke = InboxGroupObjectPermission.objects.filter(
            group=setup.team, content_object=setup.inbox
        ).delete
        pool.submit(revoke).result()
    expect(agent_page.get_by_text("You no longer have access to this conversation.")).to_be_visible(
        timeout=3000
    )
    closed_after = time.monotonic() - started
    agent_page.screenshot(path=str(ARTIFACTS / "livechat-agent-revoked.png"))
    assert agent_page.locator("#thread").count() == 0
    assert closed_after < 2.0, f"the live view closed after {closed_after:.2f}s"
