"""A person signs in with the company's IdP in Chromium: the button on the sign-in page,
the real provider, and back to the inbox, verified by the IdP's MFA."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.cached_db import SessionStore
from playwright.sync_api import expect

from accounts import roles
from accounts.models import IdentityProvider, IdpSession, User
from accounts.services import OTP_VERIFIED_AT_KEY
from audit.models import SecurityEvent
from inbox.exports.models import ExportJob
from inbox.models import ChannelKind, Inbox, Module
from tests.browser import chromium, serve_app
from tests.inbox.conftest import grant_inbox
from tests.sso.conftest import op_start, op_stop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_with_the_idp_from_the_sign_in_page(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_provider: Callable[..., IdentityProvider],
    transactional_db: Any,
) -> None:
    with serve_app(tmp_path) as base:
        op = op_start(callbacks=[f"{base}/accounts/sso/corp/callback/"], default_login="alice")
        try:
            make_provider(op)
            with chromium(monkeypatch) as browser:
                page = browser.new_page()
                page.goto(f"{base}/accounts/login/")
                page.get_by_role("link", name="Sign in with Corp IdP").click()
                expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
                assert page.url.startswith(base)
        finally:
            op_stop(op)
    assert IdpSession.objects.get().assurance == "totp"


@pytest.mark.usefixtures("role_groups")
def test_an_export_steps_up_with_a_fresh_idp_sign_in_and_goes_through(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_provider: Callable[..., IdentityProvider],
) -> None:
    """The whole round trip a person makes: the step-up page's IdP button (a page that
    leaves by meta refresh: the CSP's form-action would stop a form post's redirect), a
    fresh sign-in at the real provider, and the export form posted again by the return
    page, signed by the device script like any form."""
    # Device binding enforced: the continued post must carry a proof of its own.
    with serve_app(tmp_path, DEVICE_BINDING="enforce") as base:
        op = op_start(callbacks=[f"{base}/accounts/sso/corp/callback/"], default_login="alice")
        try:
            make_provider(op)
            with chromium(monkeypatch) as browser:
                page = browser.new_page()
                page.goto(f"{base}/accounts/login/")
                page.get_by_role("link", name="Sign in with Corp IdP").click()
                expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
                # The landing page binds the SSO session to the device key and reloads itself;
                # a navigation started before that reload would be aborted by it.
                binding = page.locator('meta[name="device-binding"]')
                expect(binding).to_have_attribute("data-bind-now", "0")
                alice = User.objects.get(username="alice")
                alice.groups.add(Group.objects.get(name=roles.AGENT))
                inbox = Inbox.objects.create(
                    name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT
                )
                grant_inbox(inbox, alice, ("view_inbox", "export_inbox"))
                page.goto(f"{base}/exports/")
                # The device script's first refresh (binding the SSO session) saves the
                # session too: settled first, so the change below is not overwritten.
                page.wait_for_load_state("networkidle")
                # The IdP's second factor an hour old: an export needs a fresh one.
                cookie = next(c for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME)
                session = SessionStore(session_key=cookie["value"])
                session[OTP_VERIFIED_AT_KEY] = time.time() - 3600
                session.save()

                page.get_by_role("button", name="Export").click()
                page.get_by_role("button", name="Confirm with Corp IdP").click()
                # Out to the IdP, back to its callback, and on to the export's own answer.
                page.wait_for_url(f"{base}/accounts/sso/corp/callback/**")
                page.wait_for_url(f"{base}/exports/")
                expect(page.get_by_role("heading", name="Exports", exact=True)).to_be_visible()
        finally:
            op_stop(op)
    job = ExportJob.objects.get()
    assert job.user == alice and job.inbox == inbox
    assert SecurityEvent.objects.filter(
        kind=SecurityEvent.Kind.OTP_SUCCEEDED, user=alice, detail__method="oidc_step_up"
    ).exists()
