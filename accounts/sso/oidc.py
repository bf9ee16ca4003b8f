"""The OpenID Connect relying party: discovery, the authorization request (code + PKCE),
the code exchange, and verification of ID and logout tokens against the IdP's JWKS.

authlib does the protocol's cryptography and claim rules (PKCE challenge, JWS with the
JWKS, the ID token's iss/aud/exp/iat/nonce/azp checks); the HTTP is ours, so no redirect is
followed, no proxy from the environment is used, and answers are bounded in size and time.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.jose import JsonWebKey, JsonWebToken, JWTClaims, KeySet
from authlib.jose.errors import JoseError
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from django.core.cache import cache

from accounts.sso.models import IdentityProvider

# Asymmetric signatures only: "none" and HMAC (keyed with a secret we share) are refused.
SIGNING_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]
_jwt = JsonWebToken(SIGNING_ALGORITHMS)
METADATA_TTL_SECONDS = 300
MAX_RESPONSE_BYTES = 256 * 1024
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class OidcError(Exception):
    """The IdP's answer or token is refused; the message names the check, never a secret."""


@dataclass(frozen=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True)
class PendingAuthorization:
    """What the browser's session keeps between the redirect to the IdP and its return."""

    provider_id: int
    state: str
    nonce: str
    code_verifier: str
    next_url: str
    started_at: float


def _get_json(url: str) -> Any:
    return _json(_http().get(url))


def _json(response: httpx.Response) -> Any:
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise OidcError("the identity provider's answer is too large")
    if response.status_code != 200:
        raise OidcError(f"the identity provider answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise OidcError("the identity provider's answer is not JSON") from None


def _http() -> httpx.Client:
    # trust_env off: a proxy from the environment would see the client secret and the codes.
    return httpx.Client(follow_redirects=False, trust_env=False, timeout=TIMEOUT)


def metadata(provider: IdentityProvider) -> Metadata:
    key = f"sso:metadata:{provider.issuer}"
    document = cache.get(key)
    if document is None:
        try:
            document = _get_json(provider.issuer.rstrip("/") + "/.well-known/openid-configuration")
        except httpx.HTTPError:
            raise OidcError("the identity provider cannot be reached") from None
        cache.set(key, document, METADATA_TTL_SECONDS)
    # A document that names another issuer would let that issuer's tokens in (mix-up).
    if not isinstance(document, dict) or document.get("issuer") != provider.issuer:
        raise OidcError("the discovery document names another issuer")
    try:
        return Metadata(
            issuer=document["issuer"],
            authorization_endpoint=document["authorization_endpoint"],
            token_endpoint=document["token_endpoint"],
            jwks_uri=document["jwks_uri"],
        )
    except KeyError as missing:
        raise OidcError(f"the discovery document lacks {missing}") from None


def _key_set(provider: IdentityProvider, *, refresh: bool = False) -> KeySet:
    meta = metadata(provider)
    key = f"sso:jwks:{meta.jwks_uri}"
    document = None if refresh else cache.get(key)
    if document is None:
        try:
            document = _get_json(meta.jwks_uri)
        except httpx.HTTPError:
            raise OidcError("the identity provider's keys cannot be fetched") from None
        cache.set(key, document, METADATA_TTL_SECONDS)
    try:
        return JsonWebKey.import_key_set(document)
    except (JoseError, ValueError, TypeError):
        raise OidcError("the identity provider's key set is unreadable") from None


def authorization_start(
    provider: IdentityProvider, *, redirect_uri: str, next_url: str, reauthenticate: bool = False
) -> tuple[str, PendingAuthorization]:
    """The URL to send the browser to, and what to keep until it comes back.

    `reauthenticate` (a step-up): the IdP must authenticate the person now, whatever
    session it holds, with the provider's step-up acr values where configured."""
    pending = PendingAuthorization(
        provider_id=provider.pk,
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),
        next_url=next_url,
        started_at=time.time(),
    )
    query = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": provider.scopes,
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": create_s256_code_challenge(pending.code_verifier),
        "code_challenge_method": "S256",
        # The IdP re-authenticates the person when its own session is older than this.
        "max_age": str(int(provider.max_authentication_age.total_seconds())),
    }
    if reauthenticate:
        query |= {"max_age": "0", "prompt": "login"}
        if provider.step_up_acr_values:
            query["acr_values"] = provider.step_up_acr_values
    return f"{metadata(provider).authorization_endpoint}?{urlencode(query)}", pending


