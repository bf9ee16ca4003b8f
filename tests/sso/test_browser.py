"""A person signs in with the company's IdP in Chromium: the button on the sign-in page,
the real provider, and back to the inbox, verified by the IdP's MFA."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import IdentityProvider, IdpSession
from tests.browser import chromium, serve_app
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
