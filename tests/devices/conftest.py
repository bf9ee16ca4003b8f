"""A device key in Python (what static/js/device.js does in the browser) and sessions
bound to it, for tests that turn device binding on."""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.cache import cache
from django.test import Client

from accounts.devices import services as device_services
from accounts.devices.proofs import jwk_thumbprint, nonce_issue
from accounts.models import BrowserDevice, User, UserSession
from tests.conftest import start_session

# Fixtures of other suites these tests reuse: the inbox segments, a chat inbox, the socket cleanup.
from tests.inbox.conftest import segments  # noqa: F401
from tests.livechat.conftest import chat, closed_sockets  # noqa: F401

CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
NONCE_META = re.compile(r'name="device-binding"[^>]*data-nonce="([^"]+)"')


def _b64(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


@dataclass
class DeviceKey:
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x), "y": _b64(numbers.y)}

    @property
    def thumbprint(self) -> str:
        return jwk_thumbprint(self.jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        claims = {
            "htm": method,
            "htu": url,
            "iat": int(time.time() if iat is None else iat),
            "jti": jti or secrets.token_urlsafe(16),
            "nonce": nonce or nonce_issue(),
        }
        headers = {"typ": "dpop+jwt", "jwk": self.jwk, **(header or {})}
        return jwt.encode(claims, self.private, algorithm="ES256", headers=headers)


def url(path: str) -> str:
    """The htu of a test-client request."""
    return f"http://testserver{path}"


@pytest.fixture(autouse=True)
def device_binding(settings: Any) -> Any:
    settings.DEVICE_BINDING = "enforce"
    settings.DEVICE_WEAK_FALLBACK = "refuse"
    settings.DEVICE_NEW_DEVICE = "open"
    # Replay entries and monitor-mode throttles of one test must not meet the next.
    cache.clear()
    return settings


def bind(client: Client, user: User, key: DeviceKey, **device_fields: Any) -> BrowserDevice:
    """Put the client in the state a proven sign-in leaves it in (sign-in itself is tested
    in test_sign_in); the test client then needs only the proofs of its writes."""
    record = start_session(client, user, verified=True)
    device = BrowserDevice.objects.create(
        user=user,
        name="Chrome on Linux",
        binding=BrowserDevice.Binding.KEY,
        key_thumbprint=key.thumbprint,
        public_key=key.jwk,
        **device_fields,
    )
    UserSession.objects.filter(pk=record.pk).update(device=device)
    session = client.session
    session[device_services.DEVICE_ID_KEY] = device.pk
    session.save()
    client.cookies[device_services.bound_cookie_name()] = device_services.bound_cookie_value(
        session_record_id=record.pk, thumbprint=key.thumbprint
    )
    return device


@pytest.fixture
def bound_client(make_user: Callable[..., User]) -> Callable[..., tuple[Client, DeviceKey]]:
    def make(user: User, **device_fields: Any) -> tuple[Client, DeviceKey]:
        client = Client()
        key = DeviceKey()
        bind(client, user, key, **device_fields)
        return client, key

    return make


def stolen(client: Client, **headers: Any) -> Client:
    """Another machine holding every cookie of `client` (session and bound cookie alike)."""
    thief = Client(**headers)
    for name, morsel in client.cookies.items():
        thief.cookies[name] = morsel.value
    return thief
