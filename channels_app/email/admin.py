"""Supervisors configure email channels and see (and retry) quarantined mail here."""

from __future__ import annotations

import functools
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import BinaryField, Count, Q, QuerySet
from django.db.models.functions import Substr
from django.http import HttpRequest

from channels_app.email import services, tasks
from channels_app.email.models import EmailChannel, InboundEmail
from inbox.admin import InboxScopedAdminMixin, ManagedInboxAdminMixin

WRITE_ONLY_HELP = "Stored encrypted and never shown again. Leave empty to keep the current one."
HEADER_PREVIEW_BYTES = 16 * 1024


class EmailChannelForm(forms.ModelForm[EmailChannel]):
    # Write-only: the form never renders a stored secret back into the page.
    imap_password = forms.CharField(
        label="IMAP password",
        required=False,
        strip=False,
        widget=forms.PasswordInput,
        help_text=WRITE_ONLY_HELP,
    )
    smtp_password = forms.CharField(
        label="SMTP password",
        required=False,
        strip=False,
        widget=forms.PasswordInput,
        help_text=WRITE_ONLY_HELP,
    )

    class Meta:
        model = EmailChannel
        fields = [
            "inbox",
            "email_address",
            "enabled",
            "poll_interval_seconds",
            "imap_host",
            "imap_port",
            "imap_security",
            "imap_username",
            "imap_password",
            "imap_folder",
            "after_import",
            "archive_folder",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_username",
            "smtp_password",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("imap_password", "smtp_password"):
            self.initial[name] = ""

    def _secret(self, name: str) -> str:
        value: str = self.cleaned_data.get(name) or ""
        if value:
            return value
        return getattr(self.instance, name, "") if self.instance.pk else ""

    def clean_imap_password(self) -> str:
        value = self._secret("imap_password")
        if not value:
            raise forms.ValidationError("The IMAP password is required.")
        return value

    def clean_smtp_password(self) -> str:
        return self._secret("smtp_password")


@admin.register(EmailChannel)
class EmailChannelAdmin(ManagedInboxAdminMixin, admin.ModelAdmin[EmailChannel]):
    form = EmailChannelForm
    list_display = (
        "email_address",
        "inbox",
        "enabled",
        "imap_host",
        "last_polled_at",
        "quarantined_count",
        "last_error",
    )
    list_filter = ("enabled",)
    list_select_related = ("inbox",)
    search_fields = ("email_address", "inbox__name", "imap_host")
    readonly_fields = (
        "uidvalidity",
        "last_uid",
        "poll_enqueued_at",
        "last_polled_at",
        "last_error",
        "created_at",
    )
    actions = ("poll_now",)
    fieldsets = (
        (None, {"fields": ("inbox", "email_address", "enabled", "poll_interval_seconds")}),
        (
            "Incoming (IMAP)",
            {
                "fields": (
                    "imap_host",
                    "imap_port",
                    "imap_security",
                    "imap_username",
                    "imap_password",
                    "imap_folder",
                    "after_import",
                    "archive_folder",
                )
            },
        ),
        (
            "Replies (SMTP)",
            {"fields": ("smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password")},
        ),
        ("State", {"fields": readonly_fields}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailChannel]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                quarantined=Count(
                    "inbound_emails", filter=Q(inbound_emails__status=InboundEmail.Status.QUARANTINED)
                )
            )
        )

    @admin.display(description="Quarantined", ordering="quarantined")
    def quarantined_count(self, obj: EmailChannel) -> int:
        return int(getattr(obj, "quarantined", 0))

    @admin.action(description="Poll the selected channels now", permissions=["change"])
    def poll_now(self, request: HttpRequest, queryset: QuerySet[EmailChannel]) -> None:
        channel_ids = list(queryset.filter(enabled=True).values_list("pk", flat=True))
        for channel_id in channel_ids:
            transaction.on_commit(functools.partial(tasks.email_poll.delay, channel_id))
        messages.success(request, f"{len(channel_ids)} enabled channel(s) queued for polling.")


@admin.register(InboundEmail)
class InboundEmailAdmin(InboxScopedAdminMixin, admin.ModelAdmin[InboundEmail]):
    """Received mail as stored. Nothing is added or deleted here: only looked at and retried."""

    inbox_path = "channel__inbox"

    list_display = ("received_at", "channel", "from_address", "subject", "status", "short_reason", "size")
    list_filter = ("status", "channel")
    list_select_related = ("channel",)
    search_fields = ("from_address", "subject", "dedup_key")
    date_hierarchy = "received_at"
    actions = ("retry",)
    fields = (
        "channel",
        "status",
        "reason",
        "from_address",
        "subject",
        "message",
        "dedup_key",
        "uidvalidity",
        "uid",
        "size",
        "truncated",
        "attempts",
        "marked_on_server",
        "received_at",
        "processed_at",
        "header_preview",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[InboundEmail]:
        # The list never loads the raw bytes; the detail page reads only the header.
        return super().get_queryset(request).defer("raw")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: InboundEmail | None = None) -> bool:
        return False

    @admin.display(description="Reason")
    def short_reason(self, obj: InboundEmail) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    @admin.display(description="Header")
    def header_preview(self, obj: InboundEmail) -> str:
        # Only the first bytes leave the database, never the whole (possibly large) message.
        head = bytes(
            InboundEmail.objects.filter(pk=obj.pk)
            .values_list(Substr("raw", 1, HEADER_PREVIEW_BYTES, output_field=BinaryField()), flat=True)
            .get()
        )
        for separator in (b"\r\n\r\n", b"\n\n"):
            if separator in head:
                head = head.split(separator, 1)[0]
                break
        return head.decode("utf-8", "replace")

    @admin.action(description="Retry processing the selected quarantined mail", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[InboundEmail]) -> None:
        result = services.inbound_emails_retry(ids=list(queryset.values_list("pk", flat=True)))
        messages.info(request, f"{result.imported} imported, {result.quarantined} still quarantined.")


# The social and phone channels' admin and the live chat widget's live in their own modules;
# importing them registers them.
