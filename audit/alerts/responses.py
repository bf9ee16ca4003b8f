"""The automated responses, one object each behind one contract: what taking it does and
how it is undone. The services never ask which response they hold."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import User, UserSession
from accounts.services import _account_lock, account_unlock, sessions_end_all
from audit.alerts import blocks
from audit.alerts.models import Alert, AlertResponse, ResponseKind
from inbox.exports.services import exports_freeze, exports_unfreeze


def step_up_key(user_id: int) -> str:
    return f"monitor:step_up:{user_id}"


class Response(Protocol):
    def applies(self, alert: Alert) -> bool:
        """Whether the response means anything for this alert (an account, an address)."""

    def take(self, alert: Alert, taken: AlertResponse) -> dict[str, Any]:
        """Do it (`taken` is its saved record); returns what was done, kept as its detail."""

    def reverse(self, taken: AlertResponse, *, by: User) -> None:
        """Undo what `take` did, as far as anything is left to undo."""


class _OnAccount:
    def applies(self, alert: Alert) -> bool:
        return alert.user_id is not None


class Notify(_OnAccount):
    """Supervisors who manage the user (administrators for an address) hear of it live and
    by email; what was said cannot be unsaid, so reversing records the reversal only."""

    def applies(self, alert: Alert) -> bool:
        return True

    def take(self, alert: Alert, taken: AlertResponse) -> dict[str, Any]:
        from audit.alerts import notifications

        recipients = notifications.supervisors_of(alert)
        notifications.notify_after_commit(alert, recipients)
        return {"supervisors": [user.pk for user in recipients]}

    def reverse(self, taken: AlertResponse, *, by: User) -> None:
        return None


class StepUp(_OnAccount):
    """Every session of the user must give a fresh second factor before its next request
    goes on (audit.middleware.AlertResponseMiddleware): a marker with the alert's time."""

    def take(self, alert: Alert, taken: AlertResponse) -> dict[str, Any]:
        assert alert.user_id is not None  # noqa: S101  # applies() checked it
        ttl = settings.MONITOR_STEP_UP_TTL.total_seconds()
        key, at = step_up_key(alert.user_id), alert.created_at.timestamp()
        transaction.on_commit(lambda: cache.set(key, at, timeout=ttl))
        return {"until": (alert.created_at + settings.MONITOR_STEP_UP_TTL).isoformat()}

    def reverse(self, taken: AlertResponse, *, by: User) -> None:
        key = step_up_key(taken.alert.user_id or 0)
        transaction.on_commit(lambda: cache.delete(key))


class EndSessions(_OnAccount):
    """The existing session end: refused at the next request, open sockets close now. The
    person signs in again to undo it, so reversing has nothing left to restore."""

    def take(self, alert: Alert, taken: AlertResponse) -> dict[str, Any]:
        assert alert.user is not None  # noqa: S101  # applies() checked it
        ended = sessions_end_all(user=alert.user, reason=UserSession.EndReason.REVOKED)
        return {"sessions_ended": ended}

    def reverse(self, taken: AlertResponse, *, by: User) -> None:
        return None


class LockAccount(_OnAccount):
    def take(self, alert: Alert, taken: AlertResponse) -> dict[str, Any]:
        assert alert.user is not None  # noqa: S101  # applies() checked it
        if alert.user.is_locked:
            return {"already_locked": True}
        _account_lock(user=alert.user, reason=f"Alert #{alert.pk}: {alert.get_kind_display()}")
        return {"locked": True}

    def reverse(self, taken: AlertResponse, *, by: User) -> None:
        user = taken.alert.user
        # Only a lock this response made: an earlier one had a reason of its own.
        if user is not None and user.is_locked and not taken.detail.get("already_locked"):
            account_unlock(user=user, by=by)


class FreezeExports(_OnAccount):
    """No export requested, run or downloaded until the freeze lapses (inbox.exports)."""

    def take(self, alert: Alert, taken: AlertResponse) -> dict[str, Any]:
        assert alert.user is not None  # noqa: S101  # applies() checked it
        until = timezone.now() + settings.MONITOR_EXPORT_FREEZE_TTL
        reason = f"Alert #{alert.pk}: {alert.get_kind_display()}"
        freeze = exports_freeze(alert.user, reason=reason, until=until)
        return {"freeze": freeze.pk, "until": until.isoformat()}

    def reverse(self, taken: AlertResponse, *, by: User) -> None:
        if taken.alert.user is not None:
            exports_unfreeze(taken.alert.user, by=by)


class BlockAddress:
    """Every request from the address is refused (audit.middleware) until MONITOR_BLOCK_TTL
    lapses or the block is lifted; the block is a row (audit.alerts.blocks)."""

    def applies(self, alert: Alert) -> bool:
        return alert.ip_address is not None

    def take(self, alert: Alert, taken: AlertResponse) -> dict[str, Any]:
        assert alert.ip_address is not None  # noqa: S101  # applies() checked it
        until: datetime = timezone.now() + settings.MONITOR_BLOCK_TTL
        block = blocks.block_create(
            response=taken,
            ip_address=alert.ip_address,
            reason=f"Alert #{alert.pk}: {alert.get_kind_display()}",
            until=until,
        )
        return {"ip_address": alert.ip_address, "network": block.network, "until": until.isoformat()}

    def reverse(self, taken: AlertResponse, *, by: User) -> None:
        blocks.block_lift(response=taken, by=by)


RESPONSES: dict[str, Response] = {
    ResponseKind.NOTIFY: Notify(),
    ResponseKind.STEP_UP: StepUp(),
    ResponseKind.END_SESSIONS: EndSessions(),
    ResponseKind.LOCK_ACCOUNT: LockAccount(),
    ResponseKind.BLOCK_ADDRESS: BlockAddress(),
    ResponseKind.FREEZE_EXPORTS: FreezeExports(),
}