def code_exchange(provider: IdentityProvider, *, code: str, code_verifier: str, redirect_uri: str) -> str:
    """Trade the authorization code for tokens; returns the raw ID token."""
    try:
        response = _http().post(
            metadata(provider).token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
            auth=(provider.client_id, provider.client_secret),
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError:
        raise OidcError("the identity provider's token endpoint cannot be reached") from None
    body = _json(response) if response.status_code == 200 else None
    if body is None or not isinstance(body.get("id_token"), str):
        raise OidcError(f"the code was refused (HTTP {response.status_code})")
    return str(body["id_token"])


def _decode(provider: IdentityProvider, raw: str, claims_cls: type[JWTClaims], **params: Any) -> JWTClaims:
    options = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": provider.client_id},
    }
    for refresh in (False, True):
        try:
            return _jwt.decode(
                raw,
                _key_set(provider, refresh=refresh),
                claims_cls=claims_cls,
                claims_options=options,
                claims_params=params,
            )
        except ValueError:
            # authlib raises ValueError for a kid the cached set lacks: the IdP may have
            # rotated its keys, so the set is fetched once more.
            if refresh:
                raise OidcError("the token's signing key is unknown") from None
        except JoseError as error:
            raise OidcError(f"the token is refused: {error.error}") from None
    raise OidcError("the token's signing key is unknown")


def _validate(provider: IdentityProvider, claims: JWTClaims) -> None:
    try:
        claims.validate(now=int(time.time()), leeway=provider.clock_skew_seconds)
    except JoseError as error:
        raise OidcError(f"the token is refused: {error.error} ({error.description})") from None


def id_token_verify(provider: IdentityProvider, raw: str, *, nonce: str) -> dict[str, Any]:
    """The ID token's claims once its signature (JWKS), issuer, audience, times (within the
    provider's clock skew) and nonce are checked."""
    claims = _decode(provider, raw, CodeIDToken, nonce=nonce, client_id=provider.client_id)
    _validate(provider, claims)
    return dict(claims)


class LogoutTokenClaims(JWTClaims):
    """OpenID Connect Back-Channel Logout 1.0, section 2.6."""

    REGISTERED_CLAIMS = [*JWTClaims.REGISTERED_CLAIMS, "events", "sid"]

    def validate(self, now: int | None = None, leeway: int = 0) -> None:
        for claim in ("iss", "aud", "iat", "jti", "events"):
            if claim not in self:
                raise OidcError(f"the logout token lacks {claim}")
        super().validate(now=now, leeway=leeway)
        events = self.get("events")
        if not isinstance(events, dict) or BACKCHANNEL_LOGOUT_EVENT not in events:
            raise OidcError("the logout token carries no logout event")
        if "nonce" in self:
            raise OidcError("a logout token must not carry a nonce")
        if not self.get("sid") and not self.get("sub"):
            raise OidcError("the logout token names neither a session nor a subject")


def logout_token_verify(provider: IdentityProvider, raw: str) -> dict[str, Any]:
    claims = _decode(provider, raw, LogoutTokenClaims)
    _validate(provider, claims)
    # A logout token is used once: a replay within its life is refused.
    if not cache.add(f"sso:logout-jti:{provider.pk}:{claims['jti']}", 1, METADATA_TTL_SECONDS * 12):
        raise OidcError("the logout token was already used")
    return dict(claims)
