"""A signing key and checkpoint file per test, monitoring's Redis keys cleared for the
detector tests, and the raw-SQL path an attacker with database access would take past the
append-only triggers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection

from tests.audit.monitoring import monitoring_keys_clear


def new_key() -> str:
    return base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()


@pytest.fixture(autouse=True)
def chain_settings(settings: Any, tmp_path: Path) -> Path:
    settings.AUDIT_SIGNING_KEY = new_key()
    settings.AUDIT_VERIFY_KEY = ""
    settings.AUDIT_CHECKPOINT_FILE = tmp_path / "checkpoints.jsonl"
    # Test rows get ids after the ones earlier tests rolled back: no gap here is in flight.
    settings.AUDIT_SEAL_GRACE_SECONDS = 0
    return settings.AUDIT_CHECKPOINT_FILE


@pytest.fixture
def monitoring_keys_fresh() -> Iterator[None]:
    """For the detector tests (`usefixtures`): user ids and addresses repeat across tests,
    and one test's counters must not fire the next's."""
    monitoring_keys_clear()
    yield
    monitoring_keys_clear()


def tamper(table: str, sql: str, params: list[Any] | None = None) -> None:
    """Run `sql` with the table's append-only trigger off, as a database owner could."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER audit_append_only")
        cursor.execute(sql, params or [])
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER audit_append_only")
