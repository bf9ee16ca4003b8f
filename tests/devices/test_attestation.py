"""Posture attestation: a JWT from the company's MDM/EDR for the session's device key —
valid, expired, wrong issuer, replayed, for another device, stale, not compliant."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from accounts import roles
from accounts.models import BrowserDevice
from audit.models import SecurityEvent
from tests.devices.conftest import DeviceKey, url

pytestmark = pytest.mark.django_db

ATTEST = "/api/v1/devices/attest"
ISSUER = "https://mdm.example"


@pytest.fixture
def mdm(settings: Any) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    settings.DEVICE_ATTESTATION_ISSUER = ISSUER
    settings.DEVICE_ATTESTATION_PUBLIC_KEY = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key


def attestation(signer: Any, device_key: DeviceKey, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "portcullis",
        "iat": now,
        "exp": now + 3600,
        "jti": str(uuid.uuid4()),
        "cnf": {"jkt": device_key.thumbprint},
        "posture": {"compliant": True, "disk_encrypted": True, "os": "Ubuntu 24.04"},
        **overrides,
    }
    return jwt.encode(claims, signer, algorithm="ES256")


def post(client: Any, key: DeviceKey, token: str) -> Any:
    return client.post(
        ATTEST,
        {"attestation": token},
        content_type="application/json",
        headers={"Device-Proof": key.proof("POST", url(ATTEST))},
    )


def test_a_valid_attestation_raises_the_devices_trust_until_it_expires(
    mdm: Any, make_user: Any, bound_client: Any
) -> None:
    user = make_user(roles.AGENT)
    client, key = bound_client(user)
    assert BrowserDevice.objects.get(user=user).trust_level == "medium"
    response = post(client, key, attestation(mdm, key, exp=int(time.time()) + 600))
    assert response.status_code == 200 and response.json()["trust"] == "high"
    device = BrowserDevice.objects.get(user=user)
    assert device.posture["disk_encrypted"] is True and device.trust_level == "high"
    assert SecurityEvent.objects.filter(kind="device_attested", user=user).exists()
    # A device its management calls non-compliant drops to low.
    failing = attestation(mdm, key, posture={"compliant": False})
    assert post(client, key, failing).json()["trust"] == "low"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"exp": int(time.time()) - 10}, "attestation_expired"),
        ({"iss": "https://elsewhere.example"}, "attestation_wrong_issuer"),
        ({"aud": "another-app"}, "attestation_wrong_issuer"),
        ({"iat": int(time.time()) - 3600}, "attestation_stale"),
        ({"cnf": {"jkt": DeviceKey().thumbprint}}, "attestation_other_device"),
    ],
)
def test_a_bad_attestation_is_refused_and_recorded(
    mdm: Any, make_user: Any, bound_client: Any, change: dict[str, Any], code: str
) -> None:
    user = make_user(roles.AGENT)
    client, key = bound_client(user)
    response = post(client, key, attestation(mdm, key, **change))
    assert response.status_code == 400 and response.json()["code"] == code
    assert BrowserDevice.objects.get(user=user).trust_level == "medium"
    assert SecurityEvent.objects.filter(kind="device_attestation_refused", user=user).exists()


def test_a_replayed_or_foreign_signed_attestation_is_refused(
    mdm: Any, make_user: Any, bound_client: Any
) -> None:
    client, key = bound_client(make_user(roles.AGENT))
    token = attestation(mdm, key)
    assert post(client, key, token).status_code == 200
    assert post(client, key, token).json()["code"] == "attestation_replayed"
    forged = attestation(ec.generate_private_key(ec.SECP256R1()), key)
    assert post(client, key, forged).json()["code"] == "attestation_signature"
    assert post(client, key, "not a jwt").json()["code"] == "attestation_signature"


def test_without_a_configured_issuer_or_a_device_nothing_is_attested(
    make_user: Any, bound_client: Any, verified_client: Any, settings: Any
) -> None:
    client, key = bound_client(make_user(roles.AGENT))
    assert post(client, key, "x").json()["code"] == "attestation_not_configured"
    settings.DEVICE_BINDING = "off"
    unbound = verified_client(make_user(roles.AGENT))
    response = unbound.post(ATTEST, {"attestation": "x"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["code"] == "device_required"
