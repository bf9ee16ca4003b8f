"""Supervisors configure the webhook channels and look at (and retry) what they received.
Secrets are write-only; a channel in monitor mode is flagged wherever it shows. Each
provider's channel admin extends SocialChannelAdmin in the provider's package."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from channels_app.webhooks import services
from channels_app.webhooks.models import InboundEvent, SocialChannel, VerificationMode
from channels_app.webhooks.registry import PROVIDERS
from inbox.admin import InboxScopedAdminMixin, ManagedInboxAdminMixin

MONITOR_WARNING = (
    "Monitor mode: deliveries that fail verification are accepted (and recorded as security events). "
    "Switch back to enforce once the secret rotation is done."
)
BODY_PREVIEW_BYTES = 16 * 1024


class SocialChannelAdmin(ManagedInboxAdminMixin, admin.ModelAdmin[Any]):
    list_display = ["__str__", "inbox", "enabled", "verification", "last_error"]
    list_filter = ["enabled", "verification_mode"]
    readonly_fields = ["webhook_url", "last_error"]
    list_select_related = ("inbox",)
    search_fields = ("inbox__name",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="Verification", ordering="verification_mode")
    def verification(self, obj: SocialChannel) -> str:
        if obj.verification_mode == VerificationMode.MONITOR:
            return format_html(
                '<strong class="errornote">⚠ {}</strong>', "Monitor: unverified deliveries accepted"
            )
        return "Enforce"

    @admin.display(description="Webhook URL (give it to the provider)")
    def webhook_url(self, obj: SocialChannel) -> str:
        if obj.pk is None:
            return "Shown once saved."
        base = obj.public_base_url.rstrip("/") or "https://<public address>"
        return base + obj.webhook_path()

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: SocialChannel | None = None,
    ) -> HttpResponse:
        # The object the view already loaded: no second query for the warning.
        if obj is not None and obj.verification_mode == VerificationMode.MONITOR and request.method == "GET":
            messages.warning(request, MONITOR_WARNING)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if (
            request.method == "GET"
            and self.get_queryset(request).filter(verification_mode=VerificationMode.MONITOR).exists()
        ):
            messages.warning(request, "Some channels are in monitor mode: " + MONITOR_WARNING)
        return super().changelist_view(request, extra_context)


@admin.register(InboundEvent)
class InboundEventAdmin(InboxScopedAdminMixin, admin.ModelAdmin[InboundEvent]):
    """Deliveries as stored. Nothing is added or deleted here: only looked at and retried."""

    list_display = [
        "received_at",
        "channel",
        "endpoint",
        "event_key",
        "status",
        "verified",
        "short_reason",
        "attempts",
    ]
    list_filter = ["status", "verified", "endpoint"]
    list_select_related = ("channel", "channel__inbox")
    inbox_path = "channel__inbox"
    search_fields = ("event_key",)
    date_hierarchy = "received_at"
    actions = ("retry",)
    fields = (
        "channel",
        "endpoint",
        "event_key",
        "status",
        "reason",
        "verified",
        "verification_note",
        "attempts",
        "received_at",
        "processed_at",
        "body_preview",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[InboundEvent]:
        return super().get_queryset(request).defer("body")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: InboundEvent | None = None) -> bool:
        return False

    @admin.display(description="Reason")
    def short_reason(self, obj: InboundEvent) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    @admin.display(description="Body")
    def body_preview(self, obj: InboundEvent) -> str:
        return bytes(obj.body[:BODY_PREVIEW_BYTES]).decode("utf-8", "replace")

    @admin.action(description="Process the selected failed events again", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        count = services.inbound_events_retry(ids=list(queryset.values_list("pk", flat=True)))
        messages.info(request, f"{count} failed event(s) queued again.")


# Each provider's package holds its own admin; importing it registers it.
for _provider in PROVIDERS.values():
    import_module(_provider.__module__.rpartition(".")[0] + ".admin")
