"""Sign-in detectors, run on Celery over new security events, a batch at a time.

Each detector reads the history its batch needs in one or two queries, then judges every
event against what came before *that event* (earlier rows and earlier events of the same
batch alike), so running late, or again, judges the same way.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

import geoip2.database
import geoip2.errors
import maxminddb
from django.conf import settings
from django.db.models import Count, Min

from audit.alerts.models import AlertKind, AlertSeverity
from audit.alerts.services import Finding
from audit.models import SecurityEvent

logger = logging.getLogger(__name__)

Kind = SecurityEvent.Kind
# A sign-in is complete when its second factor is accepted.
SIGN_IN = Kind.OTP_SUCCEEDED
NETWORK_HISTORY = timedelta(days=30)
HOUR_HISTORY = timedelta(days=90)
# Half the Earth's circumference at the speed limit takes under a day: an older sign-in
# cannot be too far away to have reached.
TRAVEL_HISTORY = timedelta(hours=24)
EARTH_RADIUS_KM = 6371.0


class Detector(Protocol):
    kinds: frozenset[str]

    def detect(self, events: Sequence[SecurityEvent]) -> list[Finding]:
        """Findings for the events of its kinds in the batch, in the events' order."""


class Row(NamedTuple):
    """The columns a detector compares with: plain tuples, as the history of a batch can
    run to many thousand rows."""

    pk: int
    created_at: datetime
    user_id: int | None
    ip_address: str | None
    username_attempted: str


@dataclass
class History:
    """One user's or address's rows, oldest first, with their times for bisection."""

    rows: list[Row] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)

    def before(self, event: SecurityEvent, since: timedelta) -> list[Row]:
        """The rows older than the event, within `since` of it."""
        start = bisect.bisect_left(self.times, event.created_at - since)
        end = bisect.bisect_right(self.times, event.created_at)
        return [
            row for row in self.rows[start:end] if (row.created_at, row.pk) < (event.created_at, event.pk)
        ]

    def earlier(self, event: SecurityEvent) -> tuple[int, datetime | None]:
        """How many rows are older than the event, and when the first was."""
        count = bisect.bisect_left(self.times, event.created_at)
        return count, self.times[0] if count else None

    def within(self, event: SecurityEvent, window: timedelta) -> list[Row]:
        """The rows in (event - window, event], the event included."""
        start = bisect.bisect_right(self.times, event.created_at - window)
        end = bisect.bisect_right(self.times, event.created_at)
        return [
            row for row in self.rows[start:end] if (row.created_at, row.pk) <= (event.created_at, event.pk)
        ]


def _history(
    kinds: frozenset[str], events: Sequence[SecurityEvent], since: timedelta, by: str
) -> dict[object, History]:
    """The rows of these kinds from `since` before the batch's first event to its last,
    per user or address: what each event is compared with. One query per batch."""
    keys = {getattr(event, by) for event in events}
    rows = SecurityEvent.objects.filter(
        kind__in=kinds,
        **{f"{by}__in": keys},
        created_at__gte=min(event.created_at for event in events) - since,
        created_at__lte=max(event.created_at for event in events),
    ).order_by("created_at", "pk")
    found: dict[object, History] = defaultdict(History)
    for row in rows.values_list(*Row._fields):
        history = found[row[Row._fields.index(by)]]
        history.rows.append(Row(*row))
        history.times.append(row[1])
    return found


