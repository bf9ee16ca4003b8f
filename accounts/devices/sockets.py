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


def _problem(scope: dict[str, Any], user: User, url: str) -> str | None:
    device_id = scope["session"].get(services.DEVICE_ID_KEY)
    device = BrowserDevice.objects.filter(pk=device_id, user_id=user.pk).first() if device_id else None
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
    problem = _problem(scope, user, url)
    if problem is None:
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
