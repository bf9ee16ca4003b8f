"""Device binding in a real browser (Debian's Chromium): signing in registers the device's
own key; the session cookie copied into another browser with the same User-Agent changes
nothing at once — no write, no socket — and stops reading within the refresh window, while
the original goes on. Screenshots land in test-artifacts/device-*.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, Page, expect

from accounts import roles
from accounts.models import BrowserDevice, UserSession
from audit.models import SecurityEvent
from inbox.models import ChannelKind, Conversation, Inbox, Note, Team
from tests.browser import ARTIFACTS, chromium, serve_app, sign_in
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Short for the test, long enough for a loaded machine to get through the first half.
REFRESH_SECONDS = 10

SOCKET = """async () => new Promise(resolve => {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/ws/agent/");
  socket.onopen = () => { socket.close(); resolve("open"); };
  socket.onclose = () => resolve("refused");
})"""
KEEPALIVE = """async () => {
  const csrf = document.cookie.split("; ").find(c => c.startsWith("csrftoken=")).split("=")[1];
  const headers = {"X-CSRFToken": csrf, Accept: "application/json"};
  const response = await fetch("/accounts/session/keepalive/", {method: "POST", headers});
  return response.status;
}"""
# The note form submitted as a person would, through htmx's handler; resolves with the
# status of htmx's request.
NOTE = """async text => new Promise(resolve => {
  const form = document.getElementById("note-form");
  form.querySelector("textarea[name=note]").value = text;
  // Only the post: the workspace loads its panes meanwhile.
  const done = event => { if (event.detail.requestConfig.verb === "post") resolve(event.detail.xhr.status); };
  document.body.addEventListener("htmx:afterRequest", done);
  form.requestSubmit();
})"""
STORED_KEY = """async () => new Promise(resolve => {
  const open = indexedDB.open("portcullis-device", 1);
  open.onsuccess = () => {
    const get = open.result.transaction("keys").objectStore("keys").get("device");
    get.onsuccess = async () => {
      const key = get.result.privateKey;
      let exported = "exported";
      try { await crypto.subtle.exportKey("jwk", key); } catch (e) { exported = e.name; }
      resolve({type: key.type, extractable: key.extractable, algorithm: key.algorithm.namedCurve, exported});
    };
  };
})"""


@pytest.fixture
def agent(transactional_db: Any, make_user: Any) -> TOTPDevice:
    for role in roles.ROLE_PERMISSIONS:
        Group.objects.get_or_create(name=role)
    inbox = Inbox.objects.create(name="Email support", channel_kind=ChannelKind.EMAIL)
    team = Team.objects.create(name="Support team")
    grant_inbox(inbox, team)
    user = make_user(roles.AGENT, username="alice")
    user.groups.add(team)
    make_conversation(inbox, text="My printer stopped syncing.")
    return TOTPDevice.objects.get(user=user)


@pytest.fixture
def app_server(agent: TOTPDevice, tmp_path: Path) -> Iterator[str]:
    with serve_app(tmp_path, DEVICE_BINDING="enforce", DEVICE_REFRESH_SECONDS=str(REFRESH_SECONDS)) as base:
        yield base


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    with chromium(monkeypatch) as launched:
        yield launched


def wait_for(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"device-{name}.png"), full_page=True)


def test_a_copied_session_cookie_changes_nothing_and_soon_reads_nothing(
    agent: TOTPDevice, app_server: str, browser: Browser
) -> None:
    victim_context = browser.new_context()
    victim = victim_context.new_page()
    sign_in(victim, app_server, "alice", agent)
    expect(victim.locator("[data-live-bar][data-connected]")).to_have_count(1)  # its socket is open

    device = BrowserDevice.objects.get(user__username="alice")
    assert device.binding == "key" and set(device.public_key) == {"kty", "crv", "x", "y"}
    assert device.browser_family in {"Chrome", "HeadlessChrome", "Chromium"} and device.os_family == "Linux"
    assert UserSession.objects.get(user__username="alice", ended_at__isnull=True).device == device
    stored = victim.evaluate(STORED_KEY)
    assert stored == {
        "type": "private",
        "extractable": False,
        "algorithm": "P-256",
        "exported": "InvalidAccessError",
    }

    # A note through the workspace: htmx posts it, device.js signs the request.
    conversation = Conversation.objects.get()
    victim.goto(f"{app_server}/conversations/{conversation.pk}/")
    victim.evaluate(NOTE, "from the victim")
    wait_for(lambda: Note.objects.filter(text="from the victim").exists())

    # Another machine: every cookie of the victim's, the victim's User-Agent.
    user_agent = victim.evaluate("navigator.userAgent")
    thief_context = browser.new_context(user_agent=user_agent)
    thief_context.add_cookies(victim_context.cookies())
    thief = thief_context.new_page()
    thief.goto(f"{app_server}/")
    expect(thief.get_by_role("heading", name="Inbox")).to_be_visible()  # inside the refresh window
    shot(thief, "thief-within-window")
    # Its own browser signs with a key of its own, which is not the session's.
    assert thief.evaluate(KEEPALIVE) == 401
    thief.goto(f"{app_server}/conversations/{conversation.pk}/")
    assert thief.evaluate(NOTE, "from the thief") == 401
    assert not Note.objects.filter(text="from the thief").exists()
    assert thief.evaluate(SOCKET) == "refused"
    assert victim.evaluate(KEEPALIVE) == 200
    assert victim.evaluate(SOCKET) == "open"

    time.sleep(REFRESH_SECONDS + 1)
    thief.goto(f"{app_server}/")
    expect(thief.get_by_role("heading", name="Confirming this device")).to_be_visible()
    expect(thief.get_by_text("does not hold the device key")).to_be_visible()
    shot(thief, "thief-after-window")
    # The original renewed its bound cookie with its key meanwhile, and goes on.
    victim.goto(f"{app_server}/")
    expect(victim.get_by_role("heading", name="Inbox")).to_be_visible()
    assert victim.evaluate(KEEPALIVE) == 200
    refusals = SecurityEvent.objects.filter(kind="device_proof_refused", user__username="alice")
    assert {e.detail["code"] for e in refusals} >= {"proof_other_device"}
    assert {e.detail.get("surface") for e in refusals} >= {"socket", None}

    victim.goto(f"{app_server}/accounts/devices/")
    shot(victim, "devices")
    expect(victim.get_by_text("this one")).to_be_visible()
