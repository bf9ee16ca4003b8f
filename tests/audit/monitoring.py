"""Helpers for the continuous-verification tests: response policies as a scenario sets
them, fresh detector counters, a clock that can be moved."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from unittest import mock

from django.conf import settings

from audit.alerts.models import AlertKind, AlertSeverity, ResponseKind, ResponseMode, ResponsePolicy
from config.redis import redis_client


def respond(
    kind: AlertKind,
    *responses: ResponseKind,
    mode: ResponseMode = ResponseMode.ENFORCE,
    min_severity: AlertSeverity = AlertSeverity.LOW,
) -> None:
    """Exactly these responses for the kind (the migration's defaults replaced)."""
    ResponsePolicy.objects.filter(kind=kind).delete()
    for response in responses:
        ResponsePolicy.objects.create(kind=kind, response=response, mode=mode, min_severity=min_severity)


def monitoring_keys_clear() -> None:
    """Counters, baselines, step-up markers, blocks and sign-in throttles of earlier tests
    (user ids and addresses repeat across tests). Only these keys: the Celery broker shares
    the Redis database, and flushing it would drop the worker's queue bindings."""
    client = redis_client()
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    for pattern in ("monitor:*", f"{prefix}*monitor:*", f"{prefix}*login-throttle:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


@contextlib.contextmanager
def clock_at(start: datetime) -> Iterator[None]:
    """timezone.now() runs on from `start` at the real pace, in every thread (the Celery
    worker's too): sign-in steps, sessions and detectors all see the same moved clock."""
    began = time.monotonic()

    def now() -> datetime:
        return start + timedelta(seconds=time.monotonic() - began)

    with mock.patch("django.utils.timezone.now", now):
        yield
