"""Reads of the chain: verifying the audit tables against their links and the signed
checkpoints. Read-only; it never repairs what it finds."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import connection, transaction

from audit.chain.canonical import GENESIS, SOURCES, ChainSource, canonical_json, link_hash
from audit.chain.keys import key_id, verify_key
from audit.models import ChainLink

ProblemKind = Literal["modified", "deleted", "inserted", "rewritten", "checkpoint"]
_CHUNK = 10_000


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str
    source: str = ""
    row_id: int | None = None


@dataclass(frozen=True)
class SignedHead:
    at: str
    count: int
    head: str


@dataclass
class Verification:
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # links verified per source
    unsealed: dict[str, int] = field(default_factory=dict)  # rows newer than the last link
    checkpoints: int = 0


def checkpoints_read(path: Path, key: Ed25519PublicKey) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The checkpoints that verify with `key`; a line that does not is a problem, never
    trusted."""
    if not path.exists():
        return [], []
    expected_key = key_id(key)
    accepted: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
            signature = base64.b64decode(record.pop("signature"))
            key.verify(signature, canonical_json(record))
        except (ValueError, KeyError, TypeError, AttributeError, InvalidSignature):
            problems.append(
                Problem(
                    "checkpoint",
                    f"checkpoint line {number} of {path} does not verify with the configured key "
                    f"{expected_key} (signed with another key, or altered); it is ignored",
                )
            )
            continue
        accepted.append(record)
    return accepted, problems


def chain_verify() -> Verification:
    """Every chain against its table and the checkpoints; problems in chain order."""
    key = verify_key()
    checkpoints, problems = checkpoints_read(Path(settings.AUDIT_CHECKPOINT_FILE), key)
    result = Verification(problems=problems, checkpoints=len(checkpoints))
    signed: dict[str, dict[int, list[SignedHead]]] = defaultdict(lambda: defaultdict(list))
    for checkpoint in checkpoints:
        for label, chain in checkpoint["chains"].items():
            if chain["count"]:
                signed[label][chain["count"]].append(
                    SignedHead(checkpoint["at"], chain["count"], chain["head"])
                )
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # Links and rows read from one snapshot, whatever the sealer does meanwhile.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for source in SOURCES:
            result.problems.extend(_verify_source(source, signed[source.label], result))
    return result


def _verify_source(
    source: ChainSource, signed: dict[int, list[SignedHead]], result: Verification
) -> Iterator[Problem]:
    label = source.label
    links = (
        ChainLink.objects.filter(source=label)
        .order_by("seq")
        .values_list("seq", "row_id", "chain_hash")
        .iterator(chunk_size=_CHUNK)
    )
    rows = source.rows().iterator(chunk_size=_CHUNK)
    row = next(rows, None)
    previous, expected_seq, last_row_id, agreed_at = GENESIS, 1, 0, 0
    for seq, row_id, stored_hash in links:
        stored = bytes(stored_hash)
        # After a missing link the next one cannot be recomputed; its row is still checked
        # for presence, and the checkpoints cover the rest.
        linked = seq == expected_seq
        if not linked:
            yield Problem(
                "deleted",
                f"deleted: {label} chain positions {expected_seq} to {seq - 1} are missing "
                f"(rows between id {last_row_id} and id {row_id})",
                label,
                last_row_id + 1,
            )
        while row is not None and row["id"] < row_id:
            yield Problem(
                "inserted",
                f"inserted: {label} id {row['id']} is not in the chain (before chain position {seq})",
                label,
                row["id"],
            )
            row = next(rows, None)
        if row is None or row["id"] > row_id:
            yield Problem("deleted", f"deleted: {label} id {row_id} (chain position {seq})", label, row_id)
        else:
            if linked and link_hash(previous, label, row) != stored:
                yield Problem(
                    "modified", f"modified: {label} id {row_id} (chain position {seq})", label, row_id
                )
            row = next(rows, None)
        for head in signed.pop(seq, []):
            if head.head != stored.hex():
                yield Problem(
                    "rewritten",
                    f"rewritten: {label} chain differs from the checkpoint signed at {head.at} "
                    f"at position {seq}; the first altered entry lies after position {agreed_at} "
                    f"and at or before position {seq} (row id {row_id})",
                    label,
                    row_id,
                )
            else:
                agreed_at = seq
        previous, expected_seq, last_row_id = stored, seq + 1, row_id
    result.checked[label] = expected_seq - 1
    for count in sorted(signed):
        for head in signed[count]:
            yield Problem(
                "deleted",
                f"deleted: {label} chain has {expected_seq - 1} entries but the checkpoint signed at "
                f"{head.at} counted {count}: entries after position {expected_seq - 1} "
                f"(row id {last_row_id}) are gone",
                label,
                last_row_id + 1,
            )
    unsealed = 0
    while row is not None:
        unsealed += 1
        row = next(rows, None)
    result.unsealed[label] = unsealed
