"""Detectors that protect data, run in the request path: bulk reads, bursts of refused
accesses, and an API token's read volume. Cheap by construction: one Redis round trip per
request that touched objects (per-minute counters and the user's baseline), and a
database write only on the one request that crosses a threshold.

Counters are per user and calendar minute. The request that takes a counter past its
threshold — and only that one, as INCRBY answers each request with its own total — raises
the alert, whose responses are taken before the response leaves.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from audit.alerts.models import AlertKind, AlertSeverity
from audit.alerts.services import Finding, alert_raise
from audit.models import AccessEvent
from config.redis import redis_client

logger = logging.getLogger(__name__)

COUNTER_TTL_SECONDS = 120
# What a bulk read counts: opening one object, not a list (a list page records "list:N").
READ_TYPES = {"inbox.conversation": "conversations", "inbox.contact": "contacts"}
# What a probe is refused: an id the loaders would not open. A refused module check (may
# she see this contact's invoices?) or action (may she export?) only decides what a page shows.
PROBED_TYPES = frozenset({*READ_TYPES, "inbox.inbox"})
# A searched list page records "search:N" (policy.record_listing): how often a user
# searches is counted, whatever each search found.
SEARCH_PREFIX = "search:"
SEARCHES = "searches"


def baseline_key(user_id: int) -> str:
    return f"monitor:baseline:{user_id}"


def token_baseline_key(token_id: int) -> str:
    return f"monitor:token_baseline:{token_id}"


def _counter_key(user_id: int, what: str, minute: int) -> str:
    return f"monitor:{what}:{user_id}:{minute}"


class Counters(Protocol):
    def add(self, increments: dict[str, int], read: list[str]) -> tuple[dict[str, int], list[Any]]:
        """Add to the counters (expiring) and read some keys, in one round trip."""

    def put(self, values: dict[str, str], ttl: int) -> None:
        """Write keys the request path reads (the baselines)."""


class RedisCounters:
    def add(self, increments: dict[str, int], read: list[str]) -> tuple[dict[str, int], list[Any]]:
        pipe = redis_client().pipeline(transaction=False)
        for key, amount in increments.items():
            pipe.incrby(key, amount)
            pipe.expire(key, COUNTER_TTL_SECONDS)
        for key in read:
            pipe.get(key)
        answers = pipe.execute()
        totals = {key: int(answers[2 * index]) for index, key in enumerate(increments)}
        return totals, answers[2 * len(increments) :]

    def put(self, values: dict[str, str], ttl: int) -> None:
        pipe = redis_client().pipeline(transaction=False)
        for key, value in values.items():
            pipe.set(key, value, ex=ttl)
        pipe.execute()


class ProcessCounters:
    """Without Redis (the laptop mode) the counters live in the process; nothing expires
    them but the minute in their key, which is enough for one person trying it out."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = defaultdict(int)

    def add(self, increments: dict[str, int], read: list[str]) -> tuple[dict[str, int], list[Any]]:
        for key, amount in increments.items():
            self.values[key] += amount
        return {key: self.values[key] for key in increments}, [self.values.get(key) for key in read]

    def put(self, values: dict[str, str], ttl: int) -> None:
        self.values.update(values)


_process_counters = ProcessCounters()


def counters() -> Counters:
    return RedisCounters() if settings.REDIS_URL else _process_counters


def own_threshold(peak: int, *, factor: float, floor: int, ceiling: int) -> int:
    """Past this is unusual for the user: their own peak times the factor, never below the
    floor (a quiet history is not a hair trigger), never above the ceiling for everyone."""
    return min(max(floor, int(peak * factor)), ceiling)


@dataclass(frozen=True)
class Baseline:
    """The user's busiest minute of the last MONITOR_BASELINE_DAYS (audit.detectors.baselines)."""

    peaks: dict[str, int]

    def threshold(self, what: str) -> int:
        return own_threshold(
            self.peaks.get(what, 0),
            factor=settings.MONITOR_BULK_READ_FACTOR,
            floor=settings.MONITOR_BULK_READ_FLOOR,
            ceiling=settings.MONITOR_BULK_READ_CEILING,
        )

    def search_threshold(self) -> int:
        return own_threshold(
            self.peaks.get(SEARCHES, 0),
            factor=settings.MONITOR_BULK_READ_FACTOR,
            floor=settings.MONITOR_SEARCH_FLOOR,
            ceiling=settings.MONITOR_SEARCH_CEILING,
        )


