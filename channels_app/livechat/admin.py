"""Supervisors configure the chat widget here and copy its embed snippet."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.templatetags.static import static

from channels_app.livechat import services as livechat
from channels_app.livechat.models import LiveChatChannel
from inbox.admin import ManagedInboxAdminMixin

SHOWN_ONCE_MESSAGE = (
    "Identity secret for {channel} (shown once; give it to your website's server, nowhere else): {secret}"
)


class LiveChatChannelForm(forms.ModelForm[LiveChatChannel]):
    class Meta:
        model = LiveChatChannel
        fields = [
            "inbox",
            "enabled",
            "allowed_origins",
            "identity_required",
            "prechat_name",
            "prechat_email",
            "welcome_text",
            "offline_form",
            "offline_text",
        ]
        widgets = {"allowed_origins": forms.Textarea(attrs={"rows": 3, "cols": 60})}


def embed_snippet(request: HttpRequest, channel: LiveChatChannel) -> str:
    script = request.build_absolute_uri(static("widget/portcullis-widget.js"))
    return f'<script src="{script}" data-portcullis-key="{channel.key}" defer></script>'


@admin.register(LiveChatChannel)
class LiveChatChannelAdmin(ManagedInboxAdminMixin, admin.ModelAdmin[LiveChatChannel]):
    form = LiveChatChannelForm
    change_form_template = "admin/channels_app/livechatchannel/change_form.html"
    list_display = ("inbox", "enabled", "origin_list", "identity_required", "key")
    list_filter = ("enabled", "identity_required")
    list_select_related = ("inbox",)
    search_fields = ("inbox__name", "key", "allowed_origins")
    readonly_fields = ("key", "created_at")
    actions = ("issue_identity_secret",)
    fieldsets = (
        (None, {"fields": ("inbox", "enabled", "key", "allowed_origins")}),
        ("Who may chat", {"fields": ("identity_required",)}),
        ("What visitors see", {"fields": ("welcome_text", "prechat_name", "prechat_email")}),
        ("When nobody is online", {"fields": ("offline_form", "offline_text")}),
        ("Record", {"fields": ("created_at",)}),
    )

    @admin.display(description="Allowed origins")
    def origin_list(self, obj: LiveChatChannel) -> str:
        return ", ".join(sorted(obj.origins))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        channel = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if channel is not None:
            context["embed_snippet"] = embed_snippet(request, channel)
        return super().change_view(request, object_id, form_url, extra_context=context)

    def save_model(self, request: HttpRequest, obj: LiveChatChannel, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(request, SHOWN_ONCE_MESSAGE.format(channel=obj, secret=obj.identity_secret))

    @admin.action(
        description="Issue a new identity secret (the old one stops working)", permissions=["change"]
    )
    def issue_identity_secret(self, request: HttpRequest, queryset: QuerySet[LiveChatChannel]) -> None:
        for channel in queryset:
            secret = livechat.identity_secret_rotate(channel=channel)
            messages.warning(request, SHOWN_ONCE_MESSAGE.format(channel=channel, secret=secret))
