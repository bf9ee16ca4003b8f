"""Device Bound Session Credentials (DBSC): where the browser speaks the protocol, it keeps a
key of its own for the session (in a TPM where it has one) and renews the bound cookie with
it by itself. It is the same short-lived cookie a signature of the device key renews
(`services.bound_cookie_value`): one cookie, two ways to renew it. Writes still need the
device proof; DBSC keeps reads going without the page's script.

The protocol is the W3C WebAppSec draft, https://w3c.github.io/webappsec-dbsc/ (source and
explainer: https://github.com/w3c/webappsec-dbsc), as Chrome speaks it:

- the sign-in response carries `Secure-Session-Registration: (ES256);path="…";challenge="…"`;
- the browser POSTs that path with `Secure-Session-Response: <JWT>`: header {typ "dbsc+jwt",
  alg, jwk}, claims {jti: the challenge}. The draft's text puts the key in the claim `key`
  and adds `aud` and `iat`, which Chrome no longer sends: the key is taken from either
  place, and `aud` and `iat` are checked when present. The answer is the session config
  (JSON) and a fresh bound cookie;
- to refresh, the browser POSTs refresh_url with `Sec-Secure-Session-Id`. Without a
  response we answer 403 `Secure-Session-Challenge: "<challenge>";id="<session id>"`, and it
  posts again with a JWT over that challenge signed by the session's key (no jwk).

Challenges are random, kept in the cache (Redis, shared by every server) under the session
they were issued to for CHALLENGE_SECONDS, and taken out by the first answer naming them.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import jwt
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from accounts.devices import services
from accounts.devices.proofs import (
    PROOF_ALGORITHM,
    ProofRefused,
    es256_header,
    es256_public_key,
    jwk_thumbprint,
    p256_public_jwk,
)
from accounts.models import BrowserDevice, UserSession
from audit.services import SESSION_ID_KEY, Kind, Severity, security_event_record

REGISTRATION_HEADER = "Secure-Session-Registration"
CHALLENGE_HEADER = "Secure-Session-Challenge"
RESPONSE_META = "HTTP_SECURE_SESSION_RESPONSE"
SESSION_ID_META = "HTTP_SEC_SECURE_SESSION_ID"
REGISTER_URL_NAME = "accounts:dbsc_register"
REFRESH_URL_NAME = "accounts:dbsc_refresh"
PROOF_TYPE = "dbsc+jwt"
CHALLENGE_SECONDS = 120
# secrets.token_urlsafe(32): anything else names no challenge of ours (nor a cache key).
CHALLENGE_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
REGISTER_CHALLENGE_PREFIX = "dbsc-register:"
REFRESH_CHALLENGE_PREFIX = "dbsc-refresh:"
# A registration JWT (header with a P-256 jwk, a challenge) is well under a kilobyte.
MAX_TOKEN_LENGTH = 2048


class ChallengeRequired(Exception):
    """Answer 403 with this `Secure-Session-Challenge`: the session's key signs it and the
    browser asks again."""

    def __init__(self, header: str) -> None:
        super().__init__("challenge")
        self.header = header


def dbsc_enabled() -> bool:
    return settings.DEVICE_BINDING != "off" and settings.DEVICE_DBSC


def _challenge_issue(prefix: str, record_id: int) -> str:
    challenge = secrets.token_urlsafe(32)
    cache.set(f"{prefix}{record_id}:{challenge}", 1, CHALLENGE_SECONDS)
    return challenge


def _challenge_take(prefix: str, record_id: int, challenge: object) -> bool:
    """Whether `challenge` was issued to this session and is still unused; this spends it."""
    if not isinstance(challenge, str) or CHALLENGE_PATTERN.fullmatch(challenge) is None:
        return False
    # delete() is atomic (DEL): of two answers naming one challenge, one wins.
    return bool(cache.delete(f"{prefix}{record_id}:{challenge}"))


def _challenge_header(record_id: int, session_identifier: str) -> str:
    challenge = _challenge_issue(REFRESH_CHALLENGE_PREFIX, record_id)
    return f'"{challenge}";id="{session_identifier}"'


def dbsc_registration_offer(*, request: HttpRequest, response: HttpResponse) -> None:
    """Offer DBSC on the response of the sign-in that just bound its session to a device
    key. The challenge is only ever in that response, so a copied session cookie cannot
    register a key of its own."""
    record_id = request.META.get(services.DBSC_OFFER_META_KEY)
    if record_id is None or not dbsc_enabled():
        return
    challenge = _challenge_issue(REGISTER_CHALLENGE_PREFIX, record_id)
    response[REGISTRATION_HEADER] = f'(ES256);path="{reverse(REGISTER_URL_NAME)}";challenge="{challenge}"'


def _sf_string(value: str) -> str:
    """A header the draft defines as an sf-string (RFC 9651 §3.3.3), parameters ignored; a
    bare value is taken as it is. Nothing of ours (a JWT, a thumbprint) needs an escape, so
    a value with one is none of ours."""
    value = value.strip()
    if "\\" in value:
        return ""
    if value.startswith('"'):
        end = value.find('"', 1)
        return value[1:end] if end > 0 else ""
    return value.partition(";")[0].strip()


def _session_record(request: HttpRequest) -> tuple[UserSession, BrowserDevice]:
    """The live session the request's cookie names and the active device key it is bound to."""
    session_id, user_id = request.session.get(SESSION_ID_KEY), request.user.pk
    record = (
        UserSession.objects.select_related("device")
        .filter(pk=session_id, user_id=user_id, ended_at__isnull=True)
        .first()
        if session_id is not None and user_id is not None
        else None
    )
    device = record.device if record is not None else None
    if (
        record is None
        or device is None
        or not device.is_active
        or device.binding != BrowserDevice.Binding.KEY
    ):
        raise ProofRefused("session")
    return record, device


