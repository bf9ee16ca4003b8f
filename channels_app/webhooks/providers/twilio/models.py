"""A Twilio number (SMS and voice) and the calls it received."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from channels_app.common.crypto import EncryptedTextField
from channels_app.webhooks.models import Provider, SocialChannel
from inbox.models import ChannelKind, Message


class TwilioChannel(SocialChannel):
    account_sid = models.CharField(
        max_length=34,
        validators=[RegexValidator(r"^AC[0-9a-fA-F]{32}$", "An account SID is AC + 32 hex digits.")],
    )
    auth_token = EncryptedTextField(help_text="Signs every request (X-Twilio-Signature).")
    phone_number = models.CharField(
        max_length=16, validators=[RegexValidator(r"^\+[1-9][0-9]{6,14}$", "E.164, e.g. +14155550100.")]
    )
    forward_to = models.CharField(
        max_length=16,
        blank=True,
        validators=[RegexValidator(r"^\+[1-9][0-9]{6,14}$", "E.164, e.g. +14155550100.")],
        help_text="Calls ring this number first; empty: straight to voicemail.",
    )
    voicemail_greeting = models.CharField(
        max_length=300, default="Sorry, nobody can take your call. Please leave a message after the tone."
    )
    voicemail_max_seconds = models.PositiveSmallIntegerField(
        default=120, validators=[MinValueValidator(5), MaxValueValidator(600)]
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["phone_number"], name="twiliochannel_unique_number")]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = Provider.TWILIO
        super().save(*args, **kwargs)

    def allowed_inbox_kinds(self) -> set[str]:
        return {ChannelKind.SMS, ChannelKind.VOICE}

    def clean(self) -> None:
        super().clean()
        if not self.public_base_url:
            raise ValidationError({"public_base_url": "Twilio signs the public URL: it is required."})


class CallRecord(models.Model):
    """A phone call as the conversation shows it: who, how long, answered or missed, and the
    voicemail. Twilio reports a call in several requests; each fills in what it knows."""

    channel = models.ForeignKey(TwilioChannel, on_delete=models.PROTECT, related_name="calls")
    call_sid = models.CharField(max_length=64)
    caller = models.CharField(max_length=32)
    call_status = models.CharField(max_length=16, blank=True)
    # None while ringing; True once a person picked up a forwarded call.
    answered = models.BooleanField(null=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    recording_url = models.URLField(max_length=500, blank=True)
    recording_seconds = models.PositiveIntegerField(null=True, blank=True)
    transcription = models.TextField(blank=True)
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="call"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "call_sid"], name="callrecord_unique_per_channel")
        ]

    def __str__(self) -> str:
        return f"Call {self.call_sid} from {self.caller}"
