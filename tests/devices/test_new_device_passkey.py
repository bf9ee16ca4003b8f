"""A new device under DEVICE_NEW_DEVICE: waiting for a supervisor's approval, or — under
"passkey_or_approval" — opened by its owner's passkey on the device itself, with the
software authenticator answering the step-up ceremony as a browser would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from accounts import roles
from accounts.devices import services as device_services
from accounts.models import BrowserDevice, User
from audit.detectors.signin import NewDevice
from audit.models import SecurityEvent
from audit.services import security_event_record
from tests.browser import chromium, serve_app
from tests.conftest import PASSWORD, totp_of
from tests.devices.conftest import CHROME_UA, DeviceKey, stolen, url
from tests.passkeys.authenticator import SoftAuthenticator
from tests.passkeys.conftest import ORIGIN

# agent: the fixture passkey_app asks for by name.
from tests.passkeys.test_browser import agent, virtual_authenticator  # noqa: F401
from tests.passkeys.test_browser import register as add_passkey
from tests.passkeys.test_passkey_rules import register, signed

pytestmark = pytest.mark.django_db

PENDING = "/accounts/devices/pending/"
OPTIONS = "/accounts/passkeys/assertion-options/"


@pytest.fixture
def passkey_policy(settings: Any) -> Any:
    settings.DEVICE_NEW_DEVICE = "passkey_or_approval"
    return settings


def options(client: Client, key: DeviceKey) -> dict[str, Any]:
    """The page's script fetching the ceremony's options (fetch, so the proof is a header)."""
    response = client.post(OPTIONS, headers={"Device-Proof": key.proof("POST", url(OPTIONS))})
    assert response.status_code == 200, response.content[:300]
    result: dict[str, Any] = response.json()
    return result


def confirm(client: Client, key: DeviceKey, authenticator: SoftAuthenticator) -> Any:
    answer = authenticator.get(options(client, key), origin=ORIGIN)
    return signed(client, key, PENDING, {"passkey_assertion": answer})


def with_passkey(
    user: User, bound_client: Any, authenticator: SoftAuthenticator | None = None
) -> SoftAuthenticator:
    """A passkey the person added earlier, on a device they already use."""
    authenticator = authenticator or SoftAuthenticator()
    client, key = bound_client(user, approval=BrowserDevice.Approval.APPROVED)
    register(client, key, authenticator)
    return authenticator


def sign_in_on_new_device(user: User, totp: Any) -> tuple[Client, DeviceKey]:
    """Password and code on a browser the person never used: the real sign-in path."""
    client, key = Client(headers={"User-Agent": CHROME_UA}), DeviceKey()
    login = "/accounts/login/"
    assert signed(client, key, login, {"username": user.username, "password": PASSWORD}).status_code == 302
    verify = "/accounts/verify/"
    assert signed(client, key, verify, {"token": totp(user).now()}).status_code == 302
    return client, key


def pending_client(user: User, bound_client: Any) -> tuple[Client, DeviceKey, BrowserDevice]:
    client, key = bound_client(user, approval=BrowserDevice.Approval.PENDING)
    return client, key, BrowserDevice.objects.get(key_thumbprint=key.thumbprint)


def assert_confirm_refused(
    client: Client,
    key: DeviceKey,
    authenticator: SoftAuthenticator,
    device: BrowserDevice,
    *,
    says: bytes,
    reason: str,
) -> None:
    """The passkey's answer is refused with `says`, the device still waits, the refusal is recorded."""
    refused = confirm(client, key, authenticator)
    assert refused.status_code == 400 and says in refused.content
    assert BrowserDevice.objects.get(pk=device.pk).approval == "pending"
    assert SecurityEvent.objects.filter(
        kind="otp_failed", user=device.user_id, detail__reason=reason
    ).exists()


