"""Billing needs an approved device and a device-bound passkey: a supervisor writes the
rule in the admin in monitor mode, reads who it would block, then enforces it. With device
binding on (every write signed by the device key), passkeys registered and used over HTTP
with the software authenticator; the device's posture shows the passkey but is not raised
by it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts import roles
from accounts.models import BrowserDevice, Passkey, User
from audit.models import RuleDecision
from inbox.models import PolicyRule
from tests.accounts.test_supervision import supervisor_of
from tests.devices.conftest import (
    DeviceKey,
    device_binding,  # noqa: F401  # autouse: binding enforced in every test here
    url,
)
from tests.inbox.conftest import Segments
from tests.inbox.test_rules import rule_form
from tests.passkeys.authenticator import SoftAuthenticator, b64url
from tests.passkeys.conftest import ORIGIN

pytestmark = pytest.mark.django_db

APPROVED = BrowserDevice.Approval.APPROVED
SOFT_AAGUID = "00000000-0000-0000-0000-000000000000"


def synced() -> SoftAuthenticator:
    return SoftAuthenticator(backup_eligible=True, backed_up=True)


def signed(client: Client, key: DeviceKey, path: str, data: dict[str, Any] | None = None) -> Any:
    """A write as the page's script sends it: with a device proof for this very request."""
    return client.post(path, {**(data or {}), "device_proof": key.proof("POST", url(path))})


def register(client: Client, key: DeviceKey, authenticator: SoftAuthenticator) -> Passkey:
    options = signed(client, key, "/accounts/passkeys/registration-options/").json()
    answer = authenticator.create(options, origin=ORIGIN)
    response = signed(client, key, "/accounts/passkeys/add/", {"name": "key", "credential": answer})
    assert response.status_code == 302, response.content.decode()[:2000]
    return Passkey.objects.get(credential_id=b64url(authenticator.credential_id))


def step_up(client: Client, key: DeviceKey, authenticator: SoftAuthenticator, target: str = "/") -> Any:
    """Verify the session with the passkey (the step-up prompt's passkey path)."""
    options = signed(client, key, "/accounts/passkeys/assertion-options/").json()
    return signed(
        client,
        key,
        "/accounts/step-up/",
        {
            "passkey_assertion": authenticator.get(options, origin=ORIGIN),
            "step_up_next": target,
            "step_up_method": "GET",
        },
    )


def billing_agent(make_user: Any, segments: Segments, username: str) -> User:
    user = make_user(roles.AGENT, roles.BILLING_AGENT, username=username)
    user.groups.add(segments.billing_team)
    return user


def test_billing_needs_an_approved_device_and_a_device_bound_passkey_monitor_then_enforce(
    segments: Segments, make_user: Any, bound_client: Any
) -> None:
    supervisor = supervisor_of(make_user, "bea", segments.billing, segments.billing_team)
    admin, admin_key = bound_client(supervisor, approval=APPROVED)
    # Four Billing sessions: a code, a synced passkey, and one person's device-bound
    # passkey on an approved device and on a device nobody reviewed.
    with_code, _ = bound_client(segments.billing_agent, approval=APPROVED)
    sam = billing_agent(make_user, segments, "sam")
    with_synced, synced_key = bound_client(sam, approval=APPROVED)
    register(with_synced, synced_key, phone := synced())
    assert step_up(with_synced, synced_key, phone).status_code == 303
    kay = billing_agent(make_user, segments, "kay")
    with_bound, bound_key = bound_client(kay, approval=APPROVED)
    register(with_bound, bound_key, security_key := SoftAuthenticator())
    assert step_up(with_bound, bound_key, security_key).status_code == 303
    unreviewed, unreviewed_key = bound_client(kay)
    assert step_up(unreviewed, unreviewed_key, security_key).status_code == 303

    form = rule_form(
        name="Billing: approved device and device-bound passkey",
        window_start="",
        window_end="",
        time_zone="UTC",
        inboxes=[segments.billing.pk],
        actions=["view", "reply"],
        required_authenticator="passkey_bound",
        min_device_trust="high",
    )
    assert signed(admin, admin_key, "/admin/inbox/policyrule/add/", form).status_code == 302
    rule = PolicyRule.objects.get()
    assert rule.mode == "monitor" and rule.created_by == supervisor

    page = f"/conversations/{segments.billing_conversations[0].pk}/"
    for client in (with_code, with_synced, with_bound, unreviewed):
        assert client.get(page).status_code == 200
    # Who it would block, and why: the input each blocked request had.
    would = RuleDecision.objects.filter(
        rule_id=rule.pk, outcome="would_deny", object_type="inbox.conversation"
    )
    inputs = {(d.user_id, d.session_id): d.inputs for d in would}
    sessions = {client: client.session["portcullis_session_id"] for client in (with_code, with_synced)}
    assert inputs[(segments.billing_agent.pk, sessions[with_code])]["authenticator"] == "totp"
    assert inputs[(sam.pk, sessions[with_synced])]["authenticator"] == "passkey (synced)"
    kays = [d for (user_id, _), d in inputs.items() if user_id == kay.pk]
    assert kays == [{"surface": "web", "device_trust": "medium"}]
    # The supervisor reads the same in the admin: the rule's decisions, its impact.
    listed = admin.get(f"/admin/audit/ruledecision/?rule_id={rule.pk}").context["cl"].result_list
    assert {d.user_id for d in listed} == {segments.billing_agent.pk, sam.pk, kay.pk}
    impact = admin.get(f"/admin/inbox/policyrule/{rule.pk}/change/").content.decode()
    assert all(name in impact for name in ("bill", "sam", "kay"))

    enforce = {**form, "mode": "enforce", "confirm_enforce": "on"}
    assert signed(admin, admin_key, f"/admin/inbox/policyrule/{rule.pk}/change/", enforce).status_code == 302
    for client in (with_code, with_synced, unreviewed):
        assert client.get(page).status_code == 404
    assert with_bound.get(page).status_code == 200
    assert RuleDecision.objects.filter(rule_id=rule.pk, outcome="denied", user_id=sam.pk).exists()
    assert not RuleDecision.objects.filter(
        rule_id=rule.pk, outcome="denied", session_id=with_bound.session["portcullis_session_id"]
    ).exists()


