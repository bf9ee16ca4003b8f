"""Benchmark: what device binding adds to a request.

Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/portcullis_bench_devices .venv/bin/python
tests/benchmarks/device_proof.py [--conversations N] [--reuse]`. It loads the inbox_list
benchmark's data (20,000 conversations by default: binding costs the same whatever the
inbox holds) into its own database, then times in one run:

- verifying one device proof (`proof_verify`: ES256 signature, nonce, replay cache in the
  configured cache — Redis when REDIS_URL is set), p50/p95 in microseconds;
- the inbox page through the whole middleware stack with DEVICE_BINDING "off" — the
  baseline — and "enforce" (bound cookie, device row, nonce in the page), interleaved so
  load on the machine falls on both alike;
- a write (the idle keep-alive) with binding off, and on with a fresh proof per request.

Prints one JSON line; the target is ≤ 1 ms p95 added to the inbox page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_bench_devices")

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from tests.benchmarks.inbox_list import load, recreate_database  # noqa: E402  # sets Django up
from tests.benchmarks.policy_rules import paired_timings  # noqa: E402


def microseconds(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p95_us": round(ordered[int(len(ordered) * 0.95) - 1] * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--proofs", type=int, default=3000)
    parser.add_argument("--reuse", action="store_true", help="skip the load if the database is filled")
    args = parser.parse_args()

    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.devices.proofs import proof_verify
    from accounts.models import BrowserDevice, User
    from tests.devices.conftest import DeviceKey, bind

    figures: dict[str, Any] = {"benchmark": "device_proof", "conversations": args.conversations}
    if not args.reuse:
        recreate_database()
        connection.close()
        call_command("migrate", verbosity=0)
        figures.update(load(args.conversations))

    # The proof alone: signed beforehand (as the browser does), verified as the gate does.
    key = DeviceKey()
    target = "http://testserver/conversations/1/note/"
    tokens = [key.proof("POST", target) for _ in range(args.proofs)]
    for token in tokens[:20]:
        proof_verify(token, method="POST", url=target)
    samples = []
    for token in tokens[20:]:
        started = time.perf_counter()
        proof_verify(token, method="POST", url=target)
        samples.append(time.perf_counter() - started)
    figures["proof_verify"] = microseconds(samples)

    agent = User.objects.get(username="agent000")
    TOTPDevice.objects.get_or_create(user=agent, confirmed=True, defaults={"name": "benchmark"})
    BrowserDevice.objects.filter(user=agent).delete()
    client = Client()
    page_key = DeviceKey()
    bind(client, agent, page_key)

    def page(mode: str) -> Any:
        def request() -> None:
            settings.DEVICE_BINDING = mode
            response = client.get("/")
            assert response.status_code == 200, (mode, response.status_code)

        return request

    listing = paired_timings(page("off"), page("enforce"), runs=args.runs)
    listing["added_p50_ms"] = round(listing["with"]["p50_ms"] - listing["without"]["p50_ms"], 3)
    listing["added_p95_ms"] = round(listing["with"]["p95_ms"] - listing["without"]["p95_ms"], 3)
    listing["ratio_p95"] = round(listing["with"]["p95_ms"] / max(listing["without"]["p95_ms"], 0.001), 3)
    figures["inbox_page"] = listing

    keepalive = "/accounts/session/keepalive/"
    # Signed beforehand: the browser's signing is not the server's cost.
    write_proofs = [page_key.proof("POST", f"http://testserver{keepalive}") for _ in range(args.runs + 10)]

    def write(mode: str) -> Any:
        def request() -> None:
            settings.DEVICE_BINDING = mode
            headers = {"Device-Proof": write_proofs.pop()} if mode == "enforce" else {}
            response = client.post(keepalive, headers=headers)
            assert response.status_code == 200, (mode, response.status_code)

        return request

    writes = paired_timings(write("off"), write("enforce"), runs=args.runs)
    writes["added_p95_ms"] = round(writes["with"]["p95_ms"] - writes["without"]["p95_ms"], 3)
    figures["write_with_proof"] = writes
    figures["targets_met"] = {"inbox_page_added_p95_le_1_ms": listing["added_p95_ms"] <= 1.0}
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
