"""Signing out at the IdP ends the Portcullis session: the real provider posts its signed
logout token to the running app (OpenID Connect Back-Channel Logout 1.0)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from authlib.jose import JsonWebKey, jwt

from accounts.models import IdentityProvider, IdpSession, UserSession
from accounts.sso.oidc import BACKCHANNEL_LOGOUT_EVENT
from audit.models import SecurityEvent
from tests.sso.conftest import CLIENT_ID, OpenIDProvider, idp_login, op_start, op_stop


@pytest.fixture
def live_op(live_server: Any) -> Iterator[tuple[str, OpenIDProvider]]:
    # node resolves "localhost" to ::1 first; the live server listens on 127.0.0.1.
    base = live_server.url.replace("localhost", "127.0.0.1")
    op = op_start(
        callbacks=[f"{base}/accounts/sso/corp/callback/"],
        backchannel=f"{base}/accounts/sso/corp/backchannel-logout/",
    )
    yield base, op
    op_stop(op)


def _signed_in_browser(base: str, op: OpenIDProvider) -> httpx.Client:
    browser = httpx.Client()
    start = browser.get(f"{base}/accounts/sso/corp/start/?next=/")
    assert start.status_code == 302
    callback = idp_login(browser, start.headers["location"], "alice", stop_at=f"{base}/accounts/sso/")
    assert browser.get(callback).headers["location"] == "/"
    assert browser.get(f"{base}/").status_code == 200
    return browser


def test_signing_out_at_the_idp_ends_the_portcullis_session(
    live_op: tuple[str, OpenIDProvider], make_provider: Callable[..., IdentityProvider]
) -> None:
    base, op = live_op
    make_provider(op)
    browser = _signed_in_browser(base, op)
    assert IdpSession.objects.get().sid  # the IdP's session id, which its logout token names

    # The person signs out at the IdP (its own confirmation page), which tells every client.
    page = browser.get(f"{op.issuer}/session/end")
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text)
    assert xsrf, page.text[:500]
    browser.post(f"{op.issuer}/session/end/confirm", data={"xsrf": xsrf.group(1), "logout": "yes"})

    deadline = time.monotonic() + 5
    while UserSession.objects.filter(ended_at__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = UserSession.objects.get()
    assert ended.end_reason == UserSession.EndReason.IDP_LOGOUT, op.output()[-1500:]
    assert browser.get(f"{base}/").headers["location"].startswith("/accounts/login/")
    assert SecurityEvent.objects.filter(
        kind=SecurityEvent.Kind.SESSION_ENDED, detail__method="oidc_backchannel", detail__sessions=1
    ).exists()
    browser.close()


def test_a_forged_logout_token_ends_nothing_and_is_recorded(
    live_op: tuple[str, OpenIDProvider], make_provider: Callable[..., IdentityProvider]
) -> None:
    base, op = live_op
    make_provider(op)
    browser = _signed_in_browser(base, op)
    sid = IdpSession.objects.get().sid
    kid = httpx.get(f"{op.issuer}/jwks").json()["keys"][0]["kid"]
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": op.issuer,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 60,
        "jti": "forged-1",
        "sid": sid,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    forged = jwt.encode(
        {"alg": "RS256", "kid": kid}, claims, JsonWebKey.generate_key("RSA", 2048, is_private=True)
    )

    answer = httpx.post(
        f"{base}/accounts/sso/corp/backchannel-logout/", data={"logout_token": forged.decode()}
    )

    assert answer.status_code == 400
    assert UserSession.objects.get().ended_at is None
    assert browser.get(f"{base}/").status_code == 200
    assert SecurityEvent.objects.filter(
        kind=SecurityEvent.Kind.SESSION_ENDED,
        detail__method="oidc_backchannel",
        detail__refused__isnull=False,
    ).exists()
    assert httpx.post(f"{base}/accounts/sso/corp/backchannel-logout/", data={}).status_code == 400
    browser.close()
