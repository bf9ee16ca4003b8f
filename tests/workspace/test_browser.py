"""The workspace in a real browser: an agent works the queue without a page reload, by
mouse and by keyboard alone; the back button, drafts, canned responses and live updates.

Screenshots land in test-artifacts/ (workspace-*.png).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect

from inbox import services
from inbox.models import ChannelKind, Conversation
from tests.browser import ARTIFACTS, sign_in
from tests.workspace.conftest import DESKTOP, Queue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NOT_RELOADED = "window.__notReloaded"


def open_workspace(browser: Browser, base: str, queue: Queue) -> tuple[Page, list[str]]:
    page = browser.new_context(**DESKTOP).new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        # A failed load is reported by the response handler below, with its address.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"{message.text} at {message.location['url']} on {page.url}")

    def response(answer: Response) -> None:
        # The browser's own favicon probe is not the workspace's business.
        if answer.status >= 500 or (answer.status == 404 and "favicon" not in answer.url):
            problems.append(f"{answer.status} {answer.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", response)
    sign_in(page, base, "alice", queue.device)
    expect(page.locator("[data-live-state]")).to_have_text("Live")
    page.evaluate(f"{NOT_RELOADED} = true")
    # Every full page load from here on is named, with what the page was doing.
    page.on("load", lambda: problems.append(f"full page load of {page.url}"))
    return page, problems


def conversation_url(base: str, conversation_id: int) -> re.Pattern[str]:
    return re.compile(re.escape(f"{base}/conversations/{conversation_id}/"))


def test_open_reply_assign_and_go_back_without_a_reload(
    queue: Queue, app_server: str, browser: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page, problems = open_workspace(browser, app_server, queue)
    rows = page.locator(".conversation-list tr[data-row]")
    expect(rows).to_have_count(4)
    expect(page.locator(".conversation-list tr.unread")).to_have_count(4)
    expect(page).to_have_title("(4) Inbox · Portcullis")

    # Opening: the conversation pane fills in, the URL follows, the row is no longer unread.
    first = queue.conversation_ids[0]
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name="About Printer 3 stopped syncing")).to_be_visible()
    expect(page).to_have_url(conversation_url(app_server, first))
    expect(page.locator(".conversation-list tr.unread")).to_have_count(3, timeout=5000)
    expect(page).to_have_title("(3) About Printer 3 stopped syncing · Portcullis")
    expect(rows.first).to_have_class(re.compile(r"\bopen\b"))

    # Replying: the thread shows it, the box is empty again, no reload.
    page.get_by_role("textbox", name="Reply").fill("We are looking into it right now.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#thread")).to_contain_text("We are looking into it right now.")
    expect(page.get_by_role("status").filter(has_text="Reply queued for sending.")).to_be_visible()
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")

    # Assigning and labels-free status change, each in place; the list follows.
    page.get_by_role("button", name="Assign to me").click()
    expect(page.locator("#assignee-current")).to_have_text("Alice Agent")
    expect(rows.first.locator(".assignee-cell")).to_contain_text("Alice Agent", timeout=5000)
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#conversation-status")).to_contain_text("Resolved")
    assert page.evaluate(NOT_RELOADED) is True
    page.screenshot(path=str(ARTIFACTS / "workspace-conversation.png"))

    # The next one, then back: the browser's history holds both, and the back button works.
    second = queue.conversation_ids[1]
    page.get_by_role("link", name="About Printer 2 stopped syncing").click()
    expect(page).to_have_url(conversation_url(app_server, second))
    expect(page.get_by_role("heading", name="About Printer 2 stopped syncing")).to_be_visible()
    assert page.evaluate(NOT_RELOADED) is True  # rows swapped in by live updates open in place too
    assert not problems, "\n".join(problems)
    # Going back loads the earlier URL from the server (no snapshot of customer data is kept
    # in the browser), with the policy asked again.
    page.go_back()
    expect(page).to_have_url(conversation_url(app_server, first))
    expect(page.get_by_role("heading", name="About Printer 3 stopped syncing")).to_be_visible()
    page.go_back()
    expect(page).to_have_url(f"{app_server}/")
    expect(page.get_by_role("heading", name="No conversation open")).to_be_visible()
    assert not [p for p in problems if not p.startswith("full page load")], "\n".join(problems)


def test_a_morning_queue_by_keyboard_alone(queue: Queue, app_server: str, browser: Browser) -> None:
    page, problems = open_workspace(browser, app_server, queue)
    first, second = queue.conversation_ids[:2]
    pressed: list[str] = []
    press = page.keyboard.press
    page.keyboard.press = lambda key, **kw: (pressed.append(key), press(key, **kw))[1]  # type: ignore[method-assign]
    page.on("load", lambda: problems.append(f"  after keys {pressed[-4:]} (first={first}, second={second})"))

    # The skip link is the first stop.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    page.keyboard.press("Escape")

    page.keyboard.press("?")
    overlay = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(overlay).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "workspace-shortcuts.png"))
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()

    page.keyboard.press("j")
    expect(page).to_have_url(conversation_url(app_server, first))
    page.keyboard.press("j")
    expect(page).to_have_url(conversation_url(app_server, second))
    expect(page.get_by_role("heading", name="About Printer 2 stopped syncing")).to_be_visible()
    page.keyboard.press("k")
    expect(page).to_have_url(conversation_url(app_server, first))
    expect(page.get_by_role("heading", name="About Printer 3 stopped syncing")).to_be_visible()

    # r: reply, with a canned response through "/"; Tab and Enter send it.
    page.keyboard.press("r")
    reply = page.get_by_role("textbox", name="Reply")
    expect(reply).to_be_focused()
    page.keyboard.type("/tha")
    expect(page.get_by_role("option").filter(has_text="/thanks")).to_be_visible()
    page.keyboard.press("Enter")
    expect(reply).to_have_value("Thank you for writing to us.")
    page.keyboard.type(" A technician calls you today.")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send reply")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#thread")).to_contain_text(
        "Thank you for writing to us. A technician calls you today."
    )

    # n: an internal note, in the same box.
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    note = page.get_by_role("textbox", name="Internal note")
    expect(note).to_be_focused()
    expect(reply).to_be_hidden()
    page.keyboard.type("Customer prefers mornings.")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#thread .note")).to_contain_text("Customer prefers mornings.")

    # a: assign to me; e: resolve; s: snooze choices are reachable.
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.locator("#assignee-current")).to_have_text("Alice Agent")
    page.keyboard.press("e")
    expect(page.locator("#conversation-status")).to_contain_text("Resolved")
    # Resolved, it leaves the list of open conversations; j goes on with the next one.
    expect(page.locator(".conversation-list tr[data-row]")).to_have_count(3)
    page.keyboard.press("j")
    expect(page).to_have_url(conversation_url(app_server, second))
    page.keyboard.press("s")
    expect(page.get_by_role("button", name=re.compile("^Later today"))).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#conversation-status")).to_contain_text("Snoozed")
    # The snooze's own answer and the live refresh it causes land before the next key, as
    # an agent waits to see an action done (a key pressed meanwhile goes to the old pane).
    page.wait_for_load_state("networkidle")

    # /: search.
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox", name="Search messages")).to_be_focused()
    assert not problems, "\n".join(problems)
    assert page.evaluate(NOT_RELOADED) is True


def test_drafts_survive_a_reload_and_live_messages_arrive_in_the_open_thread(
    queue: Queue, app_server: str, browser: Browser
) -> None:
    page, problems = open_workspace(browser, app_server, queue)
    first = queue.conversation_ids[0]
    page.get_by_role("link", name="About Printer 3 stopped syncing").click()
    page.get_by_role("textbox", name="Reply").fill("Half-written answer")
    page.get_by_role("tab", name=re.compile("Internal note")).click()
    page.get_by_role("textbox", name="Internal note").fill("Half-written note")
    page.reload()
    problems.remove(f"full page load of {page.url}")  # this one on purpose
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("Half-written answer")
    page.get_by_role("tab", name=re.compile("Internal note")).click()
    expect(page.get_by_role("textbox", name="Internal note")).to_have_value("Half-written note")
    page.get_by_role("tab", name=re.compile("Reply")).click()

    # A new message from the contact, stored as any channel stores it (from another thread:
    # this one runs Playwright's event loop): the open thread shows it without a reload.
    expect(page.locator("[data-live-state]")).to_have_text("Live")
    page.evaluate(f"{NOT_RELOADED} = true")

    def arrive() -> None:
        contact = Conversation.objects.get(pk=first).contact
        services.inbound_message_record(
            services.InboundMessage(
                inbox=queue.inbox,
                channel_kind=ChannelKind(queue.inbox.channel_kind),
                handle=contact.identities.get().handle,
                sender_name=contact.name,
                text="Any news? The printer still blinks.",
                conversation_id=first,
            )
        )

    with ThreadPoolExecutor(1) as pool:
        pool.submit(arrive).result()
    expect(page.locator("#thread")).to_contain_text("Any news? The printer still blinks.", timeout=5000)
    # What the agent was typing is untouched by the live update.
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("Half-written answer")
    assert page.evaluate(NOT_RELOADED) is True
    assert not problems, "\n".join(problems)


def test_a_colleague_sees_that_someone_else_is_replying(
    queue: Queue, app_server: str, browser: Browser
) -> None:
    alice, problems = open_workspace(browser, app_server, queue)
    bob = browser.new_context(**DESKTOP).new_page()
    sign_in(bob, app_server, "bob", queue.colleague_device)
    expect(bob.locator("[data-live-state]")).to_have_text("Live")
    for page in (alice, bob):
        page.get_by_role("link", name="About Printer 3 stopped syncing").click()
        expect(page.get_by_role("heading", name="About Printer 3 stopped syncing")).to_be_visible()
    # Typing goes on for a while, as a reply is written: a notice every 2.5 s at most.
    alice.get_by_role("textbox", name="Reply").press_sequentially(
        "We are on it and will write back soon", delay=150
    )
    expect(bob.locator("#typing")).to_have_text("Alice is replying…", timeout=10_000)
    # Alice does not see herself.
    expect(alice.locator("#typing")).to_have_text("")
    assert not problems, "\n".join(problems)


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_priority_is_set_in_place_by_keyboard_and_by_touch(
    queue: Queue, app_server: str, browser: Browser, size: str
) -> None:
    page = browser.new_context(**(DESKTOP if size == "desktop" else PHONE)).new_page()
    sign_in(page, app_server, "alice", queue.device)
    page.goto(f"{app_server}/conversations/{queue.conversation_ids[0]}/")
    expect(page.get_by_role("heading", name="About Printer 3 stopped syncing")).to_be_visible()
    status = page.locator("#conversation-status")
    expect(status).to_contain_text("Normal priority")
    page.evaluate(f"{NOT_RELOADED} = true")

    # p: the current priority's button; the next ones are a Tab away, Enter sets one.
    page.keyboard.press("p")
    expect(page.get_by_role("button", name="Normal", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Urgent", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(status).to_contain_text("Urgent priority")
    expect(page.get_by_role("button", name="Urgent", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("status").filter(has_text="Priority: Urgent.")).to_be_visible()
    if size == "desktop":
        # The list beside it follows, with the priority in words for a screen reader.
        row = page.locator(f'.conversation-list tr[data-conversation-id="{queue.conversation_ids[0]}"]')
        expect(row.locator(".priority")).to_have_text("↑ Urgent priority", timeout=5000)

    low = page.get_by_role("button", name="Low", exact=True)
    if size == "phone":
        low.tap()
    else:
        low.click()
    expect(status).to_contain_text("Low priority")
    assert page.evaluate(NOT_RELOADED) is True
    # On the phone the pane with its new control still does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]  # type: ignore[index]