class UnusualSignInHour:
    """A sign-in in an hour of the day (±1 h) in which this user has not signed in over
    the last 90 days, once they have MONITOR_LEARNING_SIGN_INS sign-ins over
    MONITOR_LEARNING_DAYS (before that there is no pattern to differ from)."""

    kinds: frozenset[str] = frozenset({SIGN_IN})

    def detect(self, events: Sequence[SecurityEvent]) -> list[Finding]:
        events = [event for event in events if event.user_id is not None]
        if not events:
            return []
        history = _history(self.kinds, events, HOUR_HISTORY, "user_id")
        # Sign-ins before the history read still count towards the learning period.
        older = {
            row["user_id"]: row
            for row in SecurityEvent.objects.filter(
                kind=SIGN_IN,
                user_id__in={event.user_id for event in events},
                created_at__lt=min(event.created_at for event in events) - HOUR_HISTORY,
            )
            .values("user_id")
            .annotate(n=Count("id"), first=Min("created_at"))
        }
        zone = ZoneInfo(settings.MONITOR_TIME_ZONE)
        findings = []
        for event in events:
            read, first_read = history[event.user_id].earlier(event)
            old = older.get(event.user_id, {"n": 0, "first": None})
            count = old["n"] + read
            first: datetime | None = old["first"] or first_read
            learning_over = event.created_at - timedelta(days=settings.MONITOR_LEARNING_DAYS)
            if count < settings.MONITOR_LEARNING_SIGN_INS or first is None or first > learning_over:
                continue
            recent = history[event.user_id].before(event, HOUR_HISTORY)
            hours = Counter(row.created_at.astimezone(zone).hour for row in recent)
            hour = event.created_at.astimezone(zone).hour
            if any(hours[(hour + delta) % 24] for delta in (-1, 0, 1)):
                continue
            findings.append(
                Finding(
                    kind=AlertKind.UNUSUAL_SIGN_IN_HOUR,
                    severity=AlertSeverity.MEDIUM,
                    score=60,
                    pattern=f"hour:{hour:02d}",
                    user_id=event.user_id,
                    ip_address=event.ip_address,
                    summary=f"Signed in at {hour:02d}:00 {zone}, an hour they never sign in.",
                    evidence={"hour": hour, "time_zone": settings.MONITOR_TIME_ZONE, "event": event.pk},
                    baseline={
                        "sign_ins_by_hour": {f"{h:02d}": n for h, n in sorted(hours.items())},
                        "sign_ins": len(recent),
                        "days": HOUR_HISTORY.days,
                    },
                )
            )
        return findings


@functools.lru_cache(maxsize=65536)
def network_of(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) around an address: a new lease is not a new network."""
    ip = ipaddress.ip_address(address)
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False))


class NetworkChange:
    """A sign-in from a network none of this user's sign-ins of the last 30 days came from."""

    kinds: frozenset[str] = frozenset({SIGN_IN})

    def detect(self, events: Sequence[SecurityEvent]) -> list[Finding]:
        events = [event for event in events if event.user_id is not None and event.ip_address]
        if not events:
            return []
        history = _history(self.kinds, events, NETWORK_HISTORY, "user_id")
        findings = []
        for event in events:
            assert event.ip_address is not None  # noqa: S101  # filtered above
            earlier = history[event.user_id].before(event, NETWORK_HISTORY)
            seen = {network_of(row.ip_address) for row in earlier if row.ip_address}
            network = network_of(event.ip_address)
            if not seen or network in seen:
                continue  # a first sign-in has nothing to change from
            findings.append(
                Finding(
                    kind=AlertKind.NETWORK_CHANGE,
                    severity=AlertSeverity.LOW,
                    score=30,
                    pattern=network,
                    user_id=event.user_id,
                    ip_address=event.ip_address,
                    summary=f"Signed in from {network}, not seen in their last {NETWORK_HISTORY.days} days.",
                    evidence={"ip_address": event.ip_address, "network": network, "event": event.pk},
                    baseline={"networks": sorted(seen), "days": NETWORK_HISTORY.days},
                )
            )
        return findings


class Place(NamedTuple):
    latitude: float
    longitude: float
    city: str
    country: str

    def label(self) -> str:
        return ", ".join(part for part in (self.city, self.country) if part) or "?"

    def seen(self, address: str | None, at: datetime) -> dict[str, object]:
        """The place as an alert's evidence shows it: with the address and the time."""
        return {**self._asdict(), "ip_address": address, "at": at.isoformat()}

    def km_to(self, other: Place) -> float:
        """Great-circle (haversine) distance."""
        lat1, lat2 = math.radians(self.latitude), math.radians(other.latitude)
        dlat, dlon = lat2 - lat1, math.radians(other.longitude - self.longitude)
        a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
        return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


@functools.lru_cache(maxsize=4)
def _city_reader(path: str) -> geoip2.database.Reader:
    # Opened once per worker: the reader memory-maps the file and is safe to share.
    return geoip2.database.Reader(path)


