"""The agent workspace: the inbox list and one conversation with its actions.

Views parse the request, make one call into the policy, a selector or a service, and
render. Every conversation is loaded through `policy.access_conversation`, so a
conversation outside the caller's segment is a 404, exactly like a missing one.

Each URL answers the workspace's in-place (htmx) requests with its pane alone and any
other request with the whole page, so links, reloads and the back button work as pages.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms as django_forms
from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event
from django_htmx.middleware import HtmxDetails

from inbox import forms, list_pane, policy, selectors, services
from inbox.models import Conversation
from inbox.policy import AccessContext


class HtmxHttpRequest(HttpRequest):
    """A request as the views see it: HtmxMiddleware has set `htmx`."""

    htmx: HtmxDetails


# Shown in the page (image previews) rather than downloaded: raster images only. SVG can
# carry script, and everything else is offered as a download.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

# The workspace's list pane listens for this event to fetch itself again after an action.
LIST_CHANGED_EVENT = "inbox:list-changed"


def _query_suffix(query: QueryDict) -> str:
    """The query string to append to another URL: empty when there is none."""
    encoded = query.urlencode()
    return f"?{encoded}" if encoded else ""


def _with_query(query: QueryDict, **changes: str | None) -> str:
    """The query string with some parameters replaced (None drops one)."""
    updated = query.copy()
    for key, value in changes.items():
        if value is None:
            updated.pop(key, None)
        else:
            updated[key] = value
    encoded = updated.urlencode()
    return f"?{encoded}" if encoded else "?"


# --- The inbox list ---------------------------------------------------------------------


def _pii_masked(ctx: AccessContext) -> bool:
    """Whether this page masks personal data (the `pii_*` template filters): one policy
    decision per request, asked by the view, never by each row."""
    return not policy.pii_visible(ctx)


def _in_place(request: HtmxHttpRequest) -> bool:
    """Whether the workspace asked for one pane (else the answer is the whole page). A
    history restore (the back button after the cache missed) wants the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


@never_cache
@require_GET
def inbox_view(request: HtmxHttpRequest) -> HttpResponse:
    ctx = AccessContext.from_request(request)
    form = forms.ConversationFilterForm(request.GET, ctx=ctx)
    template = "inbox/_list_pane.html" if _in_place(request) else "inbox/list.html"
    query = request.GET
    context: dict[str, Any] = {
        "form": form,
        "rows": None,
        "list_query": _query_suffix(query),
        "pii_masked": _pii_masked(ctx),
    }
    if not form.is_valid():
        return render(request, template, context, status=400)
    filters = form.filters()
    scope = selectors.list_scope(ctx=ctx, filters=filters)
    try:
        rows, next_cursor = selectors.conversation_list_rows(
            ctx=ctx, filters=filters, cursor=form.cleaned_data["cursor"] or None, scope=scope
        )
    except selectors.InvalidFilter as error:
        form.add_error("cursor", str(error))
        return render(request, template, context, status=400)
    # The counters count per inbox under the filters without their inbox; with no inbox
    # filter that is the scope settled above.
    list_counters = selectors.list_counters(
        ctx=ctx, filters=filters, scope=None if filters.inbox_id else scope
    )
    counters = list_counters.counts
    form.show_unread(list_counters.unread_by_inbox)
    context.update(
        rows=rows,
        rows_html=list_pane.rows_html(rows, masked=context["pii_masked"], list_query=context["list_query"]),
        scope=filters.scope,
        unread=counters[f"{filters.scope}_unread"],
        tabs=[
            {
                "scope": scope,
                "label": label,
                "count": counters[scope],
                "unread": counters[f"{scope}_unread"],
                "url": _with_query(query, scope=scope, cursor=None),
            }
            for scope, label in forms.SCOPE_CHOICES
        ],
        bulk_actions=forms.BulkForm.ACTIONS,
        bulk_statuses=forms.BULK_STATUS_CHOICES,
        bulk_priorities=forms.BULK_PRIORITY_CHOICES,
        bulk_labels=selectors.labels(),
        older_url=_with_query(query, cursor=next_cursor) if next_cursor else None,
        newest_url=_with_query(query, cursor=None) if form.cleaned_data["cursor"] else None,
        filtered=filters != selectors.ConversationFilters(scope=filters.scope),
    )
    return render(request, template, context)


