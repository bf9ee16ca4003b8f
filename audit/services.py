"""Writes to the audit trail. Callers describe what happened; nothing secret goes in."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from accounts.models import User
from audit.models import AccessEvent, RuleDecision, SecurityEvent

SESSION_ID_KEY = "portcullis_session_id"

Kind = SecurityEvent.Kind
Severity = SecurityEvent.Severity


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: behind a proxy the ASGI server is told which forwarded header to
    # trust (uvicorn --forwarded-allow-ips), so a client cannot forge its address here.
    return request.META.get("REMOTE_ADDR") or None


def _printable(value: str, limit: int) -> str:
    # Attacker-supplied text: PostgreSQL refuses NUL, and control characters only
    # serve to forge log lines.
    return "".join(ch for ch in value[:limit] if ch.isprintable())


# Who hears of each security event once it is written (the sign-in detectors wake up).
SECURITY_EVENT_HOOKS: list[Callable[[SecurityEvent], None]] = []


def security_event_record(
    *,
    kind: SecurityEvent.Kind,
    request: HttpRequest | None = None,
    user: User | None = None,
    severity: SecurityEvent.Severity = Severity.INFO,
    username_attempted: str = "",
    detail: dict[str, Any] | None = None,
) -> SecurityEvent:
    session_id = None
    ip_address = None
    user_agent = ""
    if request is not None:
        session_id = request.session.get(SESSION_ID_KEY) if hasattr(request, "session") else None
        ip_address = client_ip(request)
        user_agent = _printable(request.META.get("HTTP_USER_AGENT", ""), 300)
        if user is None and request.user.is_authenticated:
            user = request.user
    event = SecurityEvent.objects.create(
        kind=kind,
        severity=severity,
        user=user,
        username_attempted=_printable(username_attempted, 150),
        session_id=session_id,
        ip_address=ip_address,
        user_agent=user_agent,
        detail=detail or {},
    )
    for hook in SECURITY_EVENT_HOOKS:
        hook(event)
    return event


# Access events (and the rule decisions beside them) are collected per request (or task)
# and written in one INSERT per table at its end: a page that checks fifty objects costs
# one round trip, not fifty.
AccessRecord = AccessEvent | RuleDecision


@dataclass
class _Buffer:
    records: list[AccessRecord] = field(default_factory=list)
    # Keys of records that must be written once per request however often they are made.
    once: set[Hashable] = field(default_factory=set)


_access_buffer: ContextVar[_Buffer | None] = ContextVar("access_buffer", default=None)

# Who scores access events as they are written (the inline detectors, registered when the
# app is ready): reads and refusals are judged in the request that made them.
ACCESS_EVENT_SCORERS: list[Callable[[Sequence[AccessEvent]], None]] = []


def _scored(events: Sequence[AccessEvent]) -> None:
    for scorer in ACCESS_EVENT_SCORERS:
        scorer(events)


def access_event_record(
    *,
    user_id: int | None,
    session_id: int | None,
    api_token_id: int | None,
    ip_address: str | None,
    object_type: str,
    object_id: int | None,
    action: str,
    allowed: bool,
) -> None:
    access_record_add(
        AccessEvent(
            user_id=user_id,
            session_id=session_id,
            api_token_id=api_token_id,
            ip_address=ip_address,
            object_type=object_type,
            object_id=object_id,
            action=action,
            allowed=allowed,
        )
    )


def access_record_add(record: AccessRecord, *, once_key: Hashable | None = None) -> None:
    """Write the record with the request's batch (or now, outside one). A record with a
    `once_key` already seen in this batch is dropped."""
    buffer = _access_buffer.get()
    if buffer is None:
        record.save()
        if isinstance(record, AccessEvent):
            _scored([record])
        return
    if once_key is not None:
        if once_key in buffer.once:
            return
        buffer.once.add(once_key)
    buffer.records.append(record)


@contextlib.contextmanager
def access_events_batched() -> Iterator[None]:
    """Collect access records and write them together when the block ends, even on error."""
    token = _access_buffer.set(_Buffer())
    try:
        yield
    finally:
        buffer = _access_buffer.get()
        _access_buffer.reset(token)
        records = buffer.records if buffer is not None else []
        events = [record for record in records if isinstance(record, AccessEvent)]
        decisions = [record for record in records if isinstance(record, RuleDecision)]
        if events:
            AccessEvent.objects.bulk_create(events)
            _scored(events)
        if decisions:
            RuleDecision.objects.bulk_create(decisions)
