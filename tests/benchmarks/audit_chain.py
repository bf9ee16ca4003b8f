"""Benchmark: sealing throughput and `verify_audit` time over 1,000,000 audit entries.

Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/portcullis_bench_audit .venv/bin/python
tests/benchmarks/audit_chain.py [--entries N]`. It recreates that database, writes the
entries with generate_series (access events, with a security event and a rule decision
every 20th), seals them all, writes a signed checkpoint and verifies the whole trail.

The request path is not timed: sealing runs beside it (a beat task) and the access-event
insert it benchmarks elsewhere is unchanged. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_bench_audit")
os.environ.setdefault(
    "AUDIT_SIGNING_KEY", base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
)
os.environ.setdefault("AUDIT_CHECKPOINT_FILE", str(Path(tempfile.mkdtemp()) / "checkpoints.jsonl"))
os.environ.setdefault("AUDIT_SEAL_GRACE_SECONDS", "0")

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from tests.benchmarks.inbox_list import recreate_database  # noqa: E402  # sets Django up


def load(entries: int) -> dict[str, int]:
    others = entries // 20
    access = entries - 2 * others
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO audit_accessevent (created_at, user_id, session_id, ip_address, object_type, object_id, action, allowed)
            SELECT now() - (g || ' ms')::interval, g % 300, g % 5000, '192.0.2.1', 'inbox.conversation', g, 'view', g % 17 <> 0
            FROM generate_series(1, {access}) g"""
        )
        cursor.execute(
            f"""INSERT INTO audit_securityevent (created_at, kind, severity, username_attempted, user_agent, detail)
            SELECT now() - (g || ' ms')::interval, 'login_succeeded', 'info', '', 'bench', jsonb_build_object('n', g)
            FROM generate_series(1, {others}) g"""
        )
        cursor.execute(
            f"""INSERT INTO audit_ruledecision (created_at, rule_id, outcome, object_type, object_id, action, inputs)
            SELECT now() - (g || ' ms')::interval, g % 200, 'would_deny', 'inbox.conversation', g, 'view', jsonb_build_object('hour', g % 24)
            FROM generate_series(1, {others}) g"""
        )
        cursor.execute("ANALYZE")
    return {"access_events": access, "security_events": others, "rule_decisions": others}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    recreate_database()
    call_command("migrate", verbosity=0)
    from audit.chain.selectors import chain_verify
    from audit.chain.services import chain_seal, checkpoint_write

    counts = load(args.entries)
    entries = sum(counts.values()) + _logentries()
    started = time.perf_counter()
    sealed = chain_seal()
    seal_seconds = time.perf_counter() - started
    checkpoint_write()
    started = time.perf_counter()
    result = chain_verify()
    verify_seconds = time.perf_counter() - started
    assert sealed == entries and not result.problems, (sealed, entries, result.problems[:3])
    print(
        json.dumps(
            {
                "benchmark": "audit_chain",
                "entries": entries,
                **counts,
                "seal_seconds": round(seal_seconds, 2),
                "seal_rows_per_second": round(sealed / seal_seconds),
                "verify_seconds": round(verify_seconds, 2),
                "verify_rows_per_second": round(entries / verify_seconds),
                "request_path": "unchanged (sealing is off the request path)",
            }
        )
    )


def _logentries() -> int:
    from auditlog.models import LogEntry

    return LogEntry.objects.count()  # the migrations' role changes


if __name__ == "__main__":
    main()
