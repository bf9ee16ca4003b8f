from __future__ import annotations

from django.conf import settings
from django.db import models


class SecurityEvent(models.Model):
    """A security-relevant event: sign-in steps, lockouts, factor changes, refusals.

    Never holds a password, a one-time code or a session key: sessions are referred to by
    the id of their `accounts.UserSession` row.
    """

    class Kind(models.TextChoices):
        LOGIN_SUCCEEDED = "login_succeeded", "Password accepted"
        LOGIN_FAILED = "login_failed", "Password refused"
        LOGIN_LOCKED = "login_locked", "Sign-in to a locked account"
        LOGIN_THROTTLED = "login_throttled", "Sign-in refused: too many attempts"
        CREDENTIAL_STUFFING = "credential_stuffing", "Many usernames failing from one address"
        OTP_SUCCEEDED = "otp_succeeded", "Second factor accepted"
        OTP_FAILED = "otp_failed", "Second factor refused"
        OTP_THROTTLED = "otp_throttled", "Second factor throttled"
        BACKUP_CODE_USED = "backup_code_used", "Backup code used"
        LOCKOUT = "lockout", "Account locked"
        UNLOCKED = "unlocked", "Account unlocked"
        ENROLLED = "enrolled", "Authenticator enrolled"
        FACTOR_RESET = "factor_reset", "Second factor reset"
        BACKUP_CODES_ISSUED = "backup_codes_issued", "Backup codes issued"
        LOGOUT = "logout", "Logged out"
        LOGOUT_EVERYWHERE = "logout_everywhere", "Logged out everywhere"
        SESSION_ENDED = "session_ended", "Session ended by policy"
        PRIVILEGE_DENIED = "privilege_denied", "Privilege change refused"
        CHANGE_REQUESTED = "change_requested", "Privilege change requested"
        CHANGE_APPLIED = "change_applied", "Privilege change applied"
        CHANGE_REJECTED = "change_rejected", "Privilege change rejected"
        ENROLLMENT_CODE_ISSUED = "enrollment_code_issued", "Enrollment code issued"
        ENROLLMENT_CODE_USED = "enrollment_code_used", "Enrollment code used"
        ENROLLMENT_CODE_REFUSED = "enrollment_code_refused", "Enrollment code refused"
        POLICY_RULE_CHANGED = "policy_rule_changed", "Policy rule changed"
        API_TOKEN_ISSUED = "api_token_issued", "API token issued"
        API_TOKEN_REVOKED = "api_token_revoked", "API token revoked"
        API_TOKEN_REFUSED = "api_token_refused", "API token refused"
        WEBHOOK_REFUSED = "webhook_refused", "Webhook refused: origin not proven"
        WEBHOOK_UNVERIFIED = "webhook_unverified", "Webhook accepted unverified (monitor mode)"
        DEVICE_REGISTERED = "device_registered", "New device registered"
        DEVICE_APPROVED = "device_approved", "Device approved"
        DEVICE_REVOKED = "device_revoked", "Device revoked"
        DEVICE_PROOF_REFUSED = "device_proof_refused", "Request without a valid device proof"
        DEVICE_REFUSED = "device_refused", "Sign-in refused: device not usable"
        DEVICE_ATTESTED = "device_attested", "Device posture attested"
        DEVICE_ATTESTATION_REFUSED = "device_attestation_refused", "Device posture attestation refused"
        DBSC_REGISTERED = "dbsc_registered", "Device-bound session key registered (DBSC)"
        ALERT_RAISED = "alert_raised", "Alert raised"
        ALERT_HANDLED = "alert_handled", "Alert acknowledged, resolved or marked false positive"
        RESPONSE_TAKEN = "response_taken", "Automated response taken (or, in monitor mode, recorded)"
        RESPONSE_REVERSED = "response_reversed", "Automated response reversed"

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=40, choices=Kind.choices, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What was typed as a username on a failed sign-in; not a secret, and what a
    # supervisor needs to see credential stuffing against unknown names.
    username_attempted = models.CharField(max_length=150, blank=True)
    session_id = models.BigIntegerField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="secevent_user_time_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind}"


class AccessEvent(models.Model):
    """One policy decision on a protected object: who, through which session or token,
    what, which action, and whether it was allowed. Reads are recorded as well as writes.

    Plain integer columns instead of foreign keys: the row is written on every access,
    must stay cheap, and must outlive the objects it names.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    user_id = models.BigIntegerField(null=True)
    session_id = models.BigIntegerField(null=True)
    api_token_id = models.BigIntegerField(null=True)
    ip_address = models.GenericIPAddressField(null=True)
    object_type = models.CharField(max_length=40)
    object_id = models.BigIntegerField(null=True)
    action = models.CharField(max_length=16)
    allowed = models.BooleanField()

    class Meta:
        indexes = [
            models.Index(fields=["user_id", "-created_at"], name="accessevent_user_time_idx"),
            models.Index(fields=["object_type", "object_id"], name="accessevent_object_idx"),
        ]

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{self.action} {self.object_type}:{self.object_id} {verdict}"


class RuleDecision(models.Model):
    """A policy rule that fired: what it did (or, in monitor mode, would have done), to
    whom, on what, and the input values that decided it. Written only when a rule fires,
    so the common path costs nothing; the rule's impact view reads these."""

    class Outcome(models.TextChoices):
        DENIED = "denied", "Denied"
        STEP_UP = "step_up", "Step-up required"
        WOULD_DENY = "would_deny", "Would have denied (monitor)"
        WOULD_STEP_UP = "would_step_up", "Would have required step-up (monitor)"

    created_at = models.DateTimeField(auto_now_add=True)
    rule_id = models.BigIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    user_id = models.BigIntegerField(null=True)
    session_id = models.BigIntegerField(null=True)
    api_token_id = models.BigIntegerField(null=True)
    ip_address = models.GenericIPAddressField(null=True)
    object_type = models.CharField(max_length=40)
    object_id = models.BigIntegerField(null=True)
    action = models.CharField(max_length=16)
    inputs = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["rule_id", "created_at"], name="ruledecision_rule_time_idx")]

    def __str__(self) -> str:
        return f"rule {self.rule_id}: {self.outcome} {self.action} {self.object_type}:{self.object_id}"


class ChainLink(models.Model):
    """One audit row's place in its table's hash chain (see `audit.chain`).

    Kept beside the audited tables rather than as columns on them: auditlog's LogEntry is
    not ours to alter, and a separate append-only table lets the database refuse every
    UPDATE of the audited rows outright instead of allowing "only the chain columns".
    """

    source = models.CharField(max_length=40)  # the audited model's label, e.g. "audit.accessevent"
    seq = models.BigIntegerField()  # 1, 2, 3… per source: a missing number is a deleted link
    row_id = models.BigIntegerField()
    chain_hash = models.BinaryField(max_length=32)
    sealed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "seq"], name="chainlink_source_seq_uniq")]

    def __str__(self) -> str:
        return f"{self.source} #{self.seq} (row {self.row_id})"


# Alerts and responses live in their own package; Django finds their models through here.
from audit.alerts.models import (  # noqa: E402
    Alert,
    AlertResponse,
    AlertSuppression,
    BlockedAddress,
    DetectorCursor,
    ResponsePolicy,
)

__all__ = [
    "AccessEvent",
    "Alert",
    "AlertResponse",
    "AlertSuppression",
    "BlockedAddress",
    "ChainLink",
    "DetectorCursor",
    "ResponsePolicy",
    "RuleDecision",
    "SecurityEvent",
]