def test_a_step_up_for_a_device_bound_passkey_takes_neither_a_code_nor_a_synced_passkey(
    segments: Segments, bound_client: Any, totp: Any
) -> None:
    """A code or a synced passkey is a fresh second factor, but not the one the rule asks
    for: the prompt comes back, naming it, until the device-bound passkey answers."""
    rule = PolicyRule.objects.create(
        name="Billing: step up with a device-bound passkey",
        mode="enforce",
        effect=PolicyRule.Effect.STEP_UP,
        required_authenticator="passkey_bound",
    )
    rule.inboxes.set([segments.billing])
    agent = segments.billing_agent
    client, key = bound_client(agent)
    register(client, key, phone := synced())
    register(client, key, security_key := SoftAuthenticator())
    page = f"/conversations/{segments.billing_conversations[0].pk}/"

    prompt = client.get(page)
    assert prompt.status_code == 403
    assert b"device-bound passkey" in prompt.content and b"Use a passkey instead" in prompt.content
    by_code = signed(
        client,
        key,
        "/accounts/step-up/",
        {"token": totp(agent).now(), "step_up_next": page, "step_up_method": "GET"},
    )
    assert by_code.status_code == 303 and client.get(page).status_code == 403
    assert step_up(client, key, phone, page).status_code == 303
    assert client.get(page).status_code == 403
    assert step_up(client, key, security_key, page)["Location"] == page
    assert client.get(page).status_code == 200


def test_the_device_shows_the_last_passkey_verified_on_it_and_is_not_raised_by_it(
    segments: Segments, bound_client: Any, settings: Any
) -> None:
    settings.PASSKEY_AUTHENTICATOR_NAMES = {SOFT_AAGUID: "Test key model"}
    settings.DEVICE_MIN_BROWSER_VERSIONS = {"Chrome": 120}
    agent = segments.billing_agent
    client, key = bound_client(agent)
    passkey = register(client, key, security_key := SoftAuthenticator())
    assert step_up(client, key, security_key).status_code == 303
    device = BrowserDevice.objects.get(key_thumbprint=key.thumbprint)
    passkey.refresh_from_db()
    assert device.last_passkey == passkey and device.last_passkey_at == passkey.last_used_at
    # Unreviewed it stays medium: the passkey is shown, it raises nothing.
    assert device.trust_level == "medium"
    assert (
        device.trust_explanation == "medium: device key, not reviewed · device-bound passkey (Test key model)"
    )
    assert "device-bound passkey (Test key model)" in client.get("/accounts/devices/").content.decode()

    # An outdated browser stays low, whatever passkey unlocked its session.
    old, old_key = bound_client(agent, browser_family="Chrome", browser_version="100.0.1")
    assert step_up(old, old_key, security_key).status_code == 303
    old_device = BrowserDevice.objects.get(key_thumbprint=old_key.thumbprint)
    assert old_device.trust_level == "low" and old_device.last_passkey == passkey
    assert old_device.trust_explanation.startswith("low: browser out of date")

    # The last one counts: a synced passkey after it is shown as such.
    passkey_synced = register(client, key, phone := synced())
    assert step_up(client, key, phone).status_code == 303
    device.refresh_from_db()
    assert (
        device.last_passkey == passkey_synced and device.passkey_posture == "synced passkey (Test key model)"
    )
    # A removed passkey vouches for nothing any more.
    assert signed(client, key, f"/accounts/passkeys/{passkey_synced.pk}/remove/").status_code == 302
    device.refresh_from_db()
    assert device.last_passkey is None and device.trust_explanation == "medium: device key, not reviewed"
