"""Runs the sign-in detectors over security events not judged yet, in id order.

One cursor row, locked while a run reads past it: runs woken at once by several sign-ins
do not judge an event twice; a run that finds it locked leaves the work to the holder.
An event whose transaction commits after a later id's was read is not judged — security
events are written in autocommit, one statement each, so that window is a few
microseconds wide.
"""

from __future__ import annotations

from django.db import transaction

from audit.alerts.models import DetectorCursor
from audit.alerts.services import alert_raise
from audit.detectors.signin import DETECTORS, WATCHED_KINDS
from audit.models import SecurityEvent

CURSOR = "signin"
BATCH = 2000


def wake_on(event: SecurityEvent) -> None:
    """A sign-in event is judged now, not at the next beat: after the commit, one task."""
    if event.kind in WATCHED_KINDS:
        from audit.tasks import detectors_run as task

        # Robust: judging can wait for the next beat; the sign-in must not fail for it.
        transaction.on_commit(task.delay, robust=True)


def detectors_run(*, batch: int = BATCH) -> int:
    """Judge the new security events; returns how many were read."""
    DetectorCursor.objects.get_or_create(name=CURSOR)
    read = 0
    # What this run already raised or had refused (suppressed, already open): the same
    # finding again, for the next event of a burst, would be refused too.
    settled: set[tuple[object, ...]] = set()
    while True:
        with transaction.atomic():
            cursor = DetectorCursor.objects.select_for_update(skip_locked=True).filter(name=CURSOR).first()
            if cursor is None:
                return read
            events = list(SecurityEvent.objects.filter(pk__gt=cursor.last_id).order_by("pk")[:batch])
            for detector in DETECTORS:
                mine = [event for event in events if event.kind in detector.kinds]
                for finding in detector.detect(mine) if mine else ():
                    key = (
                        finding.kind,
                        finding.user_id,
                        finding.ip_address,
                        finding.pattern,
                        finding.severity,
                    )
                    if key not in settled:
                        settled.add(key)
                        alert_raise(finding)
            if events:
                cursor.last_id = events[-1].pk
                cursor.save(update_fields=["last_id"])
        read += len(events)
        if len(events) < batch:
            return read