@functools.lru_cache(maxsize=65536)
def _place(path: str, address: str) -> Place | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    # A private or reserved address says nothing about where its user is.
    if not ip.is_global:
        return None
    try:
        found = _city_reader(path).city(address)
    except (geoip2.errors.AddressNotFoundError, ValueError):
        return None
    latitude, longitude = found.location.latitude, found.location.longitude
    if latitude is None or longitude is None:
        return None
    return Place(latitude, longitude, found.city.name or "", found.country.iso_code or "")


def place_of(address: str | None) -> Place | None:
    """Where the configured City database puts an address; None where it cannot say."""
    return _place(settings.GEOIP_CITY_DB, address) if address and settings.GEOIP_CITY_DB else None


class ImpossibleTravel:
    """A sign-in from a place the user's previous (locatable) sign-in could not have been
    travelled from in the time between: farther than MONITOR_TRAVEL_MIN_KM, faster than
    MONITOR_TRAVEL_KMH. Off unless GEOIP_CITY_DB names a City database."""

    kinds: frozenset[str] = frozenset({SIGN_IN})

    def detect(self, events: Sequence[SecurityEvent]) -> list[Finding]:
        if not settings.GEOIP_CITY_DB:
            return []
        events = [event for event in events if event.user_id is not None and event.ip_address]
        if not events:
            return []
        try:
            _city_reader(settings.GEOIP_CITY_DB)
        except (OSError, maxminddb.InvalidDatabaseError):
            # A missing or broken file turns this detector off, not the others of the run.
            logger.warning("GEOIP_CITY_DB cannot be read", exc_info=True)
            return []
        history = _history(self.kinds, events, TRAVEL_HISTORY, "user_id")
        findings = []
        for event in events:
            here = place_of(event.ip_address)
            if here is None:
                continue
            earlier = history[event.user_id].before(event, TRAVEL_HISTORY)
            previous = next(
                ((row, place) for row in reversed(earlier) if (place := place_of(row.ip_address))), None
            )
            if previous is None:
                continue
            row, there = previous
            km = there.km_to(here)
            # Two sign-ins in the same minute: as fast as a minute allows, not a division by 0.
            hours = max((event.created_at - row.created_at).total_seconds() / 3600, 1 / 60)
            speed = km / hours
            if km < settings.MONITOR_TRAVEL_MIN_KM or speed <= settings.MONITOR_TRAVEL_KMH:
                continue
            findings.append(
                Finding(
                    kind=AlertKind.IMPOSSIBLE_TRAVEL,
                    severity=AlertSeverity.MEDIUM,
                    score=min(100, int(50 * speed / settings.MONITOR_TRAVEL_KMH)),
                    pattern=f"travel:{there.country or there.city}>{here.country or here.city}",
                    user_id=event.user_id,
                    ip_address=event.ip_address,
                    summary=(
                        f"Signed in from {here.label()} {hours:.1f} h after {there.label()}, "
                        f"{km:.0f} km away ({speed:.0f} km/h)."
                    ),
                    evidence={
                        "from": there.seen(row.ip_address, row.created_at),
                        "to": here.seen(event.ip_address, event.created_at),
                        "distance_km": round(km),
                        "hours": round(hours, 2),
                        "speed_kmh": round(speed),
                        "event": event.pk,
                        "previous_event": row.pk,
                    },
                    baseline={
                        "max_speed_kmh": settings.MONITOR_TRAVEL_KMH,
                        "min_distance_km": settings.MONITOR_TRAVEL_MIN_KM,
                    },
                )
            )
        return findings


