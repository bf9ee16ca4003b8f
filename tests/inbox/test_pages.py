"""The agent pages over HTTP: segment isolation, filters, paging, actions, query counts."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from accounts.models import User
from inbox.models import (
    Contact,
    Conversation,
    Inbox,
    InboxGroupObjectPermission,
    Invoice,
    Label,
    Message,
    Note,
)
from tests.conftest import start_session
from tests.inbox.conftest import Segments, grant_inbox, make_conversation

pytestmark = pytest.mark.django_db

LIST_URL = reverse("inbox:list")


def page_url(conversation: Conversation, action: str = "conversation") -> str:
    return reverse(f"inbox:{action}", kwargs={"conversation_id": conversation.pk})


def listed(response: Any) -> list[int]:
    assert response.status_code == 200, response.content[:500]
    return [row["id"] for row in response.context["rows"]]


@pytest.fixture
def sue(segments: Segments, verified_client: Callable[[User], Client]) -> Client:
    return verified_client(segments.support_agent)


def bulk_conversations(
    inbox: Inbox, count: int, *, newest: datetime, label: Label | None = None, offset: int = 0
) -> list[Conversation]:
    """Many conversations, each with one inbound message, in a handful of queries."""
    contacts = Contact.objects.bulk_create([Contact(name=f"Bulk {offset + i}") for i in range(count)])
    conversations = Conversation.objects.bulk_create(
        Conversation(
            inbox=inbox,
            contact=contact,
            subject=f"Bulk subject {offset + i}",
            last_activity_at=newest - timedelta(seconds=offset + i),
        )
        for i, contact in enumerate(contacts)
    )
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            inbox=inbox,
            direction=Message.Direction.INBOUND,
            sender_name="Bulk",
            text=f"bulk message {conversation.pk}",
            delivery_status=Message.DeliveryStatus.RECEIVED,
        )
        for conversation in conversations
    )
    if label is not None:
        Conversation.labels.through.objects.bulk_create(
            Conversation.labels.through(conversation_id=conversation.pk, label_id=label.pk)
            for conversation in conversations
        )
    return conversations


# --- Access -----------------------------------------------------------------------------


def test_list_shows_only_the_callers_segment(segments: Segments, sue: Client) -> None:
    response = sue.get(LIST_URL)
    assert sorted(listed(response)) == sorted(c.pk for c in segments.support_conversations)
    html = response.content.decode()
    assert "About printer jam 0" in html
    assert "About invoice question" not in html
    assert "Billing" not in html  # not even the other inbox's name in the filter


def test_conversation_outside_the_segment_is_404(segments: Segments, sue: Client) -> None:
    billing_conversation = segments.billing_conversations[0]
    assert sue.get(page_url(billing_conversation)).status_code == 404
    assert sue.get("/conversations/999999999/").status_code == 404
    response = sue.post(page_url(billing_conversation, "reply"), {"reply": "hello from outside"})
    assert response.status_code == 404
    assert not Message.objects.filter(text="hello from outside").exists()


def test_view_only_inbox_refuses_a_reply_with_403(segments: Segments, sue: Client) -> None:
    read_only = Inbox.objects.create(name="Read only", channel_kind="email")
    grant_inbox(read_only, segments.support_agent, perms=("view_inbox",))
    conversation = make_conversation(read_only, text="look but do not touch")
    assert sue.get(page_url(conversation)).status_code == 200
    response = sue.post(page_url(conversation, "reply"), {"reply": "sneaky answer"})
    assert response.status_code == 403
    assert "You may not reply in this conversation." in response.content.decode()
    assert not Message.objects.filter(text="sneaky answer").exists()


def test_anonymous_and_password_only_sessions_are_sent_to_sign_in(segments: Segments) -> None:
    conversation = segments.support_conversations[0]
    anonymous = Client()
    response = anonymous.get(page_url(conversation))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    password_only = Client()
    start_session(password_only, segments.support_agent, verified=False)
    for client in (anonymous, password_only):
        response = client.post(page_url(conversation, "reply"), {"reply": "unverified reply"})
        assert response.status_code == 302
    assert password_only.get(LIST_URL)["Location"].startswith(reverse("accounts:otp"))
    assert not Message.objects.filter(text="unverified reply").exists()


def test_revoking_the_team_grant_closes_the_conversation_on_the_next_request(
    segments: Segments, sue: Client
) -> None:
    conversation = segments.support_conversations[0]
    assert sue.get(page_url(conversation)).status_code == 200
    InboxGroupObjectPermission.objects.filter(group=segments.support_team).delete()
    assert sue.get(page_url(conversation)).status_code == 404
    assert listed(sue.get(LIST_URL)) == []


# --- Filters ----------------------------------------------------------------------------


def test_status_filter(segments: Segments, sue: Client) -> None:
    first, second, third = segments.support_conversations
    Conversation.objects.filter(pk=second.pk).update(status=Conversation.Status.PENDING)
    Conversation.objects.filter(pk=third.pk).update(status=Conversation.Status.RESOLVED)
    response = sue.get(LIST_URL)
    assert listed(response) == [first.pk]  # open by default, and shown ticked
    assert 'value="open" id="id_status_0" checked' in response.content.decode()
    assert listed(sue.get(LIST_URL, {"status": "pending"})) == [second.pk]
    assert listed(sue.get(LIST_URL, {"status": ["open", "resolved"]})) == [first.pk, third.pk]


def test_scope_tabs_and_counters(segments: Segments, sue: Client) -> None:
    first, second, third = segments.support_conversations
    Conversation.objects.filter(pk=first.pk).update(assignee=segments.support_agent)
    response = sue.get(LIST_URL, {"scope": "mine"})
    assert listed(response) == [first.pk]
    assert [(t["scope"], t["count"]) for t in response.context["tabs"]] == [
        ("mine", 1),
        ("unassigned", 2),
        ("all", 3),
    ]
    html = response.content.decode()
    assert html.count('aria-current="page"') == 1
    assert 'scope=mine" aria-current="page"' in html
    assert listed(sue.get(LIST_URL, {"scope": "unassigned"})) == [second.pk, third.pk]
    assert listed(sue.get(LIST_URL, {"scope": "all"})) == [first.pk, second.pk, third.pk]


def test_empty_states(segments: Segments, sue: Client) -> None:
    assert (
        "No open conversations are assigned to you." in sue.get(LIST_URL, {"scope": "mine"}).content.decode()
    )
    response = sue.get(LIST_URL, {"q": "nothing-like-this"})
    assert listed(response) == []
    assert "No conversations match these filters." in response.content.decode()


def test_label_filter_and_row_labels(segments: Segments, sue: Client) -> None:
    urgent = Label.objects.create(name="urgent", color="#b42318")
    segments.support_conversations[1].labels.add(urgent)
    response = sue.get(LIST_URL, {"label": urgent.pk})
    assert listed(response) == [segments.support_conversations[1].pk]
    assert 'data-color="#b42318">urgent</span>' in response.content.decode()


def test_full_text_search(segments: Segments, sue: Client) -> None:
    special = make_conversation(segments.support, text="The refund never arrived")
    assert listed(sue.get(LIST_URL, {"q": "refund"})) == [special.pk]
    assert listed(sue.get(LIST_URL, {"q": "jam 1"})) == [segments.support_conversations[1].pk]
    assert len(listed(sue.get(LIST_URL, {"q": "printer"}))) == 3
    # Search stays inside the segment: the billing inbox's words find nothing here.
    assert listed(sue.get(LIST_URL, {"q": "invoice"})) == []


def test_inbox_filter_is_limited_to_visible_inboxes(segments: Segments, sue: Client) -> None:
    chat = Inbox.objects.create(name="Live chat", channel_kind="livechat")
    grant_inbox(chat, segments.support_team)
    chat_conversation = make_conversation(chat, text="chat hello")
    assert listed(sue.get(LIST_URL, {"inbox": chat.pk})) == [chat_conversation.pk]
    assert len(listed(sue.get(LIST_URL, {"inbox": segments.support.pk}))) == 3
    # Another segment's inbox is not a choice: asking for it is a bad request, not a leak.
    response = sue.get(LIST_URL, {"inbox": segments.billing.pk})
    assert response.status_code == 400
    assert "About invoice question" not in response.content.decode()


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        {"inbox": "abc"},
        {"inbox": "99999999999999999999999"},
        {"status": "everything"},
        {"scope": "theirs"},
        {"label": "-1"},
        {"q": "x" * 201},
        {"q": "nul\x00byte"},
        {"cursor": "not a cursor!"},
        {"cursor": _cursor(["yesterday", 1])},
        {"cursor": _cursor(["2024-01-01T00:00:00+00:00", 1e400])},
        {"cursor": _cursor({"a": 1})},
        {"cursor": "x" * 300},
    ],
)
def test_malformed_filters_are_a_400_page(segments: Segments, sue: Client, query: dict[str, str]) -> None:
    response = sue.get(LIST_URL, query)
    assert response.status_code == 400
    html = response.content.decode()
    assert "These filters could not be used." in html
    assert 'role="alert"' in html


# --- Paging -----------------------------------------------------------------------------


def test_keyset_pagination_walks_every_conversation_once_in_order(segments: Segments, sue: Client) -> None:
    newest = timezone.now()
    bulk_conversations(segments.support, 118, newest=newest)
    # Ties on the activity time are broken by id, across page boundaries too.
    Conversation.objects.filter(subject__in=[f"Bulk subject {i}" for i in range(45, 56)]).update(
        last_activity_at=newest - timedelta(hours=1)
    )
    expected = list(
        Conversation.objects.filter(inbox=segments.support)
        .order_by("-last_activity_at", "-id")
        .values_list("pk", flat=True)
    )
    seen: list[int] = []
    url: str | None = LIST_URL
    pages = 0
    while url is not None:
        response = sue.get(url)
        seen += listed(response)
        older = response.context["older_url"]
        if older:
            assert f'href="{LIST_URL}{older}" rel="next"' in response.content.decode().replace("&amp;", "&")
        url = LIST_URL + older if older else None
        pages += 1
    assert pages == 3
    assert seen == expected and len(set(seen)) == 121


# --- Actions ----------------------------------------------------------------------------


def test_reply_is_stored_queued_and_shown_as_queued(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(page_url(conversation, "reply"), {"reply": "  We are on it.  "})
    assert response.status_code == 302 and response["Location"] == page_url(conversation)
    message = Message.objects.get(conversation=conversation, direction=Message.Direction.OUTBOUND)
    assert message.text == "We are on it."
    assert message.delivery_status == Message.DeliveryStatus.QUEUED
    assert message.sender_user == segments.support_agent
    html = sue.get(page_url(conversation)).content.decode()
    assert '<span class="delivery delivery-queued">Queued</span>' in html
    assert "Reply queued for sending." in html


def test_empty_reply_is_a_400_with_nothing_written(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(page_url(conversation, "reply"), {"reply": "   "})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()


def test_failed_delivery_shows_the_reason(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    Message.objects.create(
        conversation=conversation,
        inbox=segments.support,
        direction=Message.Direction.OUTBOUND,
        text="did not make it",
        delivery_status=Message.DeliveryStatus.FAILED,
        delivery_detail="Mailbox does not exist",
    )
    html = sue.get(page_url(conversation)).content.decode()
    assert '<span class="delivery delivery-failed">Failed</span>' in html
    assert "Not delivered: Mailbox does not exist" in html


def test_note_is_added_and_marked_internal(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(page_url(conversation, "note"), {"note": "Customer is a VIP"})
    assert response.status_code == 302
    assert Note.objects.get(conversation=conversation).text == "Customer is a VIP"
    assert not Message.objects.filter(text="Customer is a VIP").exists()
    html = sue.get(page_url(conversation)).content.decode()
    assert '<li class="entry note">' in html and "Internal note" in html


def test_message_html_is_rendered_and_plain_text_escaped(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    Message.objects.create(
        conversation=conversation,
        inbox=segments.support,
        direction=Message.Direction.INBOUND,
        text="<b>not bold</b>",
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    Message.objects.create(
        conversation=conversation,
        inbox=segments.support,
        direction=Message.Direction.INBOUND,
        text="fallback",
        html="<p><strong>sanitized</strong></p>",
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    html = sue.get(page_url(conversation)).content.decode()
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert "<p><strong>sanitized</strong></p>" in html


def test_assign_to_me_to_a_teammate_and_unassign(
    segments: Segments, sue: Client, make_user: Callable[..., User]
) -> None:
    conversation = segments.support_conversations[0]
    teammate = make_user(roles.AGENT, username="tom")
    teammate.groups.add(segments.support_team)
    page = sue.get(page_url(conversation)).content.decode()
    assert f'<option value="{teammate.pk}">tom</option>' in page
    assert f'<option value="{segments.billing_agent.pk}">' not in page

    assert (
        sue.post(page_url(conversation, "assign"), {"assignee": segments.support_agent.pk}).status_code == 302
    )
    conversation.refresh_from_db()
    assert conversation.assignee == segments.support_agent
    assert sue.post(page_url(conversation, "assign"), {"assignee": teammate.pk}).status_code == 302
    conversation.refresh_from_db()
    assert conversation.assignee == teammate
    assert sue.post(page_url(conversation, "assign"), {"assignee": ""}).status_code == 302
    conversation.refresh_from_db()
    assert conversation.assignee is None


def test_assigning_to_an_agent_who_cannot_see_it_is_refused(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(page_url(conversation, "assign"), {"assignee": segments.billing_agent.pk})
    assert response.status_code == 400
    assert "That agent cannot see this conversation." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.assignee is None
    assert sue.post(page_url(conversation, "assign"), {"assignee": "me"}).status_code == 400


def test_status_transitions(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    assert sue.post(page_url(conversation, "status"), {"status": "pending"}).status_code == 302
    later = (timezone.now() + timedelta(days=1)).replace(second=0, microsecond=0)
    response = sue.post(
        page_url(conversation, "status"),
        {"status": "snoozed", "snoozed_until": later.strftime("%Y-%m-%dT%H:%M")},
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.status, conversation.snoozed_until) == ("snoozed", later)
    assert sue.post(page_url(conversation, "status"), {"status": "resolved"}).status_code == 302
    conversation.refresh_from_db()
    assert (conversation.status, conversation.snoozed_until) == ("resolved", None)


@pytest.mark.parametrize(
    ("start", "data", "message"),
    [
        ("resolved", {"status": "snoozed", "snoozed_until": "2999-01-01T10:00"}, "cannot become snoozed"),
        ("open", {"status": "snoozed"}, "Snoozing needs a time in the future."),
        ("open", {"status": "snoozed", "snoozed_until": "2001-01-01T10:00"}, "Snoozing needs a time"),
        ("open", {"status": "archived"}, "Select a valid choice."),
        ("open", {"status": "snoozed", "snoozed_until": "tomorrow"}, "Enter a valid date/time."),
    ],
)
def test_invalid_status_change_is_a_400_with_nothing_written(
    segments: Segments, sue: Client, start: str, data: dict[str, str], message: str
) -> None:
    conversation = segments.support_conversations[0]
    Conversation.objects.filter(pk=conversation.pk).update(status=start)
    response = sue.post(page_url(conversation, "status"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.status, conversation.snoozed_until) == (start, None)


def test_labels_are_set_and_cleared(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    vip, refund = Label.objects.create(name="vip"), Label.objects.create(name="refund")
    response = sue.post(page_url(conversation, "labels"), {"labels": [vip.pk, refund.pk]})
    assert response.status_code == 302
    assert set(conversation.labels.all()) == {vip, refund}
    page = sue.get(page_url(conversation)).content.decode()
    assert f'value="{vip.pk}"' in page and "checked" in page
    assert sue.post(page_url(conversation, "labels"), {"labels": "nope"}).status_code == 400
    assert set(conversation.labels.all()) == {vip, refund}
    assert sue.post(page_url(conversation, "labels"), {}).status_code == 302
    assert not conversation.labels.exists()


def test_get_on_an_action_is_refused(segments: Segments, sue: Client) -> None:
    assert sue.get(page_url(segments.support_conversations[0], "reply")).status_code == 405


# --- Page content -----------------------------------------------------------------------


def test_conversation_page_shows_contact_thread_and_canned_responses(segments: Segments, sue: Client) -> None:
    from inbox.models import CannedResponse

    conversation = segments.support_conversations[0]
    CannedResponse.objects.create(shortcut="thanks", text="Thank you for writing to us.")
    CannedResponse.objects.create(inbox=segments.billing, shortcut="billing-only", text="Billing text")
    html = sue.get(page_url(conversation)).content.decode()
    identity = conversation.contact.identities.get()
    assert identity.handle in html
    assert "printer jam 0" in html
    assert 'data-text="Thank you for writing to us."' in html
    assert "billing-only" not in html
    assert "/static/js/inbox.js" in html
    assert "<script>" not in html and "style=" not in html  # the CSP forbids both inline


def test_invoices_panel_only_for_the_billing_role(segments: Segments, verified_client: Any) -> None:
    billing_conversation = segments.billing_conversations[0]
    Invoice.objects.create(
        contact=billing_conversation.contact,
        number="INV-0042",
        amount_cents=123456,
        issued_at=date(2025, 1, 2),
    )
    html = verified_client(segments.billing_agent).get(page_url(billing_conversation)).content.decode()
    assert "Invoices" in html and "INV-0042" in html and "1,234.56 EUR" in html

    # A support agent who also sees the billing inbox still gets nothing about billing.
    grant_inbox(segments.billing, segments.support_agent)
    html = verified_client(segments.support_agent).get(page_url(billing_conversation)).content.decode()
    assert "Invoice" not in html and "INV-0042" not in html


# --- Query counts -----------------------------------------------------------------------


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


# 12 (the caller's scope, two queries for this filter, is settled once for the list and its
# counters), the labels offered by the bulk bar, and the one "view PII" decision (masking);
# and 1 more: narrowed to one inbox, the counters (tabs and the inbox filter's unread counts,
# every inbox in one query) need the scope of all the caller's inboxes settled once more.
INBOX_PAGE_QUERIES = 16
# 14 (the inbox, contact and assignee come joined into the deciding query; the billing
# decision asks its role in one EXISTS), one upsert (opening the conversation marks it read
# for the agent), one for the contact's other conversations in the context pane, and the one
# "view PII" decision.
CONVERSATION_PAGE_QUERIES = 17


def test_inbox_page_query_count_does_not_grow(
    segments: Segments, sue: Client, django_assert_num_queries: Any
) -> None:
    label = Label.objects.create(name="bulk")
    bulk = Inbox.objects.create(name="Bulk", channel_kind="email")
    grant_inbox(bulk, segments.support_team)
    newest = timezone.now()
    Conversation.objects.filter(inbox=segments.support).update(assignee=segments.support_agent)
    bulk_conversations(bulk, 5, newest=newest, label=label)
    url = f"{LIST_URL}?scope=all&label={label.pk}&q=bulk&status=open&status=pending&inbox={bulk.pk}"
    sue.get(url)  # warm: the session's first request may refresh its last-seen time
    small = _queries(sue, url)
    bulk_conversations(bulk, 495, newest=newest, label=label, offset=5)
    large = _queries(sue, url)
    assert small == large
    with django_assert_num_queries(INBOX_PAGE_QUERIES):
        response = sue.get(url)
    assert len(response.context["rows"]) == 50


def test_conversation_page_query_count_does_not_grow(
    segments: Segments, sue: Client, django_assert_num_queries: Any
) -> None:
    conversation = segments.support_conversations[0]
    conversation.labels.add(Label.objects.create(name="vip"))
    Conversation.objects.filter(pk=conversation.pk).update(assignee=segments.support_agent)

    def add_entries(count: int) -> None:
        Message.objects.bulk_create(
            Message(
                conversation=conversation,
                inbox=segments.support,
                direction=Message.Direction.OUTBOUND if i % 2 else Message.Direction.INBOUND,
                sender_user=segments.support_agent if i % 2 else None,
                text=f"entry {i}",
                delivery_status=Message.DeliveryStatus.QUEUED if i % 2 else Message.DeliveryStatus.RECEIVED,
            )
            for i in range(count)
        )
        Note.objects.bulk_create(
            Note(conversation=conversation, author=segments.support_agent, text=f"note {i}")
            for i in range(count // 5)
        )

    add_entries(5)
    url = page_url(conversation)
    sue.get(url)
    small = _queries(sue, url)
    add_entries(495)
    large = _queries(sue, url)
    assert small == large
    with django_assert_num_queries(CONVERSATION_PAGE_QUERIES):
        response = sue.get(url)
    assert len(response.context["thread"]) > 500
