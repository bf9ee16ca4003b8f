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
from playwright.sync_api import Browser, Page, expect

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
