"""Telling supervisors: live to their open pages, and by email from a task."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from accounts import roles
from accounts.live import user_group
from accounts.models import User
from audit.alerts.models import Alert
from inbox import policy
from inbox.event_types import SecurityAlert
from inbox.events import send_to_groups
from inbox.policy import AccessContext


def supervisors_of(alert: Alert) -> list[User]:
    """Who may handle the alert: the supervisors who manage its user, and administrators
    (the only ones for an alert about an address). Asked of the policy per supervisor."""
    staff = User.objects.filter(is_active=True, is_service_account=False, locked_at=None).filter(
        groups__name__in=[roles.SUPERVISOR, roles.ADMINISTRATOR]
    ) | User.objects.filter(is_active=True, is_superuser=True)
    recipients = []
    for supervisor in staff.distinct().order_by("pk"):
        if supervisor.pk == alert.user_id:
            continue  # never told about oneself: the alert may be about their own stolen session
        ctx = AccessContext.for_task(supervisor)
        if policy.is_administrator(supervisor) or (
            alert.user_id is not None and policy.managed_users(ctx).filter(pk=alert.user_id).exists()
        ):
            recipients.append(supervisor)
    return recipients


def notify_after_commit(alert: Alert, recipients: list[User]) -> None:
    message: SecurityAlert = {
        "type": "security.alert",
        "alert_id": alert.pk,
        "kind": alert.kind,
        "severity": alert.get_severity_display(),
        "summary": alert.summary,
    }
    groups = [user_group(user.pk) for user in recipients]

    def send() -> None:
        from audit.tasks import alert_email

        send_to_groups(groups, message)
        alert_email.delay(alert.pk, [user.pk for user in recipients])

    # Robust: a channel layer or mail queue that is down is logged, and never turns the
    # request that raised the alert (a sign-in, say) into an error.
    transaction.on_commit(send, robust=True)


def alert_email_send(*, alert_id: int, recipient_ids: list[int]) -> int:
    """One email per supervisor, without the evidence: it names the alert, the admin shows it."""
    alert = Alert.objects.filter(pk=alert_id).select_related("user").first()
    if alert is None:
        return 0
    addresses = list(
        User.objects.filter(pk__in=recipient_ids, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not addresses:
        return 0
    subject = f"[Portcullis] {alert.get_severity_display()} alert: {alert.get_kind_display()}"
    body = f"{alert.summary}\n\nOpen alert #{alert.pk} in the supervision admin to see its evidence."
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, addresses)
