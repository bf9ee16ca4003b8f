"""Export volume, judged in the request that asks for an export (its access event): the
files and rows the user's exports were charged over the last 24 hours, against their own
busiest 24 hours of the last MONITOR_BASELINE_DAYS and a ceiling for everyone. Exports
are rare, so one grouped query per export request is cheap, and the freeze an alert
answers with stands before the next export is asked for.

Days are 24-hour windows counted back from now, the export quota's own window
(inbox.exports.selectors.QUOTA_WINDOW): "today" here is what the quota charges.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.alerts.models import AlertKind
from audit.alerts.services import Finding, alert_raise
from audit.detectors.inline import own_or_ceiling, own_threshold
from audit.models import AccessEvent
from inbox.exports.models import ExportJob
from inbox.exports.selectors import QUOTA_WINDOW
from inbox.exports.services import OBJECT_TYPE

logger = logging.getLogger(__name__)

EXPORT_REQUEST = "export:request"

_PER_DAY = f"""
SELECT floor(extract(epoch FROM (%s - created_at)) / %s)::int AS days_ago,
       count(*), coalesce(sum(rows_total), 0)
FROM {ExportJob._meta.db_table}
WHERE user_id = %s AND created_at > %s AND status <> %s
GROUP BY 1
"""  # noqa: S608  # the table name is the model's; every value is a parameter


@dataclass(frozen=True)
class ExportVolume:
    files: int
    rows: int
    peak_files: int
    peak_rows: int


def export_volume(user_id: int) -> ExportVolume:
    """The last 24 hours (a failed export charges nothing, as for the quota) and the
    busiest earlier 24 hours of the baseline period."""
    now = timezone.now()
    since = now - QUOTA_WINDOW * (settings.MONITOR_BASELINE_DAYS + 1)
    with connection.cursor() as cursor:
        cursor.execute(_PER_DAY, [now, QUOTA_WINDOW.total_seconds(), user_id, since, ExportJob.Status.FAILED])
        days = {days_ago: (files, rows) for days_ago, files, rows in cursor.fetchall()}
    files, rows = days.pop(0, (0, 0))
    return ExportVolume(
        files=files,
        rows=rows,
        peak_files=max((files for files, _ in days.values()), default=0),
        peak_rows=max((rows for _, rows in days.values()), default=0),
    )


def export_events_score(events: Sequence[AccessEvent]) -> None:
    """Judge each granted export request of the batch; a failure is logged, never the
    exporter's error page."""
    try:
        for event in events:
            if (
                event.object_type == OBJECT_TYPE
                and event.action == EXPORT_REQUEST
                and event.allowed
                and event.user_id is not None
                and event.object_id is not None
            ):
                _check(event.user_id, event.object_id)
    except Exception:
        logger.warning("export volume scoring failed", exc_info=True)


def _check(user_id: int, export_id: int) -> None:
    added_rows = ExportJob.objects.filter(pk=export_id).values_list("rows_total", flat=True).first() or 0
    volume = export_volume(user_id)
    factor = settings.MONITOR_EXPORT_FACTOR
    files_ceiling, rows_ceiling = settings.MONITOR_EXPORT_FILES_CEILING, settings.MONITOR_EXPORT_ROWS_CEILING
    files_threshold = own_threshold(
        volume.peak_files, factor=factor, floor=settings.MONITOR_EXPORT_FILES_FLOOR, ceiling=files_ceiling
    )
    rows_threshold = own_threshold(
        volume.peak_rows, factor=factor, floor=settings.MONITOR_EXPORT_ROWS_FLOOR, ceiling=rows_ceiling
    )
    crossed = [
        severity
        for severity in (
            own_or_ceiling(volume.files, 1, files_threshold, files_ceiling),
            own_or_ceiling(volume.rows, added_rows, rows_threshold, rows_ceiling),
        )
        if severity is not None
    ]
    if not crossed:
        return
    alert_raise(
        Finding(
            kind=AlertKind.EXPORT_VOLUME,
            severity=max(crossed),
            score=min(100, 50 + 25 * volume.files // files_ceiling + 25 * volume.rows // rows_ceiling),
            pattern="exports",
            user_id=user_id,
            summary=(
                f"{volume.files} exports holding {volume.rows} rows within 24 hours "
                f"(thresholds {files_threshold} exports, {rows_threshold} rows)."
            ),
            evidence={"exports_24h": volume.files, "rows_24h": volume.rows, "export": export_id},
            baseline={
                "own_peak_exports_per_day": volume.peak_files,
                "own_peak_rows_per_day": volume.peak_rows,
                "factor": factor,
                "exports_threshold": files_threshold,
                "rows_threshold": rows_threshold,
                "exports_ceiling": files_ceiling,
                "rows_ceiling": rows_ceiling,
                "days": settings.MONITOR_BASELINE_DAYS,
            },
        )
    )
