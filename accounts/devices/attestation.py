"""Signed posture attestations: a JWT from the company's MDM/EDR saying how a device is (its
disk encrypted, its OS patched, …) and naming the device by its key (`cnf.jkt`, RFC 7800:
the JWK thumbprint the browser's key has). Verified with PyJWT against the one configured
issuer key; fresh (iat) and used once (jti in the cache)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
from django.conf import settings
from django.core.cache import cache

ALGORITHMS = ["ES256", "RS256", "EdDSA"]
REPLAY_KEY_PREFIX = "device-attestation-jti:"
MAX_LENGTH = 8192


class AttestationRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def attestation_verify(token: str, *, thumbprint: str) -> tuple[dict[str, Any], datetime]:
    """The attested posture and until when it holds, for the device with this key."""
    if not settings.DEVICE_ATTESTATION_ISSUER or not settings.DEVICE_ATTESTATION_PUBLIC_KEY:
        raise AttestationRefused("not_configured")
    if not token or len(token) > MAX_LENGTH:
        raise AttestationRefused("malformed")
    try:
        claims = jwt.decode(
            token,
            settings.DEVICE_ATTESTATION_PUBLIC_KEY,
            algorithms=ALGORITHMS,
            issuer=settings.DEVICE_ATTESTATION_ISSUER,
            audience=settings.DEVICE_ATTESTATION_AUDIENCE,
            options={"require": ["iss", "aud", "iat", "exp", "jti", "cnf"]},
        )
    except jwt.ExpiredSignatureError:
        raise AttestationRefused("expired") from None
    except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
        raise AttestationRefused("wrong_issuer") from None
    except jwt.PyJWTError:
        raise AttestationRefused("signature") from None
    if time.time() - float(claims["iat"]) > settings.DEVICE_ATTESTATION_MAX_AGE_SECONDS:
        raise AttestationRefused("stale")
    cnf = claims["cnf"]
    if not isinstance(cnf, dict) or cnf.get("jkt") != thumbprint:
        raise AttestationRefused("other_device")
    posture = claims.get("posture", {})
    if not isinstance(posture, dict):
        raise AttestationRefused("malformed")
    expires = float(claims["exp"])
    # Kept until the attestation expires: a replay after that is refused as expired anyway.
    timeout = max(1, int(expires - time.time()) + 1)
    if not cache.add(f"{REPLAY_KEY_PREFIX}{claims['jti']}", 1, timeout):
        raise AttestationRefused("replayed")
    return posture, datetime.fromtimestamp(expires, tz=UTC)
