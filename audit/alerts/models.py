from __future__ import annotations

from django.conf import settings
from django.db import models

from inbox.models import PolicyRule

# The rules' vocabulary: a response is staged off → monitor → enforce like a policy rule.
ResponseMode = PolicyRule.Mode


class AlertKind(models.TextChoices):
    BULK_READS = "bulk_reads", "Bulk reads"
    DENIED_BURST = "denied_burst", "Burst of refused accesses (probing)"
    TOKEN_READ_VOLUME = "token_read_volume", "API token read volume"
    UNUSUAL_SIGN_IN_HOUR = "unusual_sign_in_hour", "Sign-in at an unusual hour"
    NETWORK_CHANGE = "network_change", "Sign-in from a new network"
    IMPOSSIBLE_TRAVEL = "impossible_travel", "Impossible travel between sign-ins"
    NEW_DEVICE = "new_device", "New device"
    OTP_GUESSING = "otp_guessing", "Second-factor guessing"
    PASSWORD_SPRAYING = "password_spraying", "Password spraying from one address"
    SEARCH_BURST = "search_burst", "Burst of searches"
    EXPORT_VOLUME = "export_volume", "Export volume"
    SOCKET_NEW_INBOXES = "socket_new_inboxes", "Socket subscribed beyond its usual inboxes"


class AlertSeverity(models.IntegerChoices):
    # Entra ID Protection's levels; integers so "this severity or higher" is a comparison.
    LOW = 1, "Low"
    MEDIUM = 2, "Medium"
    HIGH = 3, "High"


class ResponseKind(models.TextChoices):
    NOTIFY = "notify", "Notify supervisors (live and by email)"
    STEP_UP = "step_up", "Require a fresh second factor on the next request"
    END_SESSIONS = "end_sessions", "End the user's sessions (sockets close)"
    LOCK_ACCOUNT = "lock_account", "Lock the account"
    BLOCK_ADDRESS = "block_address", "Block the address"
    FREEZE_EXPORTS = "freeze_exports", "Freeze the user's exports"


class Alert(models.Model):
    """Something a detector found unusual, with what it saw (evidence) and what it compared
    that with (baseline), so a supervisor can judge it without re-running the detector."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"
        FALSE_POSITIVE = "false_positive", "False positive"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    severity = models.PositiveSmallIntegerField(choices=AlertSeverity.choices)
    score = models.PositiveSmallIntegerField(help_text="0 to 100: how far past the baseline.")
    # None for alerts about an address rather than an account (password spraying).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    # What "the same thing again" means for this kind (a network, an hour, an address):
    # what a false positive suppresses and what deduplication compares.
    pattern = models.CharField(max_length=100)
    summary = models.CharField(max_length=300)
    evidence = models.JSONField(default=dict)
    baseline = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    handled_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "kind", "-created_at"], name="alert_user_kind_time_idx"),
            models.Index(fields=["status", "-created_at"], name="alert_status_time_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()} ({self.get_severity_display()})"


class ResponsePolicy(models.Model):
    """What to do about alerts of one kind from a severity up. Administrators edit these."""

    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    min_severity = models.PositiveSmallIntegerField(
        choices=AlertSeverity.choices, default=AlertSeverity.MEDIUM, help_text="This severity or higher."
    )
    response = models.CharField(max_length=16, choices=ResponseKind.choices)
    mode = models.CharField(max_length=10, choices=ResponseMode.choices, default=ResponseMode.MONITOR)

    class Meta:
        ordering = ["kind", "response"]
        verbose_name_plural = "response policies"
        constraints = [
            models.UniqueConstraint(fields=["kind", "response"], name="responsepolicy_kind_response_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ≥ {self.get_min_severity_display()}: {self.response} ({self.mode})"


class AlertResponse(models.Model):
    """A response to one alert: taken (enforce) or only recorded (monitor), and reversed."""

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="responses")
    response = models.CharField(max_length=16, choices=ResponseKind.choices)
    mode = models.CharField(max_length=10, choices=ResponseMode.choices)
    taken_at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict)
    reversed_at = models.DateTimeField(null=True, blank=True)
    reversed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["taken_at"]

    def __str__(self) -> str:
        return f"{self.response} ({self.mode}) for alert {self.alert_id}"

    @property
    def is_active(self) -> bool:
        return self.mode == ResponseMode.ENFORCE and self.reversed_at is None


class AlertSuppression(models.Model):
    """A false positive: the same pattern for the same user raises nothing until `until`."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    pattern = models.CharField(max_length=100)
    until = models.DateTimeField()
    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["user", "kind", "pattern"], name="alertsuppression_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.pattern} until {self.until:%Y-%m-%d %H:%M}"


class BlockedAddress(models.Model):
    """An address or network refused on every request (password spraying) until it lapses
    or is lifted. The rows are the truth; the request gate reads a cache entry rebuilt from
    them (audit.alerts.blocks), so losing the cache lifts nothing."""

    ip_address = models.GenericIPAddressField(help_text="The address the alert was about.")
    network = models.CharField(
        max_length=49, help_text="What is refused: the address as /32 or /128, or a network."
    )
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    # None: taken automatically, as the alert's response policy said.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    until = models.DateTimeField(db_index=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="blocks")
    response = models.OneToOneField(AlertResponse, on_delete=models.PROTECT, related_name="block")

    class Meta:
        verbose_name_plural = "blocked addresses"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.network


class DetectorCursor(models.Model):
    """How far a background detector has read its event table (the last id it judged)."""

    name = models.CharField(max_length=40, unique=True)
    last_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_id}"
