"""Reads for devices."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from accounts.models import BrowserDevice, User


def device_list(*, user: User) -> QuerySet[BrowserDevice]:
    """The person's own devices that are not revoked, with their open sessions counted and
    the last passkey verified on each (its posture is shown)."""
    return (
        BrowserDevice.objects.filter(user=user, revoked_at__isnull=True)
        .select_related("last_passkey")
        .annotate(open_sessions=Count("sessions", filter=Q(sessions__ended_at__isnull=True)))
        .order_by("-last_seen_at")
    )


def own_device(*, user: User, device_id: int) -> BrowserDevice | None:
    """One of the person's own devices; anyone else's is as if it did not exist."""
    return BrowserDevice.objects.filter(user=user, pk=device_id, revoked_at__isnull=True).first()
