"""PII masking in a real browser (issue #14): an agent whose role lacks "view PII" sees the
conversation masked, and Reveal asks the API's reveal endpoint (signed by the device key,
recorded) and shows the message and the contact in place, without a reload."""

from __future__ import annotations

from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, expect

from audit.models import AccessEvent
from inbox.models import Conversation, Message, Team
from tests.browser import sign_in
from tests.inbox.conftest import make_conversation
from tests.workspace.conftest import DESKTOP, Queue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PRIVATE = "Call me on +49 151 23456789 or mail jane.doe@example.org."


@pytest.fixture
def masked_conversation(queue: Queue, make_user: Any) -> tuple[Conversation, TOTPDevice]:
    """A trainee in the support team, in no role that carries "view PII"; written before the
    browser starts (Playwright's event loop then owns this thread)."""
    trainee = make_user(username="tina")
    trainee.groups.add(Team.objects.get(name="Support team"))  # the queue's team, not its role
    conversation = make_conversation(queue.inbox, handle="jane.doe@example.org", text=PRIVATE)
    conversation.contact.name = "Jane Doe"
    conversation.contact.save()
    Message.objects.filter(conversation=conversation).update(sender_name="Jane Doe")
    return conversation, TOTPDevice.objects.get(user=trainee)


def test_reveal_shows_the_message_and_the_contact_in_place(
    masked_conversation: tuple[Conversation, TOTPDevice], app_server: str, browser: Browser
) -> None:
    conversation, device = masked_conversation
    page = browser.new_context(**DESKTOP).new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    sign_in(page, app_server, "tina", device)
    page.goto(f"{app_server}/conversations/{conversation.pk}/")
    message = page.locator(f"[data-message-id='{conversation.messages.get().pk}']")
    expect(message.locator("[data-reveal-body]")).to_contain_text("+49 •••••••••89")
    contact = page.locator(".context-pane [data-reveal-item]")
    expect(contact.locator("[data-reveal-name]")).to_have_text("J••• D•••")
    assert "23456789" not in page.content() and "jane.doe@" not in page.content()

    # Once its socket is open the page refreshes its panes (catching up on what happened
    # before): a refresh shows the thread masked again, so reveal after it, as a person
    # would. Under load the socket opened after the click and re-masked the revealed text.
    expect(page.locator("[data-live-bar][data-connected]")).to_have_count(1)
    page.wait_for_load_state("networkidle")
    page.evaluate("window.__notReloaded = true")
    message.get_by_role("button", name="Reveal").click()
    expect(message.locator("[data-reveal-body]")).to_have_text(PRIVATE)
    expect(message.locator("[data-reveal-sender]")).to_have_text("Jane Doe")
    expect(message.get_by_role("button", name="Reveal")).to_have_count(0)
    contact.get_by_role("button", name="Reveal").click()
    expect(contact.locator("[data-reveal-name]")).to_have_text("Jane Doe")
    expect(contact.locator("[data-reveal-handle]")).to_have_text("jane.doe@example.org")
    assert page.evaluate("window.__notReloaded") is True
    assert not problems, problems
    revealed = AccessEvent.objects.filter(user_id=device.user_id, action="reveal", allowed=True)
    assert sorted(revealed.values_list("object_type", flat=True)) == ["inbox.contact", "inbox.message"]
