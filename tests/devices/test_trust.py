"""Device trust in policy rules ("Billing needs an approved device": monitor, then enforce)
and supervisors approving devices in their scope from the admin."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import BrowserDevice
from audit.models import RuleDecision, SecurityEvent
from inbox.models import PolicyRule
from inbox.policy import rules
from tests.accounts.test_supervision import supervisor_of
from tests.devices.conftest import url
from tests.inbox.conftest import Segments

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/browserdevice/"


def approved_device_rule(segments: Segments, mode: str) -> PolicyRule:
    rule = PolicyRule.objects.create(
        name="Billing needs an approved device",
        mode=mode,
        effect=PolicyRule.Effect.DENY,
        min_device_trust=PolicyRule.DeviceTrust.HIGH,
    )
    rule.inboxes.set([segments.billing])
    return rule


def admin_action(client: Any, key: Any, action: str, devices: list[BrowserDevice]) -> Any:
    return client.post(
        CHANGELIST,
        {
            "action": action,
            "_selected_action": [d.pk for d in devices],
            "device_proof": key.proof("POST", url(CHANGELIST)),
        },
    )


def test_billing_needs_an_approved_device_in_monitor_then_enforce(
    segments: Segments, make_user: Any, bound_client: Any
) -> None:
    agent_client, _ = bound_client(segments.billing_agent)
    page = f"/conversations/{segments.billing_conversations[0].pk}/"
    rule = approved_device_rule(segments, PolicyRule.Mode.MONITOR)
    assert agent_client.get(page).status_code == 200
    decisions = RuleDecision.objects.filter(rule_id=rule.pk, user_id=segments.billing_agent.pk)
    assert {d.outcome for d in decisions} == {"would_deny"}
    assert all("device_trust" in d.inputs for d in decisions)

    PolicyRule.objects.filter(pk=rule.pk).update(mode=PolicyRule.Mode.ENFORCE)
    rules.rules_changed()
    rules.forget()
    assert agent_client.get(page).status_code == 404
    # The support inbox is not Billing: an unreviewed device still works there.
    support_client, _ = bound_client(segments.support_agent)
    assert support_client.get(f"/conversations/{segments.support_conversations[0].pk}/").status_code == 200

    supervisor = supervisor_of(make_user, "bea", segments.billing, segments.billing_team)
    # The rule binds Billing's supervisor too: from an unreviewed device she manages nothing there.
    unreviewed_client, unreviewed_key = bound_client(supervisor)
    device = BrowserDevice.objects.get(user=segments.billing_agent)
    assert admin_action(unreviewed_client, unreviewed_key, "approve", [device]).status_code == 302
    assert BrowserDevice.objects.get(pk=device.pk).approval == "unreviewed"
    admin_client, admin_key = bound_client(supervisor, approval=BrowserDevice.Approval.APPROVED)
    assert admin_action(admin_client, admin_key, "approve", [device]).status_code == 302
    device.refresh_from_db()
    assert device.approval == "approved" and device.approved_by == supervisor and device.trust_level == "high"
    assert SecurityEvent.objects.filter(kind="device_approved", user=segments.billing_agent).exists()
    assert agent_client.get(page).status_code == 200


def test_a_supervisor_sees_and_approves_only_devices_in_their_scope_never_their_own(
    segments: Segments, make_user: Any, bound_client: Any
) -> None:
    supervisor = supervisor_of(make_user, "bea", segments.billing, segments.billing_team)
    admin_client, admin_key = bound_client(supervisor)
    bound_client(segments.billing_agent)
    bound_client(segments.support_agent)
    listed = {d.user for d in admin_client.get(CHANGELIST).context["cl"].result_list}
    assert listed == {supervisor, segments.billing_agent}

    own = BrowserDevice.objects.get(user=supervisor)
    outside = BrowserDevice.objects.get(user=segments.support_agent)
    assert admin_action(admin_client, admin_key, "approve", [own, outside]).status_code == 302
    assert set(BrowserDevice.objects.filter(approval="approved")) == set()
    # Out of scope is as if it did not exist.
    assert admin_client.get(f"{CHANGELIST}{outside.pk}/change/").status_code == 302

    theirs = BrowserDevice.objects.get(user=segments.billing_agent)
    assert admin_action(admin_client, admin_key, "approve", [theirs]).status_code == 302
    assert set(BrowserDevice.objects.filter(approval="approved")) == {theirs}
    # Revoking ends the device's sessions.
    assert admin_action(admin_client, admin_key, "revoke", [theirs]).status_code == 302
    theirs.refresh_from_db()
    assert theirs.revoked_at is not None
    assert theirs.sessions.get().end_reason == "device_revoked"


def test_an_agent_has_no_device_admin(segments: Segments, bound_client: Any) -> None:
    client, _ = bound_client(segments.billing_agent)
    assert client.get(CHANGELIST).status_code in (302, 403)
