"""A software WebAuthn authenticator (ES256, "none" attestation) for the HTTP tests: what
a platform authenticator and the browser do together, built from the spec's byte layouts
so the server's checks meet real answers, forgeries included."""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

USER_PRESENT, USER_VERIFIED, BACKUP_ELIGIBLE, BACKED_UP, ATTESTED = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    sign_count: int = 0
    # A synced passkey (iCloud Keychain, Google Password Manager) is backup eligible and
    # backed up; a security key or a device-bound platform passkey is neither.
    backup_eligible: bool = False
    backed_up: bool = False
    # Whether its answers say the person was verified (PIN, biometrics), not merely present.
    user_verified: bool = True
    aaguid: bytes = bytes(16)

    @property
    def flags(self) -> int:
        return (
            USER_PRESENT
            | (USER_VERIFIED if self.user_verified else 0)
            | (BACKUP_ELIGIBLE if self.backup_eligible else 0)
            | (BACKED_UP if self.backed_up else 0)
        )

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def create(self, options: dict[str, Any], *, origin: str) -> str:
        """navigator.credentials.create(): the registration answer as the page posts it."""
        numbers = self.private.public_key().public_numbers()
        cose_key = cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )
        auth_data = (
            hashlib.sha256(options["rp"]["id"].encode()).digest()
            + bytes([self.flags | ATTESTED])
            + struct.pack(">I", self.sign_count)
            + self.aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + cose_key
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(
                        self._client_data("webauthn.create", options["challenge"], origin)
                    ),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
            }
        )

    def get(self, options: dict[str, Any], *, origin: str) -> str:
        """navigator.credentials.get(): the assertion answer as the page posts it."""
        self.sign_count += 1
        auth_data = (
            hashlib.sha256(options["rpId"].encode()).digest()
            + bytes([self.flags])
            + struct.pack(">I", self.sign_count)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.private.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": None,
                },
            }
        )
