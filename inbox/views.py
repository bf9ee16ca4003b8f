"""The agent pages: the inbox list and one conversation with its actions.

Views parse the request, make one call into the policy, a selector or a service, and
render. Every conversation is loaded through `policy.access_conversation`, so a
conversation outside the caller's segment is a 404, exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms as django_forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from inbox import forms, policy, selectors, services
from inbox.models import Conversation
from inbox.policy import AccessContext


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


@never_cache
@require_GET
def inbox_view(request: HttpRequest) -> HttpResponse:
    ctx = AccessContext.from_request(request)
    form = forms.ConversationFilterForm(request.GET, ctx=ctx)
    context: dict[str, Any] = {"form": form, "page": None}
    if not form.is_valid():
        return render(request, "inbox/list.html", context, status=400)
    filters = form.filters()
    try:
        page = selectors.conversation_list(
            ctx=ctx, filters=filters, cursor=form.cleaned_data["cursor"] or None
        )
    except selectors.InvalidFilter as error:
        form.add_error("cursor", str(error))
        return render(request, "inbox/list.html", context, status=400)
    counters = selectors.conversation_counters(ctx=ctx, filters=filters)
    query = request.GET
    context.update(
        page=page,
        scope=filters.scope,
        tabs=[
            {
                "scope": scope,
                "label": label,
                "count": counters[scope],
                "url": _with_query(query, scope=scope, cursor=None),
            }
            for scope, label in forms.SCOPE_CHOICES
        ],
        older_url=_with_query(query, cursor=page.next_cursor) if page.next_cursor else None,
        newest_url=_with_query(query, cursor=None) if form.cleaned_data["cursor"] else None,
        filtered=filters != selectors.ConversationFilters(scope=filters.scope),
    )
    return render(request, "inbox/list.html", context)


# --- One conversation -------------------------------------------------------------------


# The page's template variable for each action form, so a refused one is shown as submitted.
_FORM_NAMES: dict[type[django_forms.Form], str] = {
    forms.ReplyForm: "reply_form",
    forms.NoteForm: "note_form",
    forms.AssignForm: "assign_form",
    forms.StatusForm: "status_form",
    forms.LabelsForm: "labels_form",
}


def _money(cents: int) -> str:
    return f"{Decimal(cents).scaleb(-2):,.2f}"


def _conversation_page(
    request: HttpRequest,
    ctx: AccessContext,
    conversation: Conversation,
    *,
    bound: django_forms.Form | None = None,
    error: str = "",
    refusal: services.OutboundRefused | None = None,
    status: int = 200,
) -> HttpResponse:
    """The conversation page; after a refused action, with that action's form as submitted."""
    page_forms: dict[str, django_forms.Form] = {
        "reply_form": forms.ReplyForm(),
        "note_form": forms.NoteForm(),
        "assign_form": forms.AssignForm(),
        "status_form": forms.StatusForm(
            initial={"status": conversation.status, "snoozed_until": conversation.snoozed_until}
        ),
        "labels_form": forms.LabelsForm(initial={"labels": list(conversation.labels.all())}),
    }
    if bound is not None:
        page_forms[_FORM_NAMES[type(bound)]] = bound
    invoices = selectors.contact_invoices(ctx=ctx, contact_id=conversation.contact_id)
    context = {
        "conversation": conversation,
        "contact": conversation.contact,
        "identities": conversation.contact.identities.all(),
        "thread": selectors.conversation_thread(conversation=conversation),
        "canned_responses": selectors.canned_responses(conversation=conversation),
        "agents": policy.users_with_inbox_grant(conversation.inbox),
        "invoices": None
        if invoices is None
        else [{"invoice": invoice, "amount": _money(invoice.amount_cents)} for invoice in invoices],
        "error": error,
        "dlp_refusal": refusal,
        **page_forms,
    }
    return render(request, "inbox/conversation.html", context, status=status)


@never_cache
@require_GET
def conversation_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    ctx = AccessContext.from_request(request)
    conversation = policy.access_conversation(ctx, conversation_id)
    return _conversation_page(request, ctx, conversation)


# An action takes the access context, the conversation and the form's cleaned data, calls
# one service, and returns the confirmation shown after the redirect.
ConversationAction = Callable[[AccessContext, Conversation, dict[str, Any]], str]


def _conversation_action(
    request: HttpRequest,
    conversation_id: int,
    form_class: type[django_forms.Form],
    action: ConversationAction,
) -> HttpResponse:
    """POST, then redirect back (PRG). Refusals keep the agent on the page with the reason."""
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
        back_url = reverse("inbox:conversation", kwargs={"conversation_id": conversation.pk})
        return render(request, "inbox/denied.html", {"message": str(error), "back_url": back_url}, status=403)
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


def _labels(ctx: AccessContext, conversation: Conversation, data: dict[str, Any]) -> str:
    services.conversation_labels_set(
        ctx=ctx, conversation=conversation, label_ids=[label.pk for label in data["labels"]]
    )
    return "Labels saved."


@require_POST
def reply_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.ReplyForm, _reply)


@require_POST
def note_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.NoteForm, _note)


@require_POST
def assign_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.AssignForm, _assign)


@require_POST
def status_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.StatusForm, _status)


@require_POST
def labels_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_action(request, conversation_id, forms.LabelsForm, _labels)
