"""What every webhook channel shares, and the raw store of what the providers delivered.

Each provider's configuration extends SocialChannel (a table of its own, under
`webhooks/providers/<name>/models.py`); the table keeps the name it was created with.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from channels_app.common import hosts
from inbox.models import ChannelKind, Inbox


class Provider(models.TextChoices):
    API = "api", "API (an integration of your own)"
    TELEGRAM = "telegram", "Telegram"
    META = "meta", "Meta (WhatsApp, Messenger, Instagram)"
    TWILIO = "twilio", "Twilio (SMS and voice)"


class VerificationMode(models.TextChoices):
    ENFORCE = "enforce", "Enforce: refuse what fails verification"
    # Only for rolling out a secret rotation step by step: what would have been refused is
    # accepted, marked unverified and raised as a security event.
    MONITOR = "monitor", "Monitor: accept unverified deliveries and record them"


def public_url_validator(value: str) -> None:
    parsed = urlsplit(value)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ValidationError("Use an absolute http(s) URL.")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValidationError("Use a URL without credentials, query or fragment.")


class SocialChannel(models.Model):
    """What every webhook channel shares. Each provider's configuration extends it (a table
    of its own), and the raw inbound events point here."""

    provider = models.CharField(max_length=10, choices=Provider.choices, editable=False)
    inbox = models.OneToOneField(Inbox, on_delete=models.PROTECT, related_name="social_channel")
    enabled = models.BooleanField(default=True)
    verification_mode = models.CharField(
        max_length=8,
        choices=VerificationMode.choices,
        default=VerificationMode.ENFORCE,
        help_text="Monitor only while rotating a secret: unverified deliveries are then accepted.",
    )
    public_base_url = models.URLField(
        blank=True,
        validators=[public_url_validator],
        help_text="This server as the provider reaches it, e.g. https://inbox.example.com (behind a "
        "TLS-terminating proxy: the proxy's address). Twilio signs it; webhooks are registered at it.",
    )
    api_base_url = models.URLField(
        blank=True,
        validators=[public_url_validator],
        help_text="Empty: the provider's public API. Set only for a proxy or a test server.",
    )
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # URLs vetted on save: plain http to loopback only. Those our secrets are sent to must
    # not point into the internal network at all.
    url_fields: tuple[str, ...] = ("public_base_url", "api_base_url")
    secret_url_fields: tuple[str, ...] = ("api_base_url",)

    class Meta:
        ordering = ["inbox__name"]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} → {self.inbox}"

    def allowed_inbox_kinds(self) -> set[str]:
        raise NotImplementedError

    def webhook_path(self) -> str:
        return f"/hooks/{self.provider}/{self.pk}/"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.inbox_id is not None and self.inbox.channel_kind not in self.allowed_inbox_kinds():
            kinds = ", ".join(sorted(ChannelKind(kind).label for kind in self.allowed_inbox_kinds()))
            errors["inbox"] = f"Pick an inbox of kind {kinds}."
        for name in self.url_fields:
            value = getattr(self, name)
            if not value:
                continue
            parsed = urlsplit(value)
            host = parsed.hostname or ""
            try:
                addresses = hosts.resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
            except hosts.HostNotAllowed as exc:
                if name in self.secret_url_fields:
                    errors[name] = str(exc)
                continue
            if parsed.scheme != "https" and not hosts.all_loopback(addresses):
                errors[name] = "Plain http is allowed to loopback only."
        if errors:
            raise ValidationError(errors)


class InboundEvent(models.Model):
    """One verified delivery exactly as it arrived, stored before anything reads it.

    The webhook answers as soon as this row is committed; a task turns it into messages.
    Its key is the provider's own id (message, update, call), so a replayed delivery is
    stored once.
    """

    class Endpoint(models.TextChoices):
        API = "api", "API push"
        META = "meta", "Meta webhook"
        TELEGRAM = "telegram", "Telegram webhook"
        TELEGRAM_POLL = "telegram-poll", "Telegram getUpdates"
        TWILIO_SMS = "twilio-sms", "Twilio SMS"
        TWILIO_SMS_STATUS = "twilio-sms-status", "Twilio SMS status"
        TWILIO_VOICE = "twilio-voice", "Twilio incoming call"
        TWILIO_DIAL = "twilio-dial", "Twilio forwarded call result"
        TWILIO_RECORDING = "twilio-recording", "Twilio voicemail"
        TWILIO_TRANSCRIPTION = "twilio-transcription", "Twilio transcription"
        TWILIO_CALL_STATUS = "twilio-call-status", "Twilio call status"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        # Kept, never processed: a kind of event this version does not handle.
        IGNORED = "ignored", "Ignored (unknown kind)"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(SocialChannel, on_delete=models.PROTECT, related_name="inbound_events")
    endpoint = models.CharField(max_length=24, choices=Endpoint.choices)
    event_key = models.CharField(max_length=200)
    body = models.BinaryField()
    # False only in monitor mode, for a delivery that enforce mode would have refused.
    verified = models.BooleanField(default=True)
    verification_note = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    reason = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Set when the event must wait (its media provider is down, say): not tried before then.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "event_key"], name="inboundevent_unique_per_channel")
        ]
        indexes = [
            models.Index(
                fields=["channel", "id"], condition=Q(status="received"), name="inboundevent_pending_idx"
            ),
            models.Index(fields=["status", "-received_at"], name="inboundevent_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_endpoint_display()} {self.event_key}"