def _bulk_action(ctx: AccessContext, data: dict[str, Any]) -> Callable[[Conversation], object]:
    """What the bulk form asks of each conversation: one call into that action's service."""
    action = data["action"]
    if action in ("assign_me", "unassign"):
        assignee_id = ctx.user.pk if action == "assign_me" else None
        return lambda c: services.conversation_assign(ctx=ctx, conversation=c, assignee_id=assignee_id)
    if action == "status":
        return lambda c: services.conversation_status_set(ctx=ctx, conversation=c, status=data["status"])
    if action == "priority":
        priority = data["priority"]
        return lambda c: services.conversation_priority_set(ctx=ctx, conversation=c, priority=priority)
    label_id = data["label"].pk
    return lambda c: services.conversation_labels_set(
        ctx=ctx, conversation=c, label_ids=sorted({*c.labels.values_list("pk", flat=True), label_id})
    )


@require_POST
def bulk_view(request: HtmxHttpRequest) -> HttpResponse:
    """Assign, status or label on the ticked rows, each decided by the policy; the answer
    says what was done and what was refused, and why."""
    ctx = AccessContext.from_request(request)
    form = forms.BulkForm(request.POST)
    if not form.is_valid():
        result = None
    else:
        result = services.conversations_bulk(
            ctx=ctx,
            conversation_ids=form.cleaned_data["conversation"],
            act=_bulk_action(ctx, form.cleaned_data),
        )
    context = {"bulk_form": form, "result": result}
    template = "inbox/_bulk_result.html" if request.htmx else "inbox/bulk_result.html"
    response = render(request, template, context, status=200 if result else 400)
    if request.htmx and result and result.done:
        return trigger_client_event(response, LIST_CHANGED_EVENT)
    return response


# --- One conversation -------------------------------------------------------------------


# The page's template variable for each action form, so a refused one is shown as submitted.
_FORM_NAMES: dict[type[django_forms.Form], str] = {
    forms.ReplyForm: "reply_form",
    forms.NoteForm: "note_form",
    forms.AssignForm: "assign_form",
    forms.StatusForm: "status_form",
    forms.PriorityForm: "priority_form",
    forms.LabelsForm: "labels_form",
}


def _money(cents: int) -> str:
    return f"{Decimal(cents).scaleb(-2):,.2f}"


def _conversation_page(
    request: HtmxHttpRequest,
    ctx: AccessContext,
    conversation: Conversation,
    *,
    bound: django_forms.Form | None = None,
    error: str = "",
    confirmation: str = "",
    refusal: services.OutboundRefused | None = None,
    status: int = 200,
) -> HttpResponse:
    """The conversation (its pane alone for the workspace's in-place requests); after a
    refused action, with that action's form as submitted. Showing it marks it read."""
    services.conversation_seen(ctx=ctx, conversation=conversation)
    page_forms: dict[str, django_forms.Form] = {
        "reply_form": forms.ReplyForm(),
        "note_form": forms.NoteForm(),
        "assign_form": forms.AssignForm(),
        "status_form": forms.StatusForm(
            initial={"status": conversation.status, "snoozed_until": conversation.snoozed_until}
        ),
        "priority_form": forms.PriorityForm(initial={"priority": conversation.priority}),
        "labels_form": forms.LabelsForm(initial={"labels": list(conversation.labels.all())}),
    }
    if bound is not None:
        page_forms[_FORM_NAMES[type(bound)]] = bound
    invoices = selectors.contact_invoices(ctx=ctx, contact_id=conversation.contact_id)
    context = {
        "conversation": conversation,
        "contact": conversation.contact,
        "identities": conversation.contact.identities.all(),
        "other_conversations": selectors.contact_other_conversations(ctx=ctx, conversation=conversation),
        "inline_image_types": INLINE_IMAGE_TYPES,
        "thread": selectors.conversation_thread(conversation=conversation),
        "canned_responses": selectors.canned_responses(conversation=conversation),
        "agents": selectors.assignee_choices(inbox=conversation.inbox),
        "snooze_presets": forms.snooze_presets(),
        "invoices": None
        if invoices is None
        else [{"invoice": invoice, "amount": _money(invoice.amount_cents)} for invoice in invoices],
        "error": error,
        "confirmation": confirmation,
        "dlp_refusal": refusal,
        "pii_masked": _pii_masked(ctx),
        # The list beside the conversation keeps the query it was opened from.
        "list_query": _query_suffix(request.GET),
        **page_forms,
    }
    template = "inbox/_conversation_pane.html" if _in_place(request) else "inbox/conversation.html"
    return render(request, template, context, status=status)


