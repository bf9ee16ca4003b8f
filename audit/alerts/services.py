"""Raising alerts, answering them, and what supervisors do with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.alerts.models import (
    Alert,
    AlertKind,
    AlertResponse,
    AlertSeverity,
    AlertSuppression,
    ResponseMode,
    ResponsePolicy,
)
from audit.alerts.responses import RESPONSES
from audit.services import Kind, Severity, security_event_record
from inbox import policy
from inbox.policy import AccessContext

_EVENT_SEVERITY = {
    AlertSeverity.LOW: Severity.INFO,
    AlertSeverity.MEDIUM: Severity.WARNING,
    AlertSeverity.HIGH: Severity.CRITICAL,
}


@dataclass(frozen=True)
class Finding:
    """What a detector found: an alert to be, before suppression and deduplication."""

    kind: AlertKind
    severity: AlertSeverity
    score: int
    pattern: str
    summary: str
    evidence: dict[str, Any]
    baseline: dict[str, Any] = field(default_factory=dict)
    user_id: int | None = None
    ip_address: str | None = None


class AlertForbidden(Exception):
    """The caller may not handle this alert (its user is outside their delegation)."""


def _about(finding: Finding) -> dict[str, Any]:
    # An alert about an address has no user: "the same user" is then "no user".
    return {"user_id": finding.user_id} if finding.user_id is not None else {"user__isnull": True}


def _suppressed(finding: Finding) -> bool:
    return AlertSuppression.objects.filter(
        **_about(finding), kind=finding.kind, pattern=finding.pattern, until__gt=timezone.now()
    ).exists()


def _duplicate(finding: Finding) -> bool:
    # An alert already open for the same thing: a higher severity is news, the same is not.
    return Alert.objects.filter(
        **_about(finding),
        ip_address=finding.ip_address,
        kind=finding.kind,
        pattern=finding.pattern,
        status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED],
        severity__gte=finding.severity,
        created_at__gt=timezone.now() - settings.MONITOR_DEDUPE,
    ).exists()


def alert_raise(finding: Finding) -> Alert | None:
    """Record the finding as an alert and answer it as the response policies say; None when
    a false positive suppresses it or the same alert is already open."""
    if _suppressed(finding) or _duplicate(finding):
        return None
    with transaction.atomic():
        alert = Alert.objects.create(
            kind=finding.kind,
            severity=finding.severity,
            score=max(0, min(100, finding.score)),
            user_id=finding.user_id,
            ip_address=finding.ip_address,
            pattern=finding.pattern[:100],
            summary=finding.summary[:300],
            evidence=finding.evidence,
            baseline=finding.baseline,
        )
        security_event_record(
            kind=Kind.ALERT_RAISED,
            user=alert.user,
            severity=_EVENT_SEVERITY[AlertSeverity(alert.severity)],
            detail={"alert": alert.pk, "kind": alert.kind, "score": alert.score, "pattern": alert.pattern},
        )
        _respond(alert)
    return alert


def _respond(alert: Alert) -> None:
    policies = ResponsePolicy.objects.filter(kind=alert.kind, min_severity__lte=alert.severity).exclude(
        mode=ResponseMode.OFF
    )
    for rule in policies.order_by("response"):
        response = RESPONSES[rule.response]
        if not response.applies(alert):
            continue
        taken = AlertResponse.objects.create(alert=alert, response=rule.response, mode=rule.mode)
        if rule.mode == ResponseMode.ENFORCE:
            taken.detail = response.take(alert, taken)
            taken.save(update_fields=["detail"])
        security_event_record(
            kind=Kind.RESPONSE_TAKEN,
            user=alert.user,
            severity=Severity.WARNING,
            detail={"alert": alert.pk, "response": taken.response, "mode": taken.mode, **taken.detail},
        )


# --- What supervisors do ------------------------------------------------------------------


def _check_handles(ctx: AccessContext, alert: Alert) -> None:
    """Only the supervisors who manage the alert's user (administrators: every alert, and
    alone those about an address). Decided by the policy, and recorded like any decision."""
    if policy.is_administrator(ctx.user) and ctx.user.pk != alert.user_id:
        return
    if alert.user is None or not policy.can_manage(ctx, alert.user):
        raise AlertForbidden(f"Alert #{alert.pk} is about an account you do not supervise.")


def alert_handle(*, ctx: AccessContext, alert: Alert, status: Alert.Status, note: str = "") -> Alert:
    """Acknowledge, resolve, or mark as a false positive — which silences the same pattern
    for that user for MONITOR_FALSE_POSITIVE_SUPPRESSION."""
    _check_handles(ctx, alert)
    with transaction.atomic():
        alert.status = status
        alert.handled_by = ctx.user
        alert.handled_at = timezone.now()
        alert.note = note[:300]
        alert.save(update_fields=["status", "handled_by", "handled_at", "note"])
        detail: dict[str, Any] = {"alert": alert.pk, "status": status.value, "by": ctx.user.get_username()}
        if status == Alert.Status.FALSE_POSITIVE:
            until = alert.handled_at + settings.MONITOR_FALSE_POSITIVE_SUPPRESSION
            AlertSuppression.objects.create(
                user_id=alert.user_id,
                kind=alert.kind,
                pattern=alert.pattern,
                until=until,
                alert=alert,
                created_by=ctx.user,
            )
            detail["suppressed_until"] = until.isoformat()
        security_event_record(kind=Kind.ALERT_HANDLED, user=alert.user, detail=detail)
    return alert


def response_reverse(*, ctx: AccessContext, taken: AlertResponse) -> AlertResponse:
    """Undo an enforced response (unlock, lift the block, drop the step-up); a monitored
    one did nothing and has nothing to undo."""
    alert = taken.alert
    _check_handles(ctx, alert)
    if not taken.is_active:
        return taken
    with transaction.atomic():
        RESPONSES[taken.response].reverse(taken, by=ctx.user)
        taken.reversed_at = timezone.now()
        taken.reversed_by = ctx.user
        taken.save(update_fields=["reversed_at", "reversed_by"])
        security_event_record(
            kind=Kind.RESPONSE_REVERSED,
            user=alert.user,
            severity=Severity.WARNING,
            detail={"alert": alert.pk, "response": taken.response, "by": ctx.user.get_username()},
        )
    return taken


def responses_reverse_all(*, ctx: AccessContext, alert: Alert) -> int:
    responses = [taken for taken in alert.responses.all() if taken.is_active]
    for taken in responses:
        response_reverse(ctx=ctx, taken=taken)
    return len(responses)
