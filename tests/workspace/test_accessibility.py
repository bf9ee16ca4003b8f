"""axe-core (run inside Chromium) on the agent's workspace pages, at desktop and phone size:
no serious or critical violation.

axe-core is vendored (tests/vendor/, MPL-2.0, from the npm package) so a clean clone runs
this with no download; it is evaluated through Playwright, which the page's CSP does not
govern, and is never served to agents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django_otp.plugins.otp_totp.models import TOTPDevice
from guardian.shortcuts import assign_perm
from playwright.sync_api import Browser, Page, expect

from accounts import roles
from tests.browser import ARTIFACTS, sign_in
from tests.workspace.conftest import DESKTOP, Queue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).resolve().parents[1] / "vendor" / "axe-core-4.14.1.min.js").read_text()
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
BLOCKING = ("serious", "critical")
RULE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def violations(page: Page) -> list[str]:
    page.evaluate(AXE)
    run = "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
    result: dict[str, Any] = page.evaluate(run, RULE_TAGS)
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {[node['target'] for node in v['nodes']][:5]}"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_workspace_pages_have_no_serious_or_critical_violations(
    queue: Queue, app_server: str, browser: Browser, size: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context(**(DESKTOP if size == "desktop" else PHONE)).new_page()
    sign_in(page, app_server, "alice", queue.device)
    found = {"inbox": violations(page)}

    page.goto(f"{app_server}/conversations/{queue.conversation_ids[0]}/")
    expect(page.get_by_role("heading", name="About Printer 3 stopped syncing")).to_be_visible()
    if size == "desktop":
        expect(page.locator(".conversation-list tr[data-row]")).to_have_count(4)  # the list pane too
    found["conversation"] = violations(page)

    page.get_by_role("textbox", name="Reply").fill("/")
    expect(page.get_by_role("listbox", name="Canned responses")).to_be_visible()
    found["canned responses"] = violations(page)
    page.get_by_role("textbox", name="Reply").fill("")

    page.keyboard.press("Escape")  # out of the reply box: keys are shortcuts again
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    found["shortcuts"] = violations(page)
    page.screenshot(path=str(ARTIFACTS / f"workspace-axe-{size}.png"))
    assert not any(found.values()), found


def test_the_check_finds_a_planted_violation(browser: Browser) -> None:
    """The check above can fail: an image without a text alternative is critical."""
    page = browser.new_page()
    page.set_content('<!doctype html><html lang="en"><title>t</title><main><img src="x.png"></main></html>')
    assert any("image-alt" in found for found in violations(page))


@pytest.fixture
def supervisor(queue: Queue, make_user: Any) -> TOTPDevice:
    """Sam supervises the queue's inbox (written before the browser starts)."""
    sam = make_user(roles.SUPERVISOR, username="sam", is_staff=True)
    # The role's model permissions come from migrations, whose rows an earlier transactional
    # test's flush removed: the pages below need these.
    pages = ("inbox.change_inbox", "inbox.view_inboxuserobjectpermission", "accounts.view_user")
    pages += ("audit.view_alert", "accounts.view_changerequest")
    for dotted in pages:
        app_label, codename = dotted.split(".")
        sam.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    for codename in ("view_inbox", "reply_inbox", "manage_inbox"):
        assign_perm(codename, sam, queue.inbox)
    assign_perm("assign_inbox", queue.agent, queue.inbox)
    return TOTPDevice.objects.get(user=sam)


def test_the_main_admin_pages_have_no_serious_or_critical_violations(
    queue: Queue, supervisor: TOTPDevice, app_server: str, browser: Browser
) -> None:
    page = browser.new_context(**DESKTOP).new_page()
    sign_in(page, app_server, "sam", supervisor)
    found = {}
    for name, path in (
        ("dashboard", "/admin/"),
        ("inbox and its grants", f"/admin/inbox/inbox/{queue.inbox.pk}/change/"),
        ("grants", "/admin/inbox/inboxuserobjectpermission/"),
        ("people", "/admin/accounts/user/"),
        ("alerts", "/admin/audit/alert/"),
        ("change requests", "/admin/accounts/changerequest/"),
    ):
        response = page.goto(f"{app_server}{path}")
        assert response is not None and response.status == 200, path
        found[name] = violations(page)
    expect(page.get_by_role("heading", name="Waiting for you")).to_have_count(0)  # only on the dashboard
    page.goto(f"{app_server}/admin/")
    expect(page.get_by_role("heading", name="Waiting for you")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)
    assert not any(found.values()), found
