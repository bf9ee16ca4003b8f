"""Device proofs: a JWS the browser signs with its device key for one request (the shape of
DPoP, RFC 9449): header {typ, alg: ES256, jwk}, claims {htm, htu, iat, jti, nonce}.

The nonce is the server's: a timestamped value signed with SECRET_KEY, so any server of
the cluster accepts it without shared state, and it bounds how old a proof can be whatever
the client's clock says. Each proof works once: its jti is kept in the cache (Redis in
production, shared by every server) for as long as its nonce is valid.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt
from django.conf import settings
from django.core import signing
from django.core.cache import cache

PROOF_TYPE = "dpop+jwt"
PROOF_ALGORITHM = "ES256"
NONCE_SALT = "portcullis.device-nonce"
REPLAY_KEY_PREFIX = "device-proof-jti:"
# A proof is a few hundred bytes; anything far larger is not one of ours.
MAX_PROOF_LENGTH = 2048


class ProofRefused(Exception):
    """The proof is missing, malformed, stale, replayed or for another request. `code` is
    what the browser's script acts on (a stale nonce: fetch a new one and sign again)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class DeviceProof:
    thumbprint: str
    jwk: dict[str, str]


def nonce_issue() -> str:
    return signing.TimestampSigner(salt=NONCE_SALT).sign(secrets.token_urlsafe(9))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, in lexical order, no whitespace."""
    members = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@lru_cache(maxsize=4096)
def es256_public_key(x: str, y: str) -> Any:
    # Parsing a point costs more than checking a signature with it: a device signs many
    # requests with one key.
    return jwt.PyJWK({"kty": "EC", "crv": "P-256", "x": x, "y": y}, algorithm=PROOF_ALGORITHM).key


def p256_public_jwk(jwk: object) -> dict[str, str]:
    """The public P-256 JWK a JWS carries, reduced to its required members (also for DBSC)."""
    if not isinstance(jwk, dict) or "d" in jwk:
        # A private key in a header would be a client bug we must not store or echo.
        raise ProofRefused("malformed")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ProofRefused("malformed")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise ProofRefused("malformed")
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y}


def es256_header(
    token: str, *, typ: str, max_length: int, wrong_algorithm: str = "malformed"
) -> dict[str, Any]:
    """The unverified header of a device-signed JWS (also for DBSC), refused unless it is
    of type `typ` and ES256 — never "none", an HMAC keyed with something public, or RSA.
    `wrong_algorithm` is the code for another algorithm (DBSC tells the browser which)."""
    if not token or len(token) > max_length:
        raise ProofRefused("missing" if not token else "malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise ProofRefused("malformed") from None
    if header.get("typ") != typ:
        raise ProofRefused("malformed")
    if header.get("alg") != PROOF_ALGORITHM:
        raise ProofRefused(wrong_algorithm)
    return header


def proof_verify(token: str, *, method: str, url: str) -> DeviceProof:
    """Check one proof for this request; it cannot be used again afterwards."""
    header = es256_header(token, typ=PROOF_TYPE, max_length=MAX_PROOF_LENGTH)
    jwk = p256_public_jwk(header.get("jwk"))
    try:
        key = es256_public_key(jwk["x"], jwk["y"])
        claims = jwt.decode(
            token,
            key,
            algorithms=[PROOF_ALGORITHM],
            options={"require": ["iat", "jti", "htm", "htu", "nonce"], "verify_iat": False},
        )
    except (jwt.PyJWTError, ValueError):
        raise ProofRefused("signature") from None
    if claims["htm"] != method or claims["htu"] != url:
        raise ProofRefused("wrong_request")
    iat = claims["iat"]
    if not isinstance(iat, int | float) or abs(time.time() - iat) > settings.DEVICE_PROOF_MAX_AGE_SECONDS:
        raise ProofRefused("stale")
    try:
        signing.TimestampSigner(salt=NONCE_SALT).unsign(
            str(claims["nonce"]), max_age=settings.DEVICE_NONCE_MAX_AGE_SECONDS
        )
    except signing.BadSignature:  # expired too (SignatureExpired is one)
        raise ProofRefused("nonce") from None
    jti = str(claims["jti"])
    if not 8 <= len(jti) <= 64:
        raise ProofRefused("malformed")
    thumbprint = jwk_thumbprint(jwk)
    # add() is atomic (SET NX): of two requests carrying one proof, one wins.
    if not cache.add(f"{REPLAY_KEY_PREFIX}{thumbprint}:{jti}", 1, settings.DEVICE_NONCE_MAX_AGE_SECONDS):
        raise ProofRefused("replayed")
    return DeviceProof(thumbprint=thumbprint, jwk=jwk)
