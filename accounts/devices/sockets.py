"""The device check of an agent socket's handshake: a fresh proof of the session's device
key in the query string (a browser cannot set headers on a WebSocket), bound to the
socket's URL. Only at connect: once open, the socket follows its session, which revoking
the device ends (and the recheck closes the socket)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from accounts.devices import services
from accounts.devices.proofs import ProofRefused, proof_verify
from accounts.models import BrowserDevice, User
from audit.services import Kind, Severity, security_event_record

PROOF_PARAMETER = "device_proof"
# The device the handshake proved, kept in the socket's scope: the consumer's policy
# decisions read its trust level from it for as long as the socket is open.
PROVEN_DEVICE_SCOPE_KEY = "portcullis.device_id"


def _problem(scope: dict[str, Any], device: BrowserDevice | None, url: str) -> str | None:
    if device is None:
        return "device_unbound"
    if not device.is_active:
        return "device_revoked"
    if device.binding == BrowserDevice.Binding.COOKIE:
        secret = scope.get("cookies", {}).get(services.device_cookie_name(), "")
        return None if services.device_cookie_hash_matches(secret, device) else "device_cookie"
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    try:
        proof = proof_verify(query.get(PROOF_PARAMETER, [""])[0], method="GET", url=url)
    except ProofRefused as refused:
        return f"proof_{refused.code}"
    return None if proof.thumbprint == device.key_thumbprint else "proof_other_device"


def socket_device_proven(scope: dict[str, Any], *, url: str, address: str | None) -> bool:
    """Whether the socket at `url` (the proof's htu: scheme, host, path) may open as far as
    its device goes; a refusal is recorded (and, in monitor mode, only recorded)."""
    if settings.DEVICE_BINDING == "off":
        return True
    user = scope.get("user")
    if not isinstance(user, User) or scope.get("session") is None:
        return False
    device_id = scope["session"].get(services.DEVICE_ID_KEY)
    device = BrowserDevice.objects.filter(pk=device_id, user_id=user.pk).first() if device_id else None
    problem = _problem(scope, device, url)
    if problem is None and device is not None:
        scope[PROVEN_DEVICE_SCOPE_KEY] = device.pk
        return True
    security_event_record(
        kind=Kind.DEVICE_PROOF_REFUSED,
        user=user,
        severity=Severity.WARNING,
        detail={
            "code": problem,
            "surface": "socket",
            "path": str(scope["path"])[:200],
            "address": address,
            "mode": settings.DEVICE_BINDING,
        },
    )
    return settings.DEVICE_BINDING != "enforce"


def socket_device_trust(scope: dict[str, Any]) -> str | None:
    """The trust level of the device the socket's handshake proved, read now (an approval
    or a revocation since counts); None — absent, so a device rule is not met — when the
    handshake proved none (binding off, or an unproven socket let through in monitor mode)."""
    device_id = scope.get(PROVEN_DEVICE_SCOPE_KEY)
    device = BrowserDevice.objects.filter(pk=device_id).first() if device_id else None
    return device.trust_level if device is not None and device.is_active else None
