"""Secrets at rest: a text field stored as a Fernet token.

The keys come from settings.FIELD_ENCRYPTION_KEYS, newest first: the newest encrypts,
every listed key decrypts. A key is rotated by prepending the new one, running
`rotate_field_keys` (which re-saves every secret under it), then dropping the old one.
In DEBUG with no key configured one is derived from SECRET_KEY, so a laptop needs no setup.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

# Tokens are recognisable, so a row written before the field was encrypted (or a value
# that merely looks like base64) is never mistaken for one.
ENCRYPTED_PREFIX = "fernet:"


def _derived_debug_key() -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"portcullis.field-encryption").derive(
        settings.SECRET_KEY.encode()
    )
    return base64.urlsafe_b64encode(key)


@functools.lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...], debug_key: bytes | None) -> MultiFernet:
    try:
        fernets = [Fernet(key.encode()) for key in keys]
    except ValueError as exc:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key.") from exc
    if debug_key is not None:
        fernets.append(Fernet(debug_key))
    return MultiFernet(fernets)


def fernet() -> MultiFernet:
    keys = tuple(settings.FIELD_ENCRYPTION_KEYS)
    if not keys and not settings.DEBUG:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off.")
    return _fernet_for(keys, None if keys else _derived_debug_key())


def encrypt(plaintext: str) -> str:
    return ENCRYPTED_PREFIX + fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(ENCRYPTED_PREFIX):
        raise ImproperlyConfigured("An encrypted field holds a value that was never encrypted.")
    try:
        return fernet().decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
    except InvalidToken:
        # Failing loudly beats handing out "" and then saving it over the real secret.
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS: was a key dropped "
            "before `rotate_field_keys` ran?"
        ) from None


class EncryptedTextField(models.TextField[str, str]):
    """Plain text in Python, a Fernet token in the database. Never filter on it."""

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> Any:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))
