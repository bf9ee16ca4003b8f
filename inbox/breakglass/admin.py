"""Supervisors decide the break-glass requests for conversations they manage, and review
the use of the access granted. A request is evidence: nobody edits or deletes it."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from inbox import policy
from inbox.breakglass import selectors, services
from inbox.breakglass.models import BreakGlassRequest
from inbox.policy import AccessContext
from inbox.services import InvalidRequest


@admin.register(BreakGlassRequest)
class BreakGlassRequestAdmin(admin.ModelAdmin[BreakGlassRequest]):
    list_display = (
        "pk",
        "created_at",
        "requester",
        "conversation_ref",
        "minutes",
        "emergency",
        "status",
        "decided_by",
        "expires_at",
        "reviewed_at",
    )
    list_filter = ("status", "emergency")
    list_select_related = ("requester", "decided_by")
    readonly_fields = [field.name for field in BreakGlassRequest._meta.fields]
    actions = ["approve", "reject", "mark_reviewed"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BreakGlassRequest]:
        return selectors.requests_decidable(AccessContext.from_request(request)).select_related(
            "requester", "decided_by"
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: BreakGlassRequest | None = None) -> bool:
        return False

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[BreakGlassRequest],
        act: Callable[[AccessContext, BreakGlassRequest], None],
        done: str,
    ) -> None:
        ctx = AccessContext.from_request(request)
        for item in queryset:
            try:
                act(ctx, item)
            except (policy.Denied, InvalidRequest) as error:
                messages.error(request, f"Request {item.pk}: {error}")
            else:
                messages.success(request, f"Request {item.pk}: {done}.")

    @admin.action(description="Approve the selected requests", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[BreakGlassRequest]) -> None:
        self._each(
            request,
            queryset,
            lambda ctx, item: services.breakglass_approve(ctx=ctx, request=item),
            "approved",
        )

    @admin.action(description="Reject the selected requests", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[BreakGlassRequest]) -> None:
        self._each(
            request, queryset, lambda ctx, item: services.breakglass_reject(ctx=ctx, request=item), "rejected"
        )

    @admin.action(description="Mark the selected requests' use as reviewed", permissions=["change"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[BreakGlassRequest]) -> None:
        self._each(
            request, queryset, lambda ctx, item: services.breakglass_review(ctx=ctx, request=item), "reviewed"
        )