def test_the_passkey_step_up_opens_a_new_device_end_to_end(
    make_user: Any, bound_client: Any, totp: Any, passkey_policy: Any
) -> None:
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user, bound_client)
    # The person's device so far (the fixture makes its row; its sign-in would have recorded this).
    earlier = BrowserDevice.objects.get(user=user)
    security_event_record(kind=SecurityEvent.Kind.DEVICE_REGISTERED, user=user, detail={"device": earlier.pk})
    client, key = sign_in_on_new_device(user, totp)
    device = BrowserDevice.objects.get(user=user, key_thumbprint=key.thumbprint)
    assert device.approval == "pending" and device.trust_level == "low"
    assert client.get("/")["Location"] == PENDING
    page = client.get(PENDING).content.decode()
    assert "Confirm this device with a passkey" in page and "js/passkeys.js" in page
    assert 'http-equiv="refresh"' not in page  # a reload would cut the ceremony short

    response = confirm(client, key, authenticator)
    assert response.status_code == 302, response.content.decode()[:2000]
    device.refresh_from_db()
    assert (device.approval, device.approved_by, device.trust_level) == ("confirmed", user, "medium")
    assert device.trust_explanation.startswith("medium: confirmed by its owner's passkey, not reviewed")
    assert device.get_approval_display() == "Confirmed by its owner's passkey"  # the admin's column
    assert client.get("/").status_code == 200
    (event,) = SecurityEvent.objects.filter(kind="device_approved", user=user)
    assert event.detail["by"] == "passkey" and event.detail["device"] == device.pk
    # Monitoring's new-device detector still sees the registration the sign-in recorded.
    registered = SecurityEvent.objects.get(kind="device_registered", user=user, detail__device=device.pk)
    assert registered.detail["approval"] == "pending"
    (finding,) = NewDevice().detect([registered])
    assert finding.evidence["device"] == device.pk and finding.baseline == {"devices_before": 1}
    # A supervisor's approval still raises it to high.
    supervisor = make_user(roles.ADMINISTRATOR)
    assert device_services.device_approve(device=device, by=supervisor)
    device.refresh_from_db()
    assert (device.approval, device.approved_by, device.trust_level) == ("approved", supervisor, "high")


def test_the_approval_path_still_opens_the_device(
    make_user: Any, bound_client: Any, totp: Any, settings: Any
) -> None:
    settings.DEVICE_NEW_DEVICE = "approval"
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user, bound_client)
    client, key = sign_in_on_new_device(user, totp)
    device = BrowserDevice.objects.get(user=user, key_thumbprint=key.thumbprint)
    assert device.approval == "pending" and client.get("/")["Location"] == PENDING
    page = client.get(PENDING).content.decode()
    assert "Waiting for approval" in page and "passkey" not in page.lower()
    # Not offered, and not taken when posted anyway.
    assert confirm(client, key, authenticator).status_code == 403
    assert BrowserDevice.objects.get(pk=device.pk).approval == "pending"
    assert device_services.device_approve(device=device, by=make_user(roles.ADMINISTRATOR))
    assert client.get("/").status_code == 200
    assert BrowserDevice.objects.get(pk=device.pk).trust_level == "high"


def test_open_lets_a_new_device_in_unreviewed(make_user: Any, totp: Any, settings: Any) -> None:
    settings.DEVICE_NEW_DEVICE = "open"
    user = make_user(roles.AGENT)
    client, _ = sign_in_on_new_device(user, totp)
    device = BrowserDevice.objects.get(user=user)
    assert (device.approval, device.trust_level) == ("unreviewed", "medium")
    assert client.get("/").status_code == 200


def test_without_a_passkey_the_page_says_whom_to_ask(
    make_user: Any, bound_client: Any, passkey_policy: Any
) -> None:
    client, _, _ = pending_client(make_user(roles.AGENT), bound_client)
    page = client.get(PENDING).content.decode()
    assert "Confirm this device with a passkey" not in page
    assert "Ask a supervisor to approve this device, or add a passkey on a device you already use" in page


def test_a_stolen_session_cookie_cannot_confirm_the_device(
    make_user: Any, bound_client: Any, passkey_policy: Any
) -> None:
    """The thief holds every cookie, even an answer of the victim's passkey: without the
    device's key nothing is confirmed, under enforce (the gate) and monitor (the service)."""
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user, bound_client)
    client, key, device = pending_client(user, bound_client)
    answer = authenticator.get(options(client, key), origin=ORIGIN)
    thief = stolen(client)
    assert thief.post(PENDING, {"passkey_assertion": answer}).status_code == 403
    thiefs_key = DeviceKey()
    assert signed(thief, thiefs_key, PENDING, {"passkey_assertion": answer}).status_code == 403
    passkey_policy.DEVICE_BINDING = "monitor"
    assert thief.post(PENDING, {"passkey_assertion": answer}).status_code == 403
    assert BrowserDevice.objects.get(pk=device.pk).approval == "pending"
    assert not SecurityEvent.objects.filter(kind="device_approved").exists()


def test_another_users_passkey_does_not_confirm_my_device(
    make_user: Any, bound_client: Any, passkey_policy: Any
) -> None:
    user, other = make_user(roles.AGENT), make_user(roles.AGENT)
    with_passkey(user, bound_client)
    others = with_passkey(other, bound_client)
    client, key, device = pending_client(user, bound_client)
    assert_confirm_refused(
        client, key, others, device, says=b"not registered for this account", reason="unknown credential"
    )


