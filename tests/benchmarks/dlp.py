"""Benchmark: what outbound DLP costs per reply, against the floor of one plain regex.

Run: `DEBUG=1 .venv/bin/python tests/benchmarks/dlp.py [--rounds N]`. No database: the seeded
default rules (migration 0007) are built in memory, so only the scan is timed. Replies of
2 KB and 20 KB of ordinary support prose, each with a phone number, a free-mail address and a
messenger invitation in it, are scanned with every default rule; the floor is one
`re.search` for a wa.me link over the same text. Rounds interleave both so machine load
falls on both alike.

Prints one JSON line: p50/p95 in milliseconds per size, the floor's, and the ratio.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
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
