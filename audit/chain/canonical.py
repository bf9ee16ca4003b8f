"""Which tables are chained, and the one way a row is turned into bytes for hashing.

The sealer and the verifier both read rows back from the database and serialise them
here, so what is hashed is what is stored: sorted-key JSON of every concrete column
(foreign keys by id), timestamps in ISO 8601 UTC.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from auditlog.models import LogEntry
from django.db import models

from audit.models import AccessEvent, RuleDecision, SecurityEvent

GENESIS = bytes(32)


@dataclass(frozen=True)
class ChainSource:
    model: type[models.Model]
    # When the row was written: the sealer waits on a young gap in the ids.
    time_field: str

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def columns(self) -> list[str]:
        return [field.attname for field in self.model._meta.concrete_fields]

    def rows(self) -> models.QuerySet[Any]:
        return self.model._default_manager.order_by("pk").values(*self.columns)


SOURCES: tuple[ChainSource, ...] = (
    ChainSource(SecurityEvent, "created_at"),
    ChainSource(AccessEvent, "created_at"),
    ChainSource(RuleDecision, "created_at"),
    ChainSource(LogEntry, "timestamp"),
)


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"no canonical form for {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_value
    ).encode()


def link_hash(previous: bytes, source: str, row: dict[str, Any]) -> bytes:
    return hashlib.sha256(previous + canonical_json({"source": source, "row": row})).digest()
