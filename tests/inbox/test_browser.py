"""The agent pages in a real browser: on a phone, at the idle timeout, on a missing page.

Screenshots land in test-artifacts/ (agent-mobile-*.png, agent-idle-*.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, Page, expect

from accounts import roles
from accounts.models import EnrollmentCode, User
from accounts.supervision import enrollment_code_issue
from inbox.models import ChannelKind, Inbox, Label, Team
from tests.browser import ARTIFACTS, chromium, serve_app, sign_in
from tests.conftest import PASSWORD
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
# A short idle timeout for the test's server: the warning shows a few seconds after a page
# loads, and the session ends soon after.
IDLE_MINUTES = "0.25"  # 15 seconds
WARNING_SECONDS = "11"


@dataclass
class Agents:
    agent: User
    device: TOTPDevice
    newcomer: User
    enrollment_code: str
    conversation_id: int


@pytest.fixture
def agents(transactional_db: Any, make_user: Any) -> Agents:
    """An agent with a few conversations (one with a long, unbroken subject and labels), and
    a newcomer holding an enrollment code. Written before the browser starts: Playwright's
    event loop would then own this thread."""
    for role in roles.ROLE_PERMISSIONS:
        Group.objects.get_or_create(name=role)
    inbox = Inbox.objects.create(name="Email support", channel_kind=ChannelKind.EMAIL)
    team = Team.objects.create(name="Support team")
    grant_inbox(inbox, team)
    agent = make_user(roles.AGENT, username="alice", first_name="Alice", last_name="Agent")
    agent.groups.add(team)
    long_subject = "Invoice-reference-INV-2026-0211-could-not-be-matched-to-any-order-in-our-system"
    conversation = make_conversation(
        inbox, handle="jane.doe.with.a.long.address@customer.example", text=long_subject
    )
    for color, name in (("#b42318", "bug"), ("#b54708", "vip")):
        conversation.labels.add(Label.objects.create(name=name, color=color))
    for number in range(3):
        make_conversation(inbox, text=f"My printer {number} stopped syncing.")
    newcomer = make_user(roles.AGENT, username="nina", enrolled=False)
    code = enrollment_code_issue(user=newcomer, purpose=EnrollmentCode.Purpose.NEW_ACCOUNT, change=None)
    return Agents(agent, TOTPDevice.objects.get(user=agent), newcomer, code, conversation.pk)


@pytest.fixture
def app_server(agents: Agents, tmp_path: Path) -> Iterator[str]:
    with serve_app(tmp_path) as base:
        yield base


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    with chromium(monkeypatch) as launched:
        yield launched


def assert_fits(page: Page, name: str) -> None:
    """No horizontal scrolling: the page is no wider than the phone's screen."""
    page.screenshot(path=str(ARTIFACTS / f"agent-mobile-{name}.png"), full_page=True)
    widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{name} scrolls sideways: {widths[0]}px content in {widths[1]}px"


def test_every_agent_page_fits_a_phone_and_the_inbox_list_is_cards(
    agents: Agents, app_server: str, browser: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context(**PHONE).new_page()

    # The newcomer's way in: enrollment code, then the authenticator's QR code.
    page.goto(f"{app_server}/accounts/activate/?code={agents.enrollment_code}")
    assert_fits(page, "activate")
    page.get_by_label("Username").fill(agents.newcomer.username)
    page.get_by_label("New password").fill("a fresh long passphrase 42")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Set up your authenticator")).to_be_visible()
    assert_fits(page, "enroll")

    page = browser.new_context(**PHONE).new_page()
    page.goto(f"{app_server}/accounts/login/")
    assert_fits(page, "login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Second factor")).to_be_visible()
    assert_fits(page, "verify")
    page = browser.new_context(**PHONE).new_page()
    sign_in(page, app_server, "alice", agents.device)
    assert_fits(page, "inbox")
    rows = page.locator(".conversation-list tbody tr")
    expect(rows).to_have_count(4)
    # Each row is a card of its own, as wide as the list; the column headings are there for
    # screen readers only.
    card = rows.first.evaluate(
        "row => ({display: getComputedStyle(row).display, width: row.getBoundingClientRect().width,"
        " list: row.closest('table').getBoundingClientRect().width,"
        " header: row.closest('table').tHead.getBoundingClientRect().height})"
    )
    assert card["display"] == "grid" and card["width"] >= card["list"] - 2 and card["header"] <= 1
    # The whole card opens the conversation, not only its subject: a tap on the contact's
    # name lands on the subject's link, stretched over the card.
    box = rows.first.locator(".contact-cell").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 5, box["y"] + box["height"] / 2)
    expect(page.locator("#thread")).to_be_visible()
    assert_fits(page, "conversation")

    page.goto(f"{app_server}/accounts/security/")
    assert_fits(page, "security")
    page.goto(f"{app_server}/conversations/999999/")
    expect(page.get_by_role("heading", name="This page is not here")).to_be_visible()
    assert_fits(page, "404")


def test_the_missing_page_is_the_sites_own(agents: Agents, app_server: str, browser: Browser) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in(page, app_server, "alice", agents.device)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    response = page.goto(f"{app_server}/conversations/{agents.conversation_id + 1000}/")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="This page is not here")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.get_by_role("link", name="Back to the inbox").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "agent-404.png"))
    assert not [e for e in errors if "Content Security Policy" in e]


@pytest.fixture
def short_idle_server(agents: Agents, tmp_path: Path) -> Iterator[str]:
    with serve_app(
        tmp_path, SESSION_IDLE_MINUTES=IDLE_MINUTES, SESSION_IDLE_WARNING_SECONDS=WARNING_SECONDS
    ) as base:
        yield base


def test_idle_warning_keeps_the_session_on_request_and_the_sign_in_page_says_why(
    agents: Agents, short_idle_server: str, browser: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in(page, short_idle_server, "alice", agents.device)
    page.get_by_label("Search messages").focus()

    warning = page.get_by_role("alertdialog", name="Are you still there?")
    expect(warning).to_be_visible(timeout=15_000)
    # Announced, and reachable at once from the keyboard: focus is on its first choice.
    expect(page.locator("[data-session-announce]")).to_contain_text("You will be signed out in 1 minute")
    stay = warning.get_by_role("button", name="Stay signed in")
    expect(stay).to_be_focused()
    page.screenshot(path=str(ARTIFACTS / "agent-idle-warning.png"))
    page.keyboard.press("Enter")
    expect(warning).to_be_hidden()
    expect(page.locator("[data-session-announce]")).to_have_text("You are still signed in.")
    expect(page.get_by_label("Search messages")).to_be_focused()  # back where they were

    # Kept alive: the server restarted its clock, so the warning comes back only later, and
    # the page is still the inbox after the first deadline has passed.
    expect(warning).to_be_visible(timeout=15_000)
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()

    # Ignored this time: the session ends, and the sign-in page says why.
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("status").filter(has_text="signed out")).to_have_text(
        "You were signed out after 15 seconds without activity."
    )
    assert "/accounts/login/?next=" in page.url
    page.screenshot(path=str(ARTIFACTS / "agent-idle-signed-out.png"))
