"""Supervisors configure Twilio numbers here and look at the calls they received."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from channels_app.common.admin import SecretsForm, https_urls
from channels_app.webhooks.admin import SocialChannelAdmin
from channels_app.webhooks.providers.twilio import client
from channels_app.webhooks.providers.twilio.models import CallRecord, TwilioChannel
from channels_app.webhooks.providers.twilio.provider import Twilio
from inbox.admin import InboxScopedAdminMixin


class TwilioChannelForm(SecretsForm):
    secret_fields = Twilio.secret_fields

    class Meta:
        model = TwilioChannel
        formfield_callback = https_urls
        fields = [
            "inbox",
            "enabled",
            "verification_mode",
            "account_sid",
            "auth_token",
            "phone_number",
            "forward_to",
            "voicemail_greeting",
            "voicemail_max_seconds",
            "public_base_url",
            "api_base_url",
        ]


@admin.register(TwilioChannel)
class TwilioChannelAdmin(SocialChannelAdmin):
    form = TwilioChannelForm
    list_display = ["__str__", "inbox", "phone_number", "enabled", "verification", "last_error"]
    readonly_fields = ["sms_url", "voice_url", "call_status_url", "last_error"]

    @admin.display(description="Messaging webhook (A message comes in)")
    def sms_url(self, obj: TwilioChannel) -> str:
        return client.hook_url(obj, "sms") if obj.pk else "Shown once saved."

    @admin.display(description="Voice webhook (A call comes in)")
    def voice_url(self, obj: TwilioChannel) -> str:
        return client.hook_url(obj, "voice") if obj.pk else "Shown once saved."

    @admin.display(description="Call status changes")
    def call_status_url(self, obj: TwilioChannel) -> str:
        return client.hook_url(obj, "call-status") if obj.pk else "Shown once saved."


@admin.register(CallRecord)
class CallRecordAdmin(InboxScopedAdminMixin, admin.ModelAdmin[CallRecord]):
    list_display = ["created_at", "channel", "caller", "call_status", "answered", "duration_seconds"]
    list_filter = ["answered", "call_status"]
    list_select_related = ("channel", "channel__inbox")
    inbox_path = "channel__inbox"
    search_fields = ("caller", "call_sid")
    fields = (
        "channel",
        "call_sid",
        "caller",
        "call_status",
        "answered",
        "duration_seconds",
        "recording_url",
        "recording_seconds",
        "transcription",
        "message",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CallRecord | None = None) -> bool:
        return False
