"""Reads for the console, each scoped to the accounts the viewer manages (administrators:
everyone but themselves), as the alerts queue is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.conf import settings
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import ExtractHour, ExtractIsoWeekDay, TruncDate
from django.utils import timezone

from accounts.models import User, UserSession
from audit.alerts.models import Alert
from audit.alerts.selectors import alerts_visible
from audit.detectors.inline import READ_TYPES
from audit.models import AccessEvent, SecurityEvent
from audit.selectors import with_usernames
from inbox import policy
from inbox.models import Contact, Conversation
from inbox.policy import AccessContext

CHART_DAYS = 30
TIMELINE_LIMIT = 200
CONTACT_ACCESS_PAGE = 50


def watched_users(ctx: AccessContext) -> QuerySet[User]:
    return policy.managed_users(ctx)


@dataclass(frozen=True)
class Charts:
    sign_ins_by_weekday_hour: list[list[int]]  # 7 rows (Monday first) of 24 hours
    alerts_per_day: list[tuple[date, int]]
    denied_per_day: list[tuple[date, int]]
    top_readers: list[tuple[str, int]]


def _per_day(rows: QuerySet[Any], since: datetime) -> list[tuple[date, int]]:
    counts = {
        row["day"]: row["n"]
        for row in rows.annotate(day=TruncDate("created_at")).values("day").annotate(n=Count("id"))
    }
    first = since.date()
    return [
        (first + timedelta(days=n), counts.get(first + timedelta(days=n), 0)) for n in range(CHART_DAYS + 1)
    ]


def console_charts(ctx: AccessContext) -> Charts:
    since = timezone.now() - timedelta(days=CHART_DAYS)
    users = watched_users(ctx).values("pk")
    zone = ZoneInfo(settings.MONITOR_TIME_ZONE)
    grid = [[0] * 24 for _ in range(7)]
    sign_ins = (
        SecurityEvent.objects.filter(
            kind=SecurityEvent.Kind.OTP_SUCCEEDED, user__in=users, created_at__gte=since
        )
        .annotate(
            weekday=ExtractIsoWeekDay("created_at", tzinfo=zone), hour=ExtractHour("created_at", tzinfo=zone)
        )
        .values("weekday", "hour")
        .annotate(n=Count("id"))
    )
    for row in sign_ins:
        grid[row["weekday"] - 1][row["hour"]] = row["n"]
    alerts = alerts_visible(ctx).filter(created_at__gte=since)
    denied = AccessEvent.objects.filter(user_id__in=users, allowed=False, created_at__gte=since)
    readers = (
        AccessEvent.objects.filter(
            user_id__in=users,
            allowed=True,
            action="view",
            object_type__in=list(READ_TYPES),
            created_at__gte=timezone.now() - timedelta(days=1),
        )
        .values("user_id")
        .annotate(n=Count("id"))
        .order_by("-n")[:10]
    )
    top = list(readers)
    names = dict(User.objects.filter(pk__in=[row["user_id"] for row in top]).values_list("pk", "username"))
    return Charts(
        sign_ins_by_weekday_hour=grid,
        alerts_per_day=_per_day(alerts, since),
        denied_per_day=_per_day(denied, since),
        top_readers=[(names.get(row["user_id"], f"#{row['user_id']}"), row["n"]) for row in top],
    )


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    what: str  # sign-in, device, read, denied, alert
    text: str
    address: str | None = None


def agent_timeline(ctx: AccessContext, user: User) -> list[TimelineEntry]:
    """One account's story, newest first: security events, devices, reads, refusals and
    alerts, TIMELINE_LIMIT of each at most. The caller must manage the account."""
    entries = [
        TimelineEntry(event.created_at, "sign-in", event.get_kind_display(), event.ip_address)
        for event in SecurityEvent.objects.filter(user=user).order_by("-created_at")[:TIMELINE_LIMIT]
    ]
    entries += [
        TimelineEntry(
            event.created_at,
            "read" if event.allowed else "denied",
            f"{event.action} {event.object_type}:{event.object_id or '—'}",
            event.ip_address,
        )
        for event in AccessEvent.objects.filter(user_id=user.pk).order_by("-pk")[:TIMELINE_LIMIT]
    ]
    entries += [
        TimelineEntry(alert.created_at, "alert", f"{alert} — {alert.summary}", alert.ip_address)
        for alert in Alert.objects.filter(user=user).order_by("-created_at")[:TIMELINE_LIMIT]
    ]
    entries += _device_entries(user)
    return sorted(entries, key=lambda entry: entry.at, reverse=True)


def _device_entries(user: User) -> list[TimelineEntry]:
    # Devices come from the device registry where one is installed; without it there is
    # simply no device to show.
    try:
        devices = apps.get_model("accounts", "BrowserDevice")
    except LookupError:
        return []
    return [
        TimelineEntry(device.first_seen_at, "device", f"New device: {device.name}", device.last_ip)
        for device in devices.objects.filter(user=user).order_by("-first_seen_at")[:TIMELINE_LIMIT]
    ]


def contact_access_history(ctx: AccessContext, contact: Contact) -> QuerySet[AccessEvent]:
    """Who accessed a contact: the decisions on it and on those of its conversations the
    viewer may see, newest first, each with its user's name and its session's device. A
    conversation in an inbox outside the viewer's segment stays out, and with it who read
    it. The caller loaded the contact through the policy (access_contact)."""
    conversations = policy.visible_conversations(ctx).filter(contact=contact).values("pk")
    events = AccessEvent.objects.filter(
        Q(object_type=Contact._meta.label_lower, object_id=contact.pk)
        | Q(object_type=Conversation._meta.label_lower, object_id__in=conversations)
    )
    return (
        with_usernames(events)
        .annotate(
            device_name=Subquery(
                UserSession.objects.filter(pk=OuterRef("session_id")).values("device__name")[:1]
            ),
        )
        .order_by("-pk")
    )