@never_cache
@require_GET
def conversation_view(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    ctx = AccessContext.from_request(request)
    conversation = policy.access_conversation(ctx, conversation_id)
    return _conversation_page(request, ctx, conversation)


# An action takes the access context, the conversation and the form's cleaned data, calls
# one service, and returns the confirmation shown after the redirect.
ConversationAction = Callable[[AccessContext, Conversation, dict[str, Any]], str]


def _conversation_action(
    request: HtmxHttpRequest,
    conversation_id: int,
    form_class: type[django_forms.Form],
    action: ConversationAction,
) -> HttpResponse:
    """POST, then redirect back (PRG), or in the workspace the fresh pane, with the list
    told to refresh. Refusals keep the agent on the conversation with the reason."""
    ctx = AccessContext.from_request(request)
    conversation = policy.access_conversation(ctx, conversation_id)
    form = form_class(request.POST)
    if not form.is_valid():
        return _conversation_page(request, ctx, conversation, bound=form, status=400)
    try:
        confirmation = action(ctx, conversation, form.cleaned_data)
    except services.OutboundRefused as refused:
        return _conversation_page(
            request, ctx, conversation, bound=form, error=str(refused), refusal=refused, status=400
        )
    except services.InvalidRequest as error:
        return _conversation_page(request, ctx, conversation, bound=form, error=str(error), status=400)
    except policy.StepUpRequired:
        raise  # the step-up gate asks for the code, then sends this very post again
    except policy.Denied as error:
        if request.htmx:
            return _conversation_page(request, ctx, conversation, bound=form, error=str(error), status=403)
        back_url = reverse("inbox:conversation", kwargs={"conversation_id": conversation.pk})
        return render(request, "inbox/denied.html", {"message": str(error), "back_url": back_url}, status=403)
    if request.htmx:
        pane = _conversation_page(request, ctx, conversation, confirmation=confirmation)
        return trigger_client_event(pane, LIST_CHANGED_EVENT)
    messages.success(request, confirmation)
    return redirect("inbox:conversation", conversation_id=conversation.pk)


def _reply(ctx: AccessContext, conversation: Conversation, data: dict[str, Any]) -> str:
    services.conversation_reply(
        ctx=ctx, conversation=conversation, text=data["reply"], justification=data["justification"]
    )
    return "Reply queued for sending."


def _note(ctx: AccessContext, conversation: Conversation, data: dict[str, Any]) -> str:
    services.note_add(
        ctx=ctx, conversation=conversation, text=data["note"], justification=data["justification"]
    )
    return "Note added."


def _assign(ctx: AccessContext, conversation: Conversation, data: dict[str, Any]) -> str:
    services.conversation_assign(ctx=ctx, conversation=conversation, assignee_id=data["assignee"])
    return "Assigned." if data["assignee"] is not None else "Unassigned."


def _status(ctx: AccessContext, conversation: Conversation, data: dict[str, Any]) -> str:
    services.conversation_status_set(
        ctx=ctx, conversation=conversation, status=data["status"], snoozed_until=data["snoozed_until"]
    )
    return f"Status: {conversation.get_status_display()}."


def _priority(ctx: AccessContext, conversation: Conversation, data: dict[str, Any]) -> str:
    services.conversation_priority_set(ctx=ctx, conversation=conversation, priority=data["priority"])
    return f"Priority: {conversation.get_priority_display()}."


def _labels(ctx: AccessContext, conversation: Conversation, data: dict[str, Any]) -> str:
    services.conversation_labels_set(
        ctx=ctx, conversation=conversation, label_ids=[label.pk for label in data["labels"]]
    )
    return "Labels saved."


@require_POST
def reply_view(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.ReplyForm, _reply)


@require_POST
def note_view(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.NoteForm, _note)


@require_POST
def assign_view(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.AssignForm, _assign)


@require_POST
def status_view(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.StatusForm, _status)


@require_POST
def priority_view(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.PriorityForm, _priority)


@require_POST
def labels_view(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.LabelsForm, _labels)


@never_cache
@require_GET
def attachment_view(request: HtmxHttpRequest, conversation_id: int, attachment_id: int) -> FileResponse:
    """One file of the thread, through the policy (and recorded as a download)."""
    ctx = AccessContext.from_request(request)
    attachment = policy.access_attachment(ctx, conversation_id, attachment_id)
    inline = attachment.content_type in INLINE_IMAGE_TYPES
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=not inline,
        filename=attachment.filename,
        # The type sniffed from the bytes when the file was stored, never the sender's word.
        content_type=attachment.content_type if inline else "application/octet-stream",
    )
    # Even opened directly, the file runs nothing and reaches nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
