"""Browser-version minimums as a posture signal: an outdated browser lowers the device's
trust, the owner is told why, and a device rule acts on it in monitor, then enforce."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import BrowserDevice
from audit.models import RuleDecision
from inbox.models import PolicyRule
from inbox.policy import rules
from tests.inbox.conftest import Segments

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def minimums(settings: Any) -> None:
    settings.DEVICE_MIN_BROWSER_VERSIONS = {"Chrome": 120}


@pytest.mark.parametrize(
    ("family", "version", "outdated"),
    [
        ("Chrome", "119.0", True),
        ("Chrome", "120.0", False),
        ("Chrome", "131", False),
        ("Chrome", "", True),  # a family with a minimum and no readable version is not trusted
        ("Firefox", "60.0", False),  # no minimum configured for it
    ],
)
def test_a_browser_below_its_familys_minimum_is_outdated_and_low_trust(
    segments: Segments, family: str, version: str, outdated: bool
) -> None:
    device = BrowserDevice(
        user=segments.billing_agent,
        binding=BrowserDevice.Binding.KEY,
        approval=BrowserDevice.Approval.APPROVED,
        browser_family=family,
        browser_version=version,
    )
    assert device.browser_outdated is outdated
    assert device.trust_level == ("low" if outdated else "high")


def test_a_current_browser_rule_monitors_then_enforces_and_the_owner_sees_why(
    segments: Segments, bound_client: Any
) -> None:
    client, _ = bound_client(
        segments.billing_agent, browser_family="Chrome", browser_version="100.0", approval="approved"
    )
    rule = PolicyRule.objects.create(
        name="Billing needs a trusted device",
        mode=PolicyRule.Mode.MONITOR,
        effect=PolicyRule.Effect.DENY,
        min_device_trust=PolicyRule.DeviceTrust.MEDIUM,
    )
    rule.inboxes.set([segments.billing])
    page = f"/conversations/{segments.billing_conversations[0].pk}/"
    assert client.get(page).status_code == 200
    decisions = RuleDecision.objects.filter(rule_id=rule.pk, user_id=segments.billing_agent.pk)
    assert {d.outcome for d in decisions} == {"would_deny"}

    PolicyRule.objects.filter(pk=rule.pk).update(mode=PolicyRule.Mode.ENFORCE)
    rules.rules_changed()
    rules.forget()
    assert client.get(page).status_code == 404
    assert b"browser out of date" in client.get("/accounts/devices/").content

    # Updating the browser (a newer version registered) restores the approved device's trust.
    BrowserDevice.objects.filter(user=segments.billing_agent).update(browser_version="131.0")
    assert client.get(page).status_code == 200
