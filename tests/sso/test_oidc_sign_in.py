"""Signing in through a real OpenID provider: code + PKCE, and every forged or stale
answer refused and recorded."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.jose import JsonWebKey, jwt
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django_otp import DEVICE_ID_SESSION_KEY

from accounts import roles, supervision
from accounts.models import (
    ChangeRequest,
    ExternalIdentity,
    IdentityProvider,
    IdpGroupMapping,
    IdpSession,
    User,
    UserSession,
)
from accounts.services import IDP_ASSURANCE_KEY, IDP_REAUTHENTICATE_AT_KEY
from accounts.sso import oidc, services
from audit.models import SecurityEvent
from inbox.policy import AccessContext
from tests.sso.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    TEST_SERVER_CALLBACK,
    OpenIDProvider,
    callback_query,
    idp_login,
)

pytestmark = pytest.mark.django_db


def _start(client: Client) -> str:
    response = client.get("/accounts/sso/corp/start/", {"next": "/"})
    assert response.status_code == 302
    return str(response["Location"])


def _sign_in(client: Client, login_hint: str) -> tuple[str, Any]:
    """Start at Portcullis, sign in at the IdP, come back; returns the callback and the answer."""
    with httpx.Client() as browser:
        callback = idp_login(browser, _start(client), login_hint, stop_at=TEST_SERVER_CALLBACK)
    return callback, client.get(callback.removeprefix("http://testserver"))


def _refusals(reason: str) -> list[SecurityEvent]:
    return [
        event
        for event in SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_FAILED)
        if event.detail.get("method") == "oidc" and event.detail.get("refused") == reason
    ]


def _raw_id_token(op: OpenIDProvider, *, client_id: str, secret: str, redirect_uri: str) -> tuple[str, str]:
    """An ID token the IdP issued for `client_id` (code + PKCE by hand); returns it and its nonce."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    nonce = secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid email",
        "state": "s",
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    with httpx.Client() as browser:
        back = idp_login(browser, f"{op.issuer}/auth?{urlencode(query)}", "alice", stop_at=redirect_uri)
        code = parse_qs(urlsplit(back).query)["code"][0]
        answer = browser.post(
            f"{op.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(client_id, secret),
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id_token"]), nonce


def test_code_flow_with_pkce_signs_in_verified_by_the_idps_mfa(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    provider = make_provider(openid_provider)
    client = Client()
    authorize = _start(client)
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"][0] and query["nonce"][0] and query["state"][0]
    assert query["max_age"] == [str(12 * 3600)]

    _, response = _sign_in(client, "alice")

    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(username="alice")
    assert ExternalIdentity.objects.filter(provider=provider, subject="alice", user=user).exists()
    assert not user.has_usable_password()
    assert client.get("/").status_code == 200
    session = client.session
    assert session[DEVICE_ID_SESSION_KEY].startswith("accounts.identityproviderdevice/")
    assert session[IDP_ASSURANCE_KEY] == "totp"
    request = RequestFactory().get("/")
    request.user = user
    request.session = session
    assert AccessContext.from_request(request).authenticator == "totp"
    idp_session = IdpSession.objects.get(session__user=user)
    assert idp_session.assurance == "totp" and idp_session.amr == ["pwd", "otp"]
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_SUCCEEDED, user=user)
    assert event.detail["idp"] == "corp" and event.detail["second_factor"] == "idp"


def test_the_client_secret_is_encrypted_at_rest(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    from django.db import connection

    provider = make_provider(openid_provider)
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM accounts_identityprovider WHERE id = %s", [provider.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and CLIENT_SECRET not in stored


def test_a_wrong_pkce_verifier_is_refused_by_the_idp(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    client = Client()
    with httpx.Client() as browser:
        callback = idp_login(browser, _start(client), "alice", stop_at=TEST_SERVER_CALLBACK)
    # An attacker who intercepted the code has no verifier: here, the wrong one.
    session = client.session
    for pending in session[services.PENDING_KEY].values():
        pending["code_verifier"] = secrets.token_urlsafe(64)
    session.save()

    response = client.get(callback.removeprefix("http://testserver"))

    assert response.status_code == 403
    assert not User.objects.filter(username="alice").exists()
    assert _refusals("unverifiable")


def test_a_forged_state_is_refused_and_recorded(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    client = Client()
    with httpx.Client() as browser:
        callback = idp_login(browser, _start(client), "alice", stop_at=TEST_SERVER_CALLBACK)
    code = callback_query(callback)["code"]

    response = client.get("/accounts/sso/corp/callback/", {"code": code, "state": "forged-by-attacker"})

    assert response.status_code == 403
    assert "not one this browser started" in response.content.decode()
    assert _refusals("state")
    assert not UserSession.objects.exists()


def test_a_replayed_callback_is_refused(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    client = Client()
    callback, first = _sign_in(client, "alice")
    assert first.status_code == 302
    client.post("/accounts/logout/")

    again = client.get(callback.removeprefix("http://testserver"))

    assert again.status_code == 403
    assert _refusals("state")


def _through_callback(client: Client, raw_id_token: str) -> Any:
    """A genuine sign-in attempt whose token endpoint answers with `raw_id_token` (an
    IdP mix-up or a man in the middle): everything else is the real flow."""
    with httpx.Client() as browser:
        callback = idp_login(browser, _start(client), "alice", stop_at=TEST_SERVER_CALLBACK)
    with mock.patch.object(oidc, "code_exchange", return_value=raw_id_token):
        return client.get(callback.removeprefix("http://testserver"))


def _why_refused() -> str:
    return str(_refusals("unverifiable")[-1].detail["why"])


def test_an_id_token_for_another_audience_is_refused(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    token, _ = _raw_id_token(
        openid_provider,
        client_id=OTHER_CLIENT_ID,
        secret="another-secret",
        redirect_uri="http://testserver/elsewhere/",
    )
    assert _through_callback(Client(), token).status_code == 403
    assert "aud" in _why_refused()


def test_a_replayed_id_token_with_an_old_nonce_is_refused(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    # A genuine token for our client, but minted for an earlier sign-in (its own nonce).
    token, _ = _raw_id_token(
        openid_provider, client_id=CLIENT_ID, secret=CLIENT_SECRET, redirect_uri=TEST_SERVER_CALLBACK
    )
    assert _through_callback(Client(), token).status_code == 403
    assert "nonce" in _why_refused()


def test_an_expired_id_token_is_refused_beyond_the_clock_skew(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    provider = make_provider(openid_provider)
    token, nonce = _raw_id_token(
        openid_provider, client_id=CLIENT_ID, secret=CLIENT_SECRET, redirect_uri=TEST_SERVER_CALLBACK
    )
    expires = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["exp"]
    clock = mock.Mock()
    clock.time.return_value = expires + provider.clock_skew_seconds - 1
    with mock.patch.object(oidc, "time", clock):
        assert oidc.id_token_verify(provider, token, nonce=nonce)["sub"] == "alice"
    clock.time.return_value = expires + provider.clock_skew_seconds + 1
    with mock.patch.object(oidc, "time", clock), pytest.raises(oidc.OidcError, match="exp"):
        oidc.id_token_verify(provider, token, nonce=nonce)


def test_a_token_signed_by_another_key_is_refused(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    genuine, _ = _raw_id_token(
        openid_provider, client_id=CLIENT_ID, secret=CLIENT_SECRET, redirect_uri=TEST_SERVER_CALLBACK
    )
    header = json.loads(base64.urlsafe_b64decode(genuine.split(".")[0] + "==="))
    claims = json.loads(base64.urlsafe_b64decode(genuine.split(".")[1] + "==="))
    # Same claims, same kid, the attacker's own key.
    attacker_key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
    forged = jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, attacker_key).decode()

    assert _through_callback(Client(), forged).status_code == 403
    assert "signature" in _why_refused()


def test_an_unsigned_token_is_refused(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    encode = base64.urlsafe_b64encode
    body = encode(json.dumps({"iss": openid_provider.issuer, "sub": "alice", "aud": CLIENT_ID}).encode())
    header = encode(b'{"alg":"none"}').decode().rstrip("=")
    unsigned = f"{header}.{body.decode().rstrip('=')}."
    assert _through_callback(Client(), unsigned).status_code == 403


def test_password_only_at_the_idp_asks_for_portcullis_own_second_factor(
    openid_provider: OpenIDProvider,
    make_provider: Callable[..., IdentityProvider],
    make_user: Callable[..., User],
    totp: Callable[[User], Any],
) -> None:
    provider = make_provider(openid_provider, allow_jit_provisioning=False)
    bob = make_user(roles.AGENT, username="bob")
    ExternalIdentity.objects.create(provider=provider, subject="bob", user=bob)
    client = Client()

    _, response = _sign_in(client, "bob")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/verify/")
    assert client.get("/").status_code == 302  # not verified: the gate sends it to the code
    assert IdpSession.objects.get(session__user=bob).assurance == "password"
    verified = client.post(response["Location"], {"token": totp(bob).now()})
    assert verified.status_code == 302 and verified["Location"] == "/"
    assert client.get("/").status_code == 200


def test_without_just_in_time_provisioning_an_unknown_person_is_refused(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider, allow_jit_provisioning=False)

    _, response = _sign_in(Client(), "alice")

    assert response.status_code == 403
    assert not User.objects.filter(username="alice").exists()
    assert _refusals("jit_off")


def test_an_existing_local_account_is_not_taken_over_by_email(
    openid_provider: OpenIDProvider,
    make_provider: Callable[..., IdentityProvider],
    make_user: Callable[..., User],
) -> None:
    make_provider(openid_provider)
    local = make_user(roles.SUPERVISOR, username="alice", email="alice@corp.test")

    _, response = _sign_in(Client(), "alice")

    assert response.status_code == 302
    provisioned = ExternalIdentity.objects.get(subject="alice").user
    assert provisioned.pk != local.pk and provisioned.username == "alice-1"
    assert not provisioned.groups.exists()


def test_idp_groups_map_to_roles_but_never_to_administrator(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    provider = make_provider(openid_provider)
    agent = Group.objects.get(name=roles.AGENT)
    IdpGroupMapping.objects.create(provider=provider, idp_group="support", group=agent, active=True)
    # Written around the admin and its change request (a stolen database login, a bug).
    IdpGroupMapping.objects.create(
        provider=provider, idp_group="admins", group=Group.objects.get(name=roles.ADMINISTRATOR), active=True
    )

    _sign_in(Client(), "alice")
    _sign_in(Client(), "carol")

    assert list(User.objects.get(username="alice").groups.values_list("name", flat=True)) == [roles.AGENT]
    carol = User.objects.get(username="carol")
    assert not carol.groups.exists() and not carol.is_staff and not carol.is_superuser
    denied = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.PRIVILEGE_DENIED, user=carol).get()
    assert denied.severity == SecurityEvent.Severity.CRITICAL
    # A phishing-resistant sign-in reaches the policy as a passkey-strength authenticator.
    assert IdpSession.objects.get(session__user=carol).assurance == "passkey"


def test_leaving_the_idp_group_removes_the_mapped_role_at_next_sign_in(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    provider = make_provider(openid_provider)
    billing = Group.objects.get(name=roles.BILLING_AGENT)
    IdpGroupMapping.objects.create(provider=provider, idp_group="finance", group=billing, active=True)
    _sign_in(Client(), "alice")
    alice = User.objects.get(username="alice")
    alice.groups.add(billing)  # was in "finance" once; the IdP no longer says so

    _sign_in(Client(), "alice")

    assert not alice.groups.filter(pk=billing.pk).exists()


def test_a_new_mapping_waits_for_a_second_administrator(
    openid_provider: OpenIDProvider,
    make_provider: Callable[..., IdentityProvider],
    make_user: Callable[..., User],
) -> None:
    provider = make_provider(openid_provider)
    first, second = make_user(roles.ADMINISTRATOR), make_user(roles.ADMINISTRATOR)
    mapping = IdpGroupMapping(
        provider=provider, idp_group="support", group=Group.objects.get(name=roles.AGENT)
    )

    outcome = services.group_mapping_request(
        ctx=AccessContext.for_task(first), request=None, mapping=mapping, reason="support desk"
    )

    assert not outcome.applied and not IdpGroupMapping.objects.get().active
    with pytest.raises(supervision.SupervisionRefused):
        supervision.change_approve(
            ctx=AccessContext.for_task(first), request=None, change_id=outcome.change.pk
        )
    supervision.change_approve(ctx=AccessContext.for_task(second), request=None, change_id=outcome.change.pk)
    assert IdpGroupMapping.objects.get().active


def test_no_mapping_to_administrator_can_even_be_requested(
    openid_provider: OpenIDProvider,
    make_provider: Callable[..., IdentityProvider],
    make_user: Callable[..., User],
) -> None:
    provider = make_provider(openid_provider)
    administrator = make_user(roles.ADMINISTRATOR)
    mapping = IdpGroupMapping(
        provider=provider, idp_group="admins", group=Group.objects.get(name=roles.ADMINISTRATOR)
    )

    with pytest.raises(supervision.SupervisionRefused, match="Administrator"):
        services.group_mapping_request(
            ctx=AccessContext.for_task(administrator), request=None, mapping=mapping, reason="why not"
        )

    assert not IdpGroupMapping.objects.exists()
    assert not ChangeRequest.objects.exists()
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.PRIVILEGE_DENIED, user=administrator).exists()


def test_a_session_past_the_idps_maximum_age_must_sign_in_there_again(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    client = Client()
    _sign_in(client, "alice")
    session = client.session
    session[IDP_REAUTHENTICATE_AT_KEY] = session[IDP_REAUTHENTICATE_AT_KEY] - 13 * 3600
    session.save()

    response = client.get("/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    ended = UserSession.objects.get(user__username="alice")
    assert ended.end_reason == UserSession.EndReason.IDP_REAUTHENTICATE


def test_unknown_or_disabled_providers_answer_404(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider, enabled=False)
    client = Client()
    assert client.get("/accounts/sso/corp/start/").status_code == 404
    assert client.get("/accounts/sso/nobody/callback/").status_code == 404


def test_the_sign_in_page_offers_the_enabled_providers(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    make_provider(openid_provider, name="Old IdP", slug="old", enabled=False)
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Corp IdP" in page and "Old IdP" not in page