def _parse_baseline(raw: Any) -> Baseline:
    if not raw:
        return Baseline({})
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    peaks: dict[str, int] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if value.isdigit():
            peaks[name] = int(value)
    return Baseline(peaks)


def _parse_peak(raw: Any) -> int:
    text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
    return int(text) if text.isdigit() else 0


def access_events_score(events: Sequence[AccessEvent]) -> None:
    """Count the batch's reads and refusals per user, and raise what crossed a threshold.
    A monitoring failure is logged, never turned into the agent's error page."""
    try:
        _score(events)
    except Exception:
        logger.warning("inline scoring failed", exc_info=True)


def _rows_read(event: AccessEvent) -> int:
    """Rows an API token was shown: a page of a list ("list:50", "search:50") or one object."""
    if not event.allowed:
        return 0
    for prefix in ("list:", SEARCH_PREFIX):
        if event.action.startswith(prefix):
            count = event.action.removeprefix(prefix)
            return int(count) if count.isdigit() else 0
    return 1 if event.action == "view" else 0


def _score(events: Sequence[AccessEvent]) -> None:
    reads: dict[tuple[int, str], set[int]] = defaultdict(set)
    denied: dict[int, set[tuple[str, int]]] = defaultdict(set)
    token_rows: dict[tuple[int, int], int] = defaultdict(int)
    searches: dict[int, int] = defaultdict(int)
    for event in events:
        if event.api_token_id is not None and event.user_id is not None:
            token_rows[(event.api_token_id, event.user_id)] += _rows_read(event)
        if event.user_id is not None and event.allowed and event.action.startswith(SEARCH_PREFIX):
            searches[event.user_id] += 1
        if event.user_id is None or event.object_id is None:
            continue
        if event.action != "view" or event.object_type not in PROBED_TYPES:
            continue
        if not event.allowed:
            denied[event.user_id].add((event.object_type, event.object_id))
        elif event.object_type in READ_TYPES:
            reads[(event.user_id, READ_TYPES[event.object_type])].add(event.object_id)
    token_rows = {key: rows for key, rows in token_rows.items() if rows}
    if not reads and not denied and not token_rows and not searches:
        return
    minute = int(time.time() // 60)
    increments: dict[str, int] = {}
    for (user_id, what), ids in reads.items():
        increments[_counter_key(user_id, what, minute)] = len(ids)
    for user_id, objects in denied.items():
        increments[_counter_key(user_id, "denied", minute)] = len(objects)
    for (token_id, _), rows in token_rows.items():
        increments[_counter_key(token_id, "token_rows", minute)] = rows
    for user_id, count in searches.items():
        increments[_counter_key(user_id, SEARCHES, minute)] = count
    users = sorted({user_id for user_id, _ in reads} | set(denied) | set(searches))
    tokens = sorted({token_id for token_id, _ in token_rows})
    totals, raw_baselines = counters().add(
        increments, [baseline_key(user_id) for user_id in users] + [token_baseline_key(t) for t in tokens]
    )
    baselines = dict(zip(users, map(_parse_baseline, raw_baselines[: len(users)]), strict=True))
    token_peaks = dict(zip(tokens, map(_parse_peak, raw_baselines[len(users) :]), strict=True))
    for (user_id, what), ids in reads.items():
        key = _counter_key(user_id, what, minute)
        _check_reads(user_id, what, totals[key], len(ids), baselines[user_id])
    for user_id, objects in denied.items():
        key = _counter_key(user_id, "denied", minute)
        _check_denied(user_id, totals[key], len(objects), sorted(objects)[-10:])
    for (token_id, user_id), rows in token_rows.items():
        total = totals[_counter_key(token_id, "token_rows", minute)]
        _check_token(token_id, user_id, total, rows, token_peaks[token_id])
    for user_id, count in searches.items():
        _check_searches(user_id, totals[_counter_key(user_id, SEARCHES, minute)], count, baselines[user_id])


def _crossed(total: int, added: int, threshold: int) -> bool:
    return total - added <= threshold < total


def own_or_ceiling(total: int, added: int, threshold: int, ceiling: int) -> AlertSeverity | None:
    """The severity of the event that took a count past a line — only that one raises, the
    next ones are past it already: past the user's own pattern, medium; past the ceiling
    (also when that is their pattern), high."""
    if _crossed(total, added, ceiling):
        return AlertSeverity.HIGH
    if threshold < ceiling and _crossed(total, added, threshold):
        return AlertSeverity.MEDIUM
    return None


def _rate_score(total: int, ceiling: int) -> int:
    return min(100, 50 + 50 * total // max(1, 2 * ceiling))


def _check_reads(user_id: int, what: str, total: int, added: int, baseline: Baseline) -> None:
    threshold = baseline.threshold(what)
    ceiling = settings.MONITOR_BULK_READ_CEILING
    if (severity := own_or_ceiling(total, added, threshold, ceiling)) is None:
        return
    alert_raise(
        Finding(
            kind=AlertKind.BULK_READS,
            severity=severity,
            score=_rate_score(total, ceiling),
            pattern=what,
            user_id=user_id,
            summary=f"{total} {what} opened within a minute (threshold {min(threshold, ceiling)}).",
            evidence={"what": what, "per_minute": total},
            baseline={
                "own_peak_per_minute": baseline.peaks.get(what, 0),
                "factor": settings.MONITOR_BULK_READ_FACTOR,
                "floor": settings.MONITOR_BULK_READ_FLOOR,
                "ceiling": ceiling,
                "threshold": threshold,
                "days": settings.MONITOR_BASELINE_DAYS,
            },
        )
    )


def _check_searches(user_id: int, total: int, added: int, baseline: Baseline) -> None:
    """Search after search: how a pull finds what to open, or maps who is a customer."""
    threshold = baseline.search_threshold()
    ceiling = settings.MONITOR_SEARCH_CEILING
    if (severity := own_or_ceiling(total, added, threshold, ceiling)) is None:
        return
    alert_raise(
        Finding(
            kind=AlertKind.SEARCH_BURST,
            severity=severity,
            score=_rate_score(total, ceiling),
            pattern=SEARCHES,
            user_id=user_id,
            summary=f"{total} searches within a minute (threshold {threshold}).",
            evidence={"searches_per_minute": total},
            baseline={
                "own_peak_per_minute": baseline.peaks.get(SEARCHES, 0),
                "factor": settings.MONITOR_BULK_READ_FACTOR,
                "floor": settings.MONITOR_SEARCH_FLOOR,
                "ceiling": ceiling,
                "threshold": threshold,
                "days": settings.MONITOR_BASELINE_DAYS,
            },
        )
    )


def _check_denied(user_id: int, total: int, added: int, sample: list[tuple[str, int]]) -> None:
    threshold = settings.MONITOR_DENIED_BURST
    if not _crossed(total, added, threshold):
        return
    alert_raise(
        Finding(
            kind=AlertKind.DENIED_BURST,
            severity=AlertSeverity.HIGH,
            score=80,
            pattern="denied",
            user_id=user_id,
            summary=f"{total} refused accesses within a minute: ids outside the segment tried.",
            evidence={"per_minute": total, "sample": [f"{kind}:{pk}" for kind, pk in sample]},
            baseline={"threshold_per_minute": threshold},
        )
    )


def _check_token(token_id: int, user_id: int, total: int, added: int, peak: int) -> None:
    """An integration pulling far more than it ever does: a stolen token's bulk export.
    Judged against the token's own busiest minute, not its owner's: one service account
    can hold a nightly CRM sync and a quiet billing lookup."""
    ceiling = settings.MONITOR_TOKEN_ROWS_PER_MINUTE
    threshold = own_threshold(
        peak,
        factor=settings.MONITOR_BULK_READ_FACTOR,
        floor=settings.MONITOR_TOKEN_ROWS_FLOOR,
        ceiling=ceiling,
    )
    if (severity := own_or_ceiling(total, added, threshold, ceiling)) is None:
        return
    alert_raise(
        Finding(
            kind=AlertKind.TOKEN_READ_VOLUME,
            severity=severity,
            score=_rate_score(total, ceiling),
            pattern=f"token:{token_id}",
            user_id=user_id,
            summary=f"API token #{token_id} was shown {total} rows within a minute (threshold {threshold}).",
            evidence={"api_token": token_id, "rows_per_minute": total},
            baseline={
                "own_peak_per_minute": peak,
                "factor": settings.MONITOR_BULK_READ_FACTOR,
                "floor": settings.MONITOR_TOKEN_ROWS_FLOOR,
                "ceiling": ceiling,
                "threshold": threshold,
                "days": settings.MONITOR_BASELINE_DAYS,
            },
        )
    )