def _header(token: str) -> dict[str, Any]:
    return es256_header(token, typ=PROOF_TYPE, max_length=MAX_TOKEN_LENGTH, wrong_algorithm="algorithm")


def _embedded_jwk(token: str, header: dict[str, Any]) -> dict[str, str]:
    # Chrome puts the new key in the header (`jwk`); the draft's text, in the claim `key`.
    embedded = header.get("jwk")
    if embedded is None:
        try:
            embedded = jwt.decode(token, options={"verify_signature": False}).get("key")
        except jwt.PyJWTError:
            raise ProofRefused("malformed") from None
    return p256_public_jwk(embedded)


def _fresh(issued: object) -> bool:
    # A number, or as the draft's examples write it, a string of one.
    if not isinstance(issued, int | float | str):
        return False
    try:
        age = time.time() - float(issued)
    except ValueError:
        return False
    return abs(age) <= settings.DEVICE_PROOF_MAX_AGE_SECONDS


def _claims(token: str, *, jwk: dict[str, str], request: HttpRequest) -> dict[str, Any]:
    """The claims of a JWT signed by `jwk`; `aud` and `iat` must fit when present."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            es256_public_key(jwk["x"], jwk["y"]),
            algorithms=[PROOF_ALGORITHM],
            options={"require": ["jti"], "verify_aud": False, "verify_iat": False},
        )
    except (jwt.PyJWTError, ValueError, KeyError):
        raise ProofRefused("signature") from None
    audience = claims.get("aud")
    if audience is not None and audience != request.build_absolute_uri(request.path):
        raise ProofRefused("wrong_request")
    if "iat" in claims and not _fresh(claims["iat"]):
        raise ProofRefused("stale")
    return claims


def _session_config(session_identifier: str) -> dict[str, Any]:
    """The session instructions (the draft's "JSON session instructions"): the bound cookie
    with the attributes DeviceBindingMiddleware sets it with, so the browser refreshes when
    a request of this origin would go without it."""
    attributes = "Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if settings.SESSION_COOKIE_SECURE else "")
    return {
        "session_identifier": session_identifier,
        "refresh_url": reverse(REFRESH_URL_NAME),
        "scope": {
            "include_site": False,
            "scope_specification": [{"type": "exclude", "path": settings.STATIC_URL}],
        },
        "credentials": [{"type": "cookie", "name": services.bound_cookie_name(), "attributes": attributes}],
    }


def _refusal_record(request: HttpRequest, *, step: str, code: str) -> None:
    security_event_record(
        kind=Kind.DEVICE_PROOF_REFUSED,
        request=request,
        severity=Severity.WARNING,
        detail={"code": f"dbsc_{code}", "surface": "dbsc", "step": step, "mode": settings.DEVICE_BINDING},
    )


def dbsc_register(*, request: HttpRequest) -> dict[str, Any]:
    """Register the browser's DBSC key for this session, once, and renew the bound cookie.
    Raises ProofRefused (recorded)."""
    try:
        record, device = _session_record(request)
        token = _sf_string(request.META.get(RESPONSE_META, ""))
        jwk = _embedded_jwk(token, _header(token))
        claims = _claims(token, jwk=jwk, request=request)
        if not _challenge_take(REGISTER_CHALLENGE_PREFIX, record.pk, claims["jti"]):
            raise ProofRefused("challenge")
        thumbprint = jwk_thumbprint(jwk)
        # One key per session, for its life: no later key replaces the first.
        registered = UserSession.objects.filter(pk=record.pk, dbsc_key_thumbprint="").update(
            dbsc_public_key=jwk, dbsc_key_thumbprint=thumbprint
        )
        if not registered:
            raise ProofRefused("already_registered")
    except ProofRefused as refused:
        _refusal_record(request, step="register", code=refused.code)
        raise
    security_event_record(
        kind=Kind.DBSC_REGISTERED, request=request, detail={"device": device.pk, "key": thumbprint}
    )
    request.META[services.REFRESH_META_KEY] = (record.pk, device.key_thumbprint)
    return _session_config(thumbprint)


def dbsc_refresh(*, request: HttpRequest) -> dict[str, Any]:
    """Renew the bound cookie for a signature of a fresh challenge by the session's DBSC key.
    Works when the bound cookie has run out (that is what it is for), never for an ended
    session or a revoked device. Raises ChallengeRequired, or ProofRefused (recorded)."""
    try:
        record, device = _session_record(request)
        session_identifier = record.dbsc_key_thumbprint
        if not session_identifier or record.dbsc_public_key is None:
            raise ProofRefused("not_registered")
        # Only the browser sends this header; a cross-site fetch cannot.
        if _sf_string(request.META.get(SESSION_ID_META, "")) != session_identifier:
            raise ProofRefused("session_id")
        token = _sf_string(request.META.get(RESPONSE_META, ""))
        if not token:
            raise ChallengeRequired(_challenge_header(record.pk, session_identifier))
        _header(token)
        # Only the registered key is tried: a jwk the JWT may carry changes nothing.
        claims = _claims(token, jwk=record.dbsc_public_key, request=request)
        if claims.get("sub", session_identifier) != session_identifier:
            raise ProofRefused("wrong_session")
        if not _challenge_take(REFRESH_CHALLENGE_PREFIX, record.pk, claims["jti"]):
            # The right key over a spent, made-up or another session's challenge: a replay,
            # or an answer too late. A fresh challenge lets the key's holder sign again.
            _refusal_record(request, step="refresh", code="challenge")
            raise ChallengeRequired(_challenge_header(record.pk, session_identifier))
    except ProofRefused as refused:
        _refusal_record(request, step="refresh", code=refused.code)
        raise
    request.META[services.REFRESH_META_KEY] = (record.pk, device.key_thumbprint)
    return _session_config(session_identifier)