class OtpGuessing:
    """Refused second-factor codes for one account piling up within the window."""

    kinds: frozenset[str] = frozenset({Kind.OTP_FAILED, Kind.OTP_THROTTLED})

    def detect(self, events: Sequence[SecurityEvent]) -> list[Finding]:
        events = [event for event in events if event.user_id is not None]
        if not events:
            return []
        window = settings.MONITOR_WINDOW
        minutes = int(window.total_seconds() // 60)
        history = _history(self.kinds, events, window, "user_id")
        findings = []
        for event in events:
            failures = history[event.user_id].within(event, window)
            if len(failures) < settings.MONITOR_OTP_GUESSES:
                continue
            addresses = sorted({row.ip_address for row in failures if row.ip_address})
            findings.append(
                Finding(
                    kind=AlertKind.OTP_GUESSING,
                    severity=AlertSeverity.HIGH,
                    score=min(100, 60 + 5 * len(failures)),
                    pattern="otp",
                    user_id=event.user_id,
                    ip_address=event.ip_address,
                    summary=f"{len(failures)} refused second-factor codes within {minutes} minutes.",
                    evidence={"refused_codes": len(failures), "addresses": addresses[:10]},
                    baseline={
                        "threshold": settings.MONITOR_OTP_GUESSES,
                        "window_minutes": minutes,
                    },
                )
            )
        return findings


class PasswordSpraying:
    """One address failing passwords for many different account names within the window."""

    kinds: frozenset[str] = frozenset({Kind.LOGIN_FAILED, Kind.LOGIN_THROTTLED})

    def detect(self, events: Sequence[SecurityEvent]) -> list[Finding]:
        events = [event for event in events if event.ip_address]
        if not events:
            return []
        window = settings.MONITOR_WINDOW
        history = _history(self.kinds, events, window, "ip_address")
        findings = []
        for event in events:
            assert event.ip_address is not None  # noqa: S101  # filtered above
            rows = history[event.ip_address].within(event, window)
            names = {row.username_attempted for row in rows if row.username_attempted}
            if len(names) < settings.MONITOR_SPRAY_USERNAMES:
                continue
            findings.append(
                Finding(
                    kind=AlertKind.PASSWORD_SPRAYING,
                    severity=AlertSeverity.HIGH,
                    score=min(100, 60 + 2 * len(names)),
                    pattern=event.ip_address,
                    ip_address=event.ip_address,
                    summary=f"Passwords refused for {len(names)} different accounts from {event.ip_address}.",
                    evidence={
                        "ip_address": event.ip_address,
                        "usernames": sorted(names)[:20],
                        "count": len(names),
                    },
                    baseline={
                        "threshold": settings.MONITOR_SPRAY_USERNAMES,
                        "window_minutes": int(window.total_seconds() // 60),
                    },
                )
            )
        return findings


class NewDevice:
    """A device registered for a user who already had one: the first is their enrollment,
    a later one is a new browser — theirs, or a thief's with their password and code."""

    kinds: frozenset[str] = frozenset({Kind.DEVICE_REGISTERED})

    def detect(self, events: Sequence[SecurityEvent]) -> list[Finding]:
        events = [event for event in events if event.user_id is not None]
        if not events:
            return []
        known: dict[int | None, int] = dict(
            SecurityEvent.objects.filter(
                kind=Kind.DEVICE_REGISTERED,
                user_id__in={event.user_id for event in events},
                created_at__lt=min(event.created_at for event in events),
            )
            .values("user_id")
            .annotate(n=Count("id"))
            .values_list("user_id", "n")
        )
        findings = []
        for event in events:
            before = known.get(event.user_id, 0)
            known[event.user_id] = before + 1  # later events of the batch count this one
            if not before:
                continue
            device = event.detail.get("device")
            findings.append(
                Finding(
                    kind=AlertKind.NEW_DEVICE,
                    severity=AlertSeverity.LOW,
                    score=40,
                    pattern=f"device:{device}",
                    user_id=event.user_id,
                    ip_address=event.ip_address,
                    summary=f"New device registered: {event.detail.get('name', '?')}.",
                    evidence={
                        "device": device,
                        "name": event.detail.get("name"),
                        "binding": event.detail.get("binding"),
                        "event": event.pk,
                    },
                    baseline={"devices_before": before},
                )
            )
        return findings


DETECTORS: tuple[Detector, ...] = (
    UnusualSignInHour(),
    NetworkChange(),
    ImpossibleTravel(),
    OtpGuessing(),
    PasswordSpraying(),
    NewDevice(),
)
WATCHED_KINDS = frozenset().union(*(detector.kinds for detector in DETECTORS))
