"""Benchmark: what continuous verification costs the agent, and whether the detectors and
responses keep up.

Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/portcullis_bench_monitoring
REDIS_URL=redis://127.0.0.1:6379/12 .venv/bin/python tests/benchmarks/monitoring.py
[--conversations N] [--reuse]`. It loads the inbox_list benchmark's data (20,000
conversations by default) into its own database, then measures in one run:

- the inbox list and a conversation page, through the whole middleware stack, with access
  events and inline scoring both off (the floor) and both on, interleaved so load on the
  machine falls on both alike; target at most 1.15 times off at p95;
- the sign-in detectors over 20,000 security events in one process (one worker's work);
  target ≥ 2,000 events/s;
- for the inline detectors, the time from the alert to its response (the sessions ended
  and recorded), and the whole crossing request's scoring; target ≤ 1 s p95.

`verify_audit` over 1,000,000 entries is timed by tests/benchmarks/audit_chain.py.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_bench_monitoring")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
# The test client cannot sign device proofs (as in the test suite's settings).
os.environ.setdefault("DEVICE_BINDING", "off")

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from tests.benchmarks import report  # noqa: E402
from tests.benchmarks.inbox_list import load, recreate_database  # noqa: E402  # sets Django up


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
    }


@contextmanager
def monitoring_off() -> Iterator[None]:
    """No access event recorded, nothing scored, no response looked up: the floor."""
    from audit import middleware, services
    from inbox.policy import decisions

    recorder, scorers, cache = (
        decisions.access_event_record,
        list(services.ACCESS_EVENT_SCORERS),
        middleware.cache,
    )

    class NoCache:
        def get_many(self, keys: list[str]) -> dict[str, Any]:
            return {}

    decisions.access_event_record = lambda **kwargs: None  # type: ignore[assignment]
    services.ACCESS_EVENT_SCORERS.clear()
    middleware.cache = NoCache()  # type: ignore[assignment]
    try:
        yield
    finally:
        decisions.access_event_record = recorder
        services.ACCESS_EVENT_SCORERS[:] = scorers
        middleware.cache = cache


def paired(get: Callable[[], Any], *, runs: int) -> dict[str, Any]:
    for _ in range(5):
        get()
        with monitoring_off():
            get()
    off: list[float] = []
    on: list[float] = []
    for _ in range(runs):
        with monitoring_off():
            started = time.perf_counter()
            get()
            off.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        get()
        on.append((time.perf_counter() - started) * 1000)
    result = {"off": summary(off), "on": summary(on)}
    result["ratio_p95"] = round(result["on"]["p95_ms"] / max(result["off"]["p95_ms"], 0.001), 3)
    return result


def verified_client(user: Any) -> Any:
    from django.test import Client
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from tests.conftest import start_session

    TOTPDevice.objects.get_or_create(user=user, name="authenticator", defaults={"confirmed": True})
    client = Client()
    start_session(client, user, verified=True)
    return client


def pages(args: argparse.Namespace) -> dict[str, Any]:
    from accounts.models import User
    from audit.detectors.inline import counters
    from inbox import policy
    from inbox.policy import AccessContext

    agent = User.objects.get(username="agent000")
    client = verified_client(agent)
    conversation_ids = list(
        policy.visible_conversations(AccessContext(user=agent))
        .order_by("-pk")
        .values_list("pk", flat=True)[:50]
    )
    # A high baseline of her own: a benchmark's pace must not raise alerts and end the session.
    counters().put({f"monitor:baseline:{agent.pk}": "conversations=100000,contacts=100000"}, 3600)
    picks = iter(random.Random(3).choices(conversation_ids, k=100_000))

    def inbox_list() -> None:
        assert client.get("/").status_code == 200  # a benchmark of a page that works

    def conversation_page() -> None:
        assert client.get(f"/conversations/{next(picks)}/").status_code == 200

    return {
        "inbox_list": paired(inbox_list, runs=args.runs),
        "conversation_page": paired(conversation_page, runs=args.runs),
    }


def detector_throughput(n_events: int) -> dict[str, Any]:
    """Sign-ins with a learned history (40 %), refused passwords from 200 addresses (30 %;
    each sprays, so 200 alerts are raised and answered), refused codes (5 %) and unrelated
    events, judged by one process."""
    from accounts.models import User
    from audit.alerts.models import DetectorCursor
    from audit.detectors.runner import CURSOR, detectors_run
    from audit.models import SecurityEvent

    kind = SecurityEvent.Kind
    users = list(User.objects.order_by("pk").values_list("pk", flat=True)[:500])
    rng = random.Random(11)  # a fixed mix, not a secret
    now = timezone.now()

    def day_time() -> datetime:
        # Each row's auto_now_add asks the clock once: thirty days of sign-ins at about
        # this hour, so that the new ones below are usual (an alert is the exception).
        return now - timedelta(days=rng.randint(1, 30), minutes=rng.randint(-90, 90))

    with mock.patch("django.utils.timezone.now", side_effect=day_time):
        SecurityEvent.objects.bulk_create(
            SecurityEvent(kind=kind.OTP_SUCCEEDED, user_id=user, ip_address=f"10.{user % 250}.0.1")
            for user in users
            for _ in range(12)
        )
    first_new = SecurityEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    events = []
    for n in range(n_events):
        roll = rng.random()
        user = rng.choice(users)
        if roll < 0.4:
            events.append(
                SecurityEvent(kind=kind.OTP_SUCCEEDED, user_id=user, ip_address=f"10.{user % 250}.0.9")
            )
        elif roll < 0.7:
            events.append(
                SecurityEvent(
                    kind=kind.LOGIN_FAILED,
                    username_attempted=f"name{n % 997}",
                    ip_address=f"198.51.100.{n % 200}",
                )
            )
        elif roll < 0.75:
            events.append(SecurityEvent(kind=kind.OTP_FAILED, user_id=user, ip_address="192.0.2.1"))
        else:
            events.append(SecurityEvent(kind=kind.LOGOUT, user_id=user))
    SecurityEvent.objects.bulk_create(events)
    DetectorCursor.objects.update_or_create(name=CURSOR, defaults={"last_id": first_new})
    started = time.perf_counter()
    judged = detectors_run()
    seconds = time.perf_counter() - started
    return {"events": judged, "seconds": round(seconds, 2), "events_per_s": round(judged / seconds, 1)}


def response_latency(runs: int) -> dict[str, Any]:
    """An agent crossing the bulk-read ceiling, `runs` times: the alert row's time to its
    response's, and the scoring call that raised and answered it."""
    from django.conf import settings
    from django.db.models import F

    from accounts.models import User, UserSession
    from audit.alerts.models import (
        Alert,
        AlertKind,
        AlertResponse,
        ResponseKind,
        ResponseMode,
        ResponsePolicy,
    )
    from audit.detectors.inline import access_events_score
    from audit.models import AccessEvent

    ResponsePolicy.objects.update_or_create(
        kind=AlertKind.BULK_READS, response=ResponseKind.END_SESSIONS, defaults={"mode": ResponseMode.ENFORCE}
    )
    ceiling = settings.MONITOR_BULK_READ_CEILING
    scoring: list[float] = []
    for n in range(runs):
        user = User.objects.create(username=f"latency{n}-{time.time_ns()}", password="!")
        UserSession.objects.create(user=user, user_agent_hash="x")
        batch = [
            AccessEvent(
                user_id=user.pk, object_type="inbox.conversation", object_id=k, action="view", allowed=True
            )
            for k in range(ceiling + 1)
        ]
        started = time.perf_counter()
        access_events_score(batch)
        scoring.append((time.perf_counter() - started) * 1000)
        if UserSession.objects.filter(user=user, ended_at=None).exists():
            report.fail("monitoring", "a crossing did not end the session")
    gaps = [
        (taken - raised) / timedelta(milliseconds=1)
        for raised, taken in AlertResponse.objects.filter(
            alert__kind=AlertKind.BULK_READS,
            response=ResponseKind.END_SESSIONS,
            alert__user__username__startswith="latency",
        )
        .annotate(raised=F("alert__created_at"))
        .values_list("raised", "taken_at")
    ]
    assert Alert.objects.filter(user__username__startswith="latency").count() >= runs
    return {"alert_to_response": summary(gaps), "crossing_request_scoring": summary(scoring), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--reuse", action="store_true", help="skip the load if the database is filled")
    args = parser.parse_args()

    figures: dict[str, Any] = {"benchmark": "monitoring", "conversations": args.conversations}
    if not args.reuse:
        recreate_database()
        connection.close()
        call_command("migrate", verbosity=0)
        figures.update(load(args.conversations))
    from config.redis import redis_client

    for key in redis_client().scan_iter(match="*monitor:*"):
        redis_client().delete(key)

    figures.update(pages(args))
    figures["detectors"] = detector_throughput(args.events)
    figures["inline_response"] = response_latency(50)
    from config.celery import app

    # The alert emails the run queued (on its own Redis database): no worker will send them.
    app.control.purge()
    figures["targets_met"] = {
        "inbox_list_le_1_15x": figures["inbox_list"]["ratio_p95"] <= 1.15,
        "conversation_page_le_1_15x": figures["conversation_page"]["ratio_p95"] <= 1.15,
        "detectors_ge_2000_per_s": figures["detectors"]["events_per_s"] >= 2000,
        "alert_to_response_p95_le_1_s": figures["inline_response"]["alert_to_response"]["p95_ms"] <= 1000,
    }
    report.emit(
        figures,
        floor={
            "inbox_list_off_p95_ms": figures["inbox_list"]["off"]["p95_ms"],
            "conversation_page_off_p95_ms": figures["conversation_page"]["off"]["p95_ms"],
        },
        ratio={
            "inbox_list": figures["inbox_list"]["ratio_p95"],
            "conversation_page": figures["conversation_page"]["ratio_p95"],
        },
    )


if __name__ == "__main__":
    main()
