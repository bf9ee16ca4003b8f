"""Reads: a user's exports (theirs only), their quota use, and whether they are frozen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from inbox.exports.models import ExportFreeze, ExportJob

QUOTA_WINDOW = timedelta(hours=24)


def exports_of(user: User, *, limit: int = 20) -> list[ExportJob]:
    return list(ExportJob.objects.filter(user=user).select_related("inbox")[:limit])


def export_of(user: User, export_id: int) -> ExportJob:
    """One of the user's own exports: anyone else's answers 404, as a missing one does."""
    job = ExportJob.objects.filter(pk=export_id, user=user).select_related("inbox", "user").first()
    if job is None:
        raise Http404
    return job


@dataclass(frozen=True)
class QuotaUse:
    files: int
    rows: int


def quota_used(user: User) -> QuotaUse:
    """What the last 24 hours' exports charged: a failed one charges nothing."""
    used = ExportJob.objects.filter(user=user, created_at__gt=timezone.now() - QUOTA_WINDOW).aggregate(
        files=Count("pk", filter=~Q(status=ExportJob.Status.FAILED)),
        rows=Coalesce(Sum("rows_total", filter=~Q(status=ExportJob.Status.FAILED)), 0),
    )
    return QuotaUse(files=used["files"], rows=used["rows"])


def freeze_of(user: User) -> ExportFreeze | None:
    """The active freeze on the user's exports, if any."""
    return (
        ExportFreeze.objects.filter(user=user, lifted_at__isnull=True, until__gt=timezone.now())
        .order_by("-until")
        .first()
    )
