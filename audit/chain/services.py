"""Writes of the chain: sealing new audit rows, and signing checkpoints out of the database."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.chain.canonical import GENESIS, SOURCES, ChainSource, canonical_json, link_hash
from audit.chain.keys import key_id, signing_key
from audit.models import ChainLink

logger = logging.getLogger(__name__)

SEAL_BATCH = 5000
# Any constant both sealers agree on; nothing else in the project takes advisory locks.
_SEALER_LOCK = 0x5EA1_A0D1


class ChainHead(TypedDict):
    count: int
    row_id: int
    head: str  # hex


class Checkpoint(TypedDict):
    version: int
    at: str
    key: str
    chains: dict[str, ChainHead]


@contextlib.contextmanager
def _sealer_lock(*, wait: bool) -> Iterator[bool]:
    """Whether this process is the sealer now. SQLite runs one process: no lock needed."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_SEALER_LOCK])
            acquired = True
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [_SEALER_LOCK])
            acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_SEALER_LOCK])


def _last_link(source: ChainSource) -> tuple[int, int, bytes]:
    last = (
        ChainLink.objects.filter(source=source.label)
        .order_by("-seq")
        .values_list("seq", "row_id", "chain_hash")
        .first()
    )
    if last is None:
        return 0, 0, GENESIS
    return last[0], last[1], bytes(last[2])


def _seal_batch(source: ChainSource, grace: timedelta) -> int:
    with transaction.atomic():
        seq, row_id, head = _last_link(source)
        rows = list(source.rows().filter(pk__gt=row_id)[:SEAL_BATCH])
        young = timezone.now() - grace
        links: list[tuple[int, int, bytes]] = []
        for row in rows:
            # A gap may be a transaction that took the id and has not committed yet: chaining
            # past it would leave that row outside the chain for good.
            if row["id"] != row_id + 1 and row[source.time_field] > young:
                break
            seq, row_id = seq + 1, row["id"]
            head = link_hash(head, source.label, row)
            links.append((seq, row_id, head))
        _insert_links(source.label, links)
    return len(links)


def _insert_links(label: str, links: list[tuple[int, int, bytes]]) -> None:
    # COPY on PostgreSQL: the ORM's multi-row INSERT spent three quarters of the sealer's
    # time building and parsing the statement.
    if connection.vendor != "postgresql":
        ChainLink.objects.bulk_create(
            ChainLink(source=label, seq=seq, row_id=row_id, chain_hash=head) for seq, row_id, head in links
        )
        return
    now = timezone.now()
    with (
        connection.cursor() as cursor,
        cursor.copy("COPY audit_chainlink (source, seq, row_id, chain_hash, sealed_at) FROM STDIN") as copy,
    ):
        for seq, row_id, head in links:
            copy.write_row((label, seq, row_id, head, now))


def _seal_all() -> int:
    grace = timedelta(seconds=settings.AUDIT_SEAL_GRACE_SECONDS)
    sealed = 0
    for source in SOURCES:
        while (count := _seal_batch(source, grace)) > 0:
            sealed += count
            if count < SEAL_BATCH:
                break
    return sealed


def chain_seal() -> int:
    """Chain the audit rows written since the last seal; 0 when another sealer is at it."""
    with _sealer_lock(wait=False) as acquired:
        return _seal_all() if acquired else 0


def checkpoint_write() -> Checkpoint:
    """Seal, then sign each chain's head and append it to AUDIT_CHECKPOINT_FILE."""
    key = signing_key()
    with _sealer_lock(wait=True):
        _seal_all()
        chains: dict[str, ChainHead] = {}
        for source in SOURCES:
            seq, row_id, head = _last_link(source)
            chains[source.label] = {"count": seq, "row_id": row_id, "head": head.hex()}
    checkpoint: Checkpoint = {
        "version": 1,
        "at": timezone.now().isoformat(),
        "key": key_id(key.public_key()),
        "chains": chains,
    }
    signature = base64.b64encode(key.sign(canonical_json(checkpoint))).decode()
    _append_line(Path(settings.AUDIT_CHECKPOINT_FILE), {**checkpoint, "signature": signature})
    logger.info("audit checkpoint written", extra={"chains": {k: v["count"] for k, v in chains.items()}})
    return checkpoint


def _append_line(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    # One write() on an O_APPEND descriptor: two writers never interleave within a line.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
