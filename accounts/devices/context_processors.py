"""What static/js/device.js reads from every page: the mode, a fresh nonce, where to renew."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from accounts.devices.proofs import nonce_issue
from accounts.devices.services import DEVICE_ID_KEY, late_binding_open


def device_binding(request: HttpRequest) -> dict[str, Any]:
    if settings.DEVICE_BINDING == "off":
        return {}
    session = getattr(request, "session", None)
    return {
        "device_binding": {
            "mode": settings.DEVICE_BINDING,
            "nonce": nonce_issue(),
            "refresh_url": reverse("accounts:device_refresh"),
            "refresh_seconds": settings.DEVICE_REFRESH_SECONDS,
            "bound": session is not None and session.get(DEVICE_ID_KEY) is not None,
            # Signed in by redirect: the script proves the key now, which binds the session.
            "bind_now": session is not None and late_binding_open(session),
        }
    }