def test_a_replayed_assertion_does_not_confirm(
    make_user: Any, bound_client: Any, passkey_policy: Any
) -> None:
    """An answer the person gave on another page (or one captured on its way) is spent:
    the session's challenge went with its first use."""
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user, bound_client)
    client, key, device = pending_client(user, bound_client)
    answer = authenticator.get(options(client, key), origin=ORIGIN)
    first = signed(client, key, PENDING, {"passkey_assertion": answer})
    assert first.status_code == 302
    BrowserDevice.objects.filter(pk=device.pk).update(approval=BrowserDevice.Approval.PENDING)
    again = signed(client, key, PENDING, {"passkey_assertion": answer})
    assert again.status_code == 400 and b"expired or was already used" in again.content
    assert BrowserDevice.objects.get(pk=device.pk).approval == "pending"


def test_a_code_does_not_confirm_a_device(
    make_user: Any, bound_client: Any, totp: Any, passkey_policy: Any
) -> None:
    user = make_user(roles.AGENT)
    with_passkey(user, bound_client)
    client, key, device = pending_client(user, bound_client)
    refused = signed(client, key, PENDING, {"token": totp(user).now()})
    assert refused.status_code == 400 and b"a code does not" in refused.content
    assert BrowserDevice.objects.get(pk=device.pk).approval == "pending"
    assert client.get("/")["Location"] == PENDING


def test_a_synced_passkey_does_not_confirm_when_policy_wants_a_bound_one(
    make_user: Any, bound_client: Any, passkey_policy: Any
) -> None:
    passkey_policy.DEVICE_NEW_DEVICE_PASSKEY_BOUND = True
    user = make_user(roles.AGENT)
    synced = with_passkey(user, bound_client, SoftAuthenticator(backup_eligible=True, backed_up=True))
    client, key, device = pending_client(user, bound_client)
    assert_confirm_refused(client, key, synced, device, says=b"bound to one device", reason="synced passkey")
    bound = with_passkey(user, bound_client)
    assert confirm(client, key, bound).status_code == 302
    assert BrowserDevice.objects.get(pk=device.pk).approval == "confirmed"


@pytest.fixture
def passkey_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, TOTPDevice]]:
    """The app in its own process with the passkey path on, and alice (the passkeys
    browser tests' agent, with a conversation in her inbox)."""
    alice: TOTPDevice = request.getfixturevalue("agent")
    # WebAuthn refuses an IP address as relying party; http://localhost is a secure context.
    with serve_app(
        tmp_path,
        DEVICE_BINDING="enforce",
        DEVICE_NEW_DEVICE="passkey_or_approval",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    ) as base:
        yield base.replace("127.0.0.1", "localhost"), alice


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_chromium_a_new_device_is_opened_by_the_passkey_added_on_the_first(
    passkey_app: tuple[str, TOTPDevice], make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chromium's virtual authenticator over CDP; the second browser holds the same
    credential (a security key moved from one computer to the other)."""
    base, alice = passkey_app
    user = alice.user
    with chromium(monkeypatch) as browser:
        first = browser.new_context()
        page = first.new_page()
        cdp, authenticator_id = virtual_authenticator(first, page)
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("Code").fill(totp_of(alice).now())
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("heading", name="Waiting for approval")).to_be_visible()
        expect(page.get_by_text("Ask a supervisor to approve this device")).to_be_visible()
        # The first device: a supervisor approves it, and the person adds a passkey there.
        device_services.device_approve(
            device=BrowserDevice.objects.get(user=user), by=make_user(roles.ADMINISTRATOR)
        )
        page.reload()
        expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
        add_passkey(page, base)
        (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})[
            "credentials"
        ]

        second = browser.new_context()
        page = second.new_page()
        cdp, authenticator_id = virtual_authenticator(second, page)
        cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": credential})
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="Use a passkey instead").click()
        expect(page.get_by_role("heading", name="Waiting for approval")).to_be_visible()
        page.get_by_role("button", name="Confirm this device with a passkey").click()
        expect(page.get_by_role("heading", name="Inbox")).to_be_visible()

    new = BrowserDevice.objects.filter(user=user).order_by("-pk").first()
    assert new is not None and (new.approval, new.approved_by, new.trust_level) == (
        "confirmed",
        user,
        "medium",
    )
    assert SecurityEvent.objects.filter(
        kind="device_approved", detail__by="passkey", detail__device=new.pk
    ).exists()
    assert not SecurityEvent.objects.filter(kind="device_proof_refused").exists()
