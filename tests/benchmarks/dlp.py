"""Benchmark: what outbound DLP costs per reply, against the floor of one plain regex.

Run: `DEBUG=1 .venv/bin/python tests/benchmarks/dlp.py [--rounds N]`. No database: the seeded
default rules (migration 0007) are built in memory, so only the scan is timed. Replies of
2 KB and 20 KB of ordinary support prose, each with a phone number, a free-mail address and a
messenger invitation in it, are scanned with every default rule; the floor is one
`re.search` for a wa.me link over the same text. Rounds interleave both so machine load
falls on both alike.

Prints one JSON line: p50/p95 in milliseconds per size, the floor's, and the ratio.

`--export N` (default 100,000) instead times a governed export of N conversations, CSV and
JSON, through the export service as the worker runs it: it (re)creates its own database
(`DATABASE_URL`, default portcullis_egress_bench), bulk-loads the conversations server-side,
and prints wall time, rows/s and peak Python memory (tracemalloc, in a second run), once
for N/10 and once for N conversations: streamed, the peak stays flat as N grows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_egress_bench")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from inbox.dlp import scan  # noqa: E402
from inbox.models import DlpRule  # noqa: E402

PROSE = (
    "Thank you for getting in touch about order 2024-118734. We are sorry the delivery was late; "
    "the parcel left our warehouse on Monday and the carrier expects to hand it over tomorrow. "
    "If anything is missing, reply to this message and we will send a replacement at no cost. "
)
FINDINGS = (
    "You can call me on +49 151 23456789, or write to jane.doe@gmail.com. Easiest is to add me on WhatsApp. "
)
FLOOR = re.compile(r"wa\.me/\S+")


def reply_of(size: int) -> str:
    text = FINDINGS
    while len(text) < size:
        text += PROSE
    return text[:size]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def export_benchmark(n_conversations: int) -> dict[str, object]:
    import tempfile
    import tracemalloc

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from guardian.shortcuts import assign_perm

    from accounts.models import User
    from inbox.exports import services
    from inbox.exports.models import ExportJob
    from inbox.models import Inbox
    from tests.benchmarks.inbox_list import recreate_database

    recreate_database()
    connection.close()
    call_command("migrate", verbosity=0)
    inbox = Inbox.objects.create(name="Email support", channel_kind="email", module="support")
    other = Inbox.objects.create(name="Billing", channel_kind="email", module="billing")
    user = User.objects.create(username="exporter", password="!")
    for perm in ("view_inbox", "export_inbox"):
        assign_perm(perm, user, inbox)
    settings.EXPORTS_ROOT = Path(tempfile.mkdtemp(prefix="portcullis-export-bench-"))
    settings.EXPORT_DAILY_MAX_ROWS = 10 * n_conversations
    settings.EXPORT_DAILY_MAX_FILES = 100
    loaded = 0
    result: dict[str, object] = {"benchmark": "export", "exports_root": str(settings.EXPORTS_ROOT)}
    for size in (n_conversations // 10, n_conversations):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            # Half the rows in an inbox the exporter cannot see: the policy filter does work.
            cursor.execute(
                """
                INSERT INTO inbox_contact (name, created_at)
                SELECT 'Customer ' || g, now() FROM generate_series(%s, %s) g;
                INSERT INTO inbox_conversation
                  (inbox_id, contact_id, subject, status, priority, created_at, last_activity_at)
                SELECT CASE WHEN c.id %% 2 = 0 THEN %s ELSE %s END, c.id,
                  CASE WHEN c.id %% 1000 = 0 THEN '=HYPERLINK("https://evil.example")' ELSE 'Printer jam ' || c.id END,
                  'open', 1, now(), now()
                FROM inbox_contact c WHERE c.name LIKE 'Customer %%' AND c.id > %s;
                """,
                [loaded + 1, 2 * size, inbox.pk, other.pk, loaded],
            )
            cursor.execute("VACUUM ANALYZE")
        loaded = 2 * size
        load_seconds = time.perf_counter() - started
        for fmt in ("csv", "json"):
            runs: dict[str, float] = {}
            for traced in (False, True):
                job = ExportJob.objects.create(user=user, inbox=inbox, kind="conversations", format=fmt)
                if traced:
                    tracemalloc.start()
                started = time.perf_counter()
                services.export_run(job.pk)
                elapsed = time.perf_counter() - started
                if traced:
                    runs["peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
                    tracemalloc.stop()
                else:
                    runs["seconds"] = elapsed
                job.refresh_from_db()
                assert job.status == "done" and job.rows_written == size, (job.status, job.error)
                runs["rows"] = job.rows_written
                runs["mib"] = round(job.file_bytes / 2**20, 1)
                services.export_path(job).unlink()
            runs["rows_per_second"] = round(runs["rows"] / runs["seconds"])
            runs["seconds"] = round(runs["seconds"], 2)
            result[f"{size}_{fmt}"] = runs
        result[f"{size}_load_seconds"] = round(load_seconds, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--export", type=int, nargs="?", const=100_000, default=None, metavar="N")
    args = parser.parse_args()
    if args.export is not None:
        print(json.dumps(export_benchmark(args.export)))
        return
    defaults = importlib.import_module("inbox.migrations.0007_dlp").DEFAULT_RULES
    rules = [DlpRule(**rule) for rule in defaults]
    result: dict[str, object] = {"benchmark": "dlp_scan", "rules": len(rules), "rounds": args.rounds}
    for label, size in (("2kb", 2_000), ("20kb", 20_000)):
        text = reply_of(size)
        found = len(scan(text, rules))
        scans: list[float] = []
        floors: list[float] = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            scan(text, rules)
            scans.append(time.perf_counter() - started)
            started = time.perf_counter()
            FLOOR.search(text)
            floors.append(time.perf_counter() - started)
        p50, p95 = percentile(scans, 0.5) * 1000, percentile(scans, 0.95) * 1000
        floor50, floor95 = percentile(floors, 0.5) * 1000, percentile(floors, 0.95) * 1000
        result[label] = {
            "findings": found,
            "p50_ms": round(p50, 3),
            "p95_ms": round(p95, 3),
            "floor_p50_ms": round(floor50, 4),
            "floor_p95_ms": round(floor95, 4),
            "ratio_p50": round(p50 / floor50, 1),
            "mean_ms": round(statistics.fmean(scans) * 1000, 3),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
