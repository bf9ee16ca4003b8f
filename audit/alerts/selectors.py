"""Reads of alerts, scoped to who may see them."""

from __future__ import annotations

from django.db.models import QuerySet

from audit.alerts.models import Alert
from inbox import policy
from inbox.policy import AccessContext


def alerts_visible(ctx: AccessContext) -> QuerySet[Alert]:
    """Administrators see every alert but those about themselves; a supervisor only those
    about the accounts they manage — never their own (a stolen supervisor session must not
    read or dismiss the alert about itself)."""
    alerts = Alert.objects.exclude(user_id=ctx.user.pk)
    if policy.is_administrator(ctx.user):
        return alerts
    return alerts.filter(user__in=policy.managed_users(ctx))
