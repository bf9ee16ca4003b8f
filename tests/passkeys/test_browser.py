"""Passkeys in a real browser (Debian's Chromium) with its virtual authenticator over CDP:
register from the security page and sign in with the passkey as the second step with
device binding enforced (every post the passkey script makes is signed by the device key
like any other); step up with it and remove it. Screenshots: test-artifacts/passkey-*.png.

The step-up runs both ways: with binding off its continuation is a 307 re-post; with
binding on a page posts the fields on, signed for their own URL."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, BrowserContext, Page, expect

from accounts import roles
from accounts.models import BrowserDevice, Passkey, UserSession
from audit.models import SecurityEvent
from inbox.models import ChannelKind, Inbox, Team
from tests.browser import ARTIFACTS, chromium, serve_app, sign_in
from tests.conftest import PASSWORD
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


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


@pytest.fixture(params=["enforce"])
def app_server(request: pytest.FixtureRequest, agent: TOTPDevice, tmp_path: Path) -> Iterator[str]:
    # WebAuthn refuses an IP address as relying party; http://localhost is a secure context.
    with serve_app(tmp_path, DEVICE_BINDING=request.param, ALLOWED_HOSTS="127.0.0.1,localhost") as base:
        yield base.replace("127.0.0.1", "localhost")


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    with chromium(monkeypatch) as launched:
        yield launched


def virtual_authenticator(context: BrowserContext, page: Page) -> tuple[Any, str]:
    """A platform authenticator with user verification (a fingerprint that always matches)."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"passkey-{name}.png"), full_page=True)


def register(page: Page, base: str) -> None:
    """From the security page; the sign-in's code is still fresh, so no prompt comes first."""
    page.goto(f"{base}/accounts/security/")
    page.get_by_label("Name of a new passkey").fill("work laptop")
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_role("button", name="Create passkey").click()
    expect(page.get_by_text("Passkey “work laptop” added.")).to_be_visible()


def test_register_and_sign_in_with_a_passkey(agent: TOTPDevice, app_server: str, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    cdp, authenticator_id = virtual_authenticator(context, page)
    sign_in(page, app_server, "alice", agent)
    register(page, app_server)
    expect(page.get_by_role("cell", name="work laptop", exact=True)).to_be_visible()
    shot(page, "registered")
    passkey = Passkey.objects.get(user=agent.user)
    (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    assert credential["isResidentCredential"] and passkey.credential_id == credential["credentialId"].rstrip(
        "="
    ).replace("+", "-").replace("/", "_")

    # Sign in again: password, then the passkey instead of a code.
    page.get_by_role("button", name="Sign out").first.click()
    page.goto(f"{app_server}/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Use a passkey instead").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    session = UserSession.objects.get(user=agent.user, ended_at__isnull=True)
    assert session.device is not None  # bound to the browser's device key as ever
    passkey.refresh_from_db()
    assert passkey.sign_count >= 1 and passkey.last_used_at is not None
    assert not SecurityEvent.objects.filter(kind="device_proof_refused").exists()
    kinds = list(
        SecurityEvent.objects.filter(user=agent.user, detail__factor="passkey")
        .order_by("pk")
        .values_list("kind", flat=True)
    )
    assert kinds == ["enrolled", "otp_succeeded"]
    # Chromium's platform authenticator neither syncs nor backs up: the device shows it
    # as device-bound, and its trust is what it was (unreviewed: medium).
    assert BrowserDevice.objects.get(pk=session.device_id).last_passkey == passkey
    page.goto(f"{app_server}/accounts/devices/")
    expect(page.get_by_text("Trust medium: device key, not reviewed · device-bound passkey")).to_be_visible()


@pytest.mark.parametrize("app_server", ["off", "enforce"], indirect=True)
def test_step_up_with_a_passkey_to_remove_it(agent: TOTPDevice, app_server: str, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    virtual_authenticator(context, page)
    sign_in(page, app_server, "alice", agent)
    register(page, app_server)

    # Remove it once the factor is stale: the step-up prompt takes the passkey, then the
    # removal goes on by itself.
    with_stale_factor(page, app_server, settings.STEP_UP_MAX_AGE.total_seconds() + 60)
    page.goto(f"{app_server}/accounts/security/")
    page.get_by_role("button", name="Remove passkey work laptop").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    shot(page, "step-up")
    page.get_by_role("button", name="Use a passkey instead").click()
    expect(page.get_by_text("Passkey “work laptop” removed.")).to_be_visible()
    assert not Passkey.objects.filter(user=agent.user).exists()
    kinds = list(
        SecurityEvent.objects.filter(user=agent.user, detail__factor="passkey")
        .order_by("pk")
        .values_list("kind", flat=True)
    )
    assert kinds == ["enrolled", "otp_succeeded", "factor_reset"]
    assert not SecurityEvent.objects.filter(kind="device_proof_refused").exists()


def with_stale_factor(page: Page, base: str, age_seconds: float) -> None:
    """Age this browser's second factor on the server, as time would."""
    cookie = next(c for c in page.context.cookies(base) if c["name"] == settings.SESSION_COOKIE_NAME)
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=cookie["value"])
    store["portcullis_otp_verified_at"] = store["portcullis_otp_verified_at"] - age_seconds
    store.save()
