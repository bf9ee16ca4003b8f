"""The alerts queue and the response policies in the supervision admin."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import User
from audit.admin import ReadOnlyTrailMixin
from audit.alerts import services
from audit.alerts.models import Alert, AlertResponse, BlockedAddress, ResponsePolicy
from audit.alerts.selectors import alerts_visible
from audit.console import charts, selectors
from inbox import policy
from inbox.admin import administrator_only
from inbox.policy import AccessContext


def _pretty(data: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(data, indent=2, sort_keys=True, default=str))


class AlertResponseInline(admin.TabularInline[AlertResponse, Alert]):
    model = AlertResponse
    extra = 0
    can_delete = False
    fields = ("response", "mode", "taken_at", "detail", "reversed_at", "reversed_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _handle(
    modeladmin: AlertAdmin, request: HttpRequest, alerts: QuerySet[Alert], status: Alert.Status
) -> None:
    ctx = AccessContext.from_request(request)
    done = 0
    for alert in alerts.select_related("user"):
        try:
            services.alert_handle(ctx=ctx, alert=alert, status=status)
            done += 1
        except services.AlertForbidden as refused:
            modeladmin.message_user(request, str(refused), messages.ERROR)
    modeladmin.message_user(request, f"{done} alert(s) marked {status.label.lower()}.")


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin[Alert]):
    """The alerts queue: what was found, its evidence, its baseline and the responses
    already taken. Supervisors see the alerts about the accounts they manage."""

    list_display = (
        "created_at",
        "kind",
        "severity",
        "score",
        "user",
        "ip_address",
        "status",
        "responses_taken",
    )
    list_filter = ("status", "kind", "severity")
    search_fields = ("user__username", "ip_address", "summary")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    inlines = [AlertResponseInline]
    fields = (
        "created_at",
        "kind",
        "severity",
        "score",
        "user",
        "ip_address",
        "summary",
        "evidence_shown",
        "baseline_shown",
        "status",
        "handled_by",
        "handled_at",
        "note",
    )
    readonly_fields = fields
    actions = ["acknowledge", "resolve", "mark_false_positive", "reverse_responses"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        alerts = alerts_visible(AccessContext.from_request(request))
        return alerts.select_related("user").prefetch_related("responses")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The record itself is never edited; it changes only through the actions below.
        return False

    def has_handle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("audit.change_alert")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("console/", self.admin_site.admin_view(self.console_view), name="audit_console"),
            path(
                "timeline/<int:user_id>/",
                self.admin_site.admin_view(self.timeline_view),
                name="audit_timeline",
            ),
            path(
                "contact/<int:contact_id>/accesses/",
                self.admin_site.admin_view(self.contact_accesses_view),
                name="audit_contact_accesses",
            ),
        ]
        return own + super().get_urls()

    def console_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise Http404
        found = selectors.console_charts(AccessContext.from_request(request))
        day = "%d %b"
        context = {
            **self.admin_site.each_context(request),
            "title": "Security console",
            "heatmap": charts.heatmap(found.sign_ins_by_weekday_hour, title="Sign-ins per weekday and hour"),
            "alerts_chart": charts.bars(
                [(d.strftime(day), n) for d, n in found.alerts_per_day], title="Alerts per day"
            ),
            "denied_chart": charts.bars(
                [(d.strftime(day), n) for d, n in found.denied_per_day], title="Denied accesses per day"
            ),
            "readers_chart": charts.bars(found.top_readers, title="Top readers, last 24 hours"),
            "top_readers": found.top_readers,
            "open_alerts": self.get_queryset(request).filter(status=Alert.Status.OPEN)[:20],
            "days": selectors.CHART_DAYS,
        }
        return TemplateResponse(request, "admin/audit/console.html", context)

    def timeline_view(self, request: HttpRequest, user_id: int) -> HttpResponse:
        ctx = AccessContext.from_request(request)
        subject = User.objects.filter(pk=user_id).first()
        # An account outside the delegation looks like no account at all.
        if subject is None or not self.has_view_permission(request) or not policy.can_manage(ctx, subject):
            raise Http404
        context = {
            **self.admin_site.each_context(request),
            "title": f"Timeline of {subject.get_username()}",
            "subject": subject,
            "entries": selectors.agent_timeline(ctx, subject),
        }
        return TemplateResponse(request, "admin/audit/timeline.html", context)

    def contact_accesses_view(self, request: HttpRequest, contact_id: int) -> HttpResponse:
        """Who accessed this contact, as far as the viewer's segment reaches."""
        if not self.has_view_permission(request):
            raise Http404
        ctx = AccessContext.from_request(request)
        # Through the loader: a contact outside the delegation is a 404, and the look is recorded.
        contact = policy.access_contact(ctx, contact_id)
        events = selectors.contact_access_history(ctx, contact)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Who accessed {contact}",
            "contact": contact,
            "page": Paginator(events, selectors.CONTACT_ACCESS_PAGE).get_page(request.GET.get("page")),
        }
        return TemplateResponse(request, "admin/audit/contact_accesses.html", context)

    @admin.display(description="user", ordering="user__username")
    def user_timeline(self, obj: Alert) -> str:
        if obj.user is None:
            return "—"
        url = reverse("admin:audit_timeline", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user.get_username())

    @admin.display(description="evidence")
    def evidence_shown(self, obj: Alert) -> str:
        return _pretty(obj.evidence)

    @admin.display(description="compared with")
    def baseline_shown(self, obj: Alert) -> str:
        return _pretty(obj.baseline)

    @admin.display(description="responses")
    def responses_taken(self, obj: Alert) -> str:
        return ", ".join(
            f"{taken.response}{'' if taken.mode == 'enforce' else ' (monitor)'}"
            f"{' reversed' if taken.reversed_at else ''}"
            for taken in obj.responses.all()
        )

    @admin.action(description="Acknowledge", permissions=["handle"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        _handle(self, request, queryset, Alert.Status.ACKNOWLEDGED)

    @admin.action(description="Resolve", permissions=["handle"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        _handle(self, request, queryset, Alert.Status.RESOLVED)

    @admin.action(description="False positive (silence this pattern for the user)", permissions=["handle"])
    def mark_false_positive(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        _handle(self, request, queryset, Alert.Status.FALSE_POSITIVE)

    @admin.action(description="Reverse the responses taken", permissions=["handle"])
    def reverse_responses(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        ctx = AccessContext.from_request(request)
        reversed_count = 0
        for alert in queryset.select_related("user"):
            try:
                reversed_count += services.responses_reverse_all(ctx=ctx, alert=alert)
            except services.AlertForbidden as refused:
                self.message_user(request, str(refused), messages.ERROR)
        self.message_user(request, f"{reversed_count} response(s) reversed.")


@admin.register(ResponsePolicy)
class ResponsePolicyAdmin(admin.ModelAdmin[ResponsePolicy]):
    """What each kind of alert sets off, each response off, in monitor mode or enforced.
    Supervisors read these; administrators change them (every change is in the audit log)."""

    list_display = ("kind", "min_severity", "response", "mode")
    list_filter = ("kind", "response", "mode")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request) and super().has_delete_permission(request, obj)


@admin.register(BlockedAddress)
class BlockedAddressAdmin(ReadOnlyTrailMixin, admin.ModelAdmin[BlockedAddress]):
    """Every address block, on or lifted. A block is made by an alert's response and lifted
    by reversing that response (here or on the alert): one path, audited either way."""

    list_display = ("network", "reason", "created_at", "until", "state", "lifted_at", "lifted_by", "alert")
    list_filter = ("lifted_at",)
    search_fields = ("network", "ip_address", "reason")
    list_select_related = ("alert", "lifted_by")
    readonly_fields = (
        "ip_address",
        "network",
        "reason",
        "created_at",
        "created_by",
        "until",
        "lifted_at",
        "lifted_by",
        "alert",
        "response",
    )
    fields = readonly_fields
    actions = ["lift"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An address is nobody's account: its alerts and blocks are for administrators.
        return administrator_only(request) and super().has_view_permission(request, obj)

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request)

    @admin.display(description="state")
    def state(self, obj: BlockedAddress) -> str:
        if obj.lifted_at is not None:
            return "lifted"
        return "on" if obj.until > timezone.now() else "lapsed"

    @admin.action(description="Lift (reverse the alert's block)", permissions=["lift"])
    def lift(self, request: HttpRequest, queryset: QuerySet[BlockedAddress]) -> None:
        ctx = AccessContext.from_request(request)
        lifted = 0
        for block in queryset.filter(lifted_at=None).select_related("response__alert__user"):
            try:
                services.response_reverse(ctx=ctx, taken=block.response)
                lifted += 1
            except services.AlertForbidden as refused:
                self.message_user(request, str(refused), messages.ERROR)
        self.message_user(request, f"{lifted} block(s) lifted.")
