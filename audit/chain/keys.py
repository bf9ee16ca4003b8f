"""The checkpoint signing key. Its private half is never logged nor shown."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def signing_key() -> Ed25519PrivateKey:
    """AUDIT_SIGNING_KEY (base64 of the 32-byte Ed25519 seed); in DEBUG, without it, a key
    generated once into AUDIT_SIGNING_KEY_FILE so `make run` needs no setup."""
    if settings.AUDIT_SIGNING_KEY:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(settings.AUDIT_SIGNING_KEY))
    if not settings.DEBUG:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY must be set when DEBUG is off.")
    path = Path(settings.AUDIT_SIGNING_KEY_FILE)
    if not path.exists():
        _write_new_key(path)
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text()))


def _write_new_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    # O_EXCL: two workers starting together must not each write a key of their own.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as file:
        file.write(base64.b64encode(seed).decode())


def verify_key() -> Ed25519PublicKey:
    """AUDIT_VERIFY_KEY (base64 of the raw public key) where only verification runs;
    otherwise the signing key's public half."""
    if settings.AUDIT_VERIFY_KEY:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(settings.AUDIT_VERIFY_KEY))
    return signing_key().public_key()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
