"""Priority on the agent side (one control beside the status, decided by the policy,
recorded and announced) and unread counts per inbox in the list's inbox filter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.models import AccessEvent
from inbox import events
from inbox.models import Conversation, Inbox
from inbox.views import LIST_CHANGED_EVENT
from tests.inbox.conftest import Segments, grant_inbox, make_conversation
from tests.workspace.test_partials import LIST_PANE_QUERIES

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
LIST_URL = reverse("inbox:list")
Priority = Conversation.Priority


def priority_url(conversation: Conversation) -> str:
    return reverse("inbox:priority", kwargs={"conversation_id": conversation.pk})


@pytest.fixture
def sue(segments: Segments, verified_client: Callable[[User], Client]) -> Client:
    return verified_client(segments.support_agent)


def priority_log(conversation: Conversation) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Conversation), object_pk=str(conversation.pk)
        )
    )


def test_priority_changes_in_place_is_recorded_and_announced(
    segments: Segments, sue: Client, django_capture_on_commit_callbacks: Any
) -> None:
    conversation = segments.support_conversations[0]
    with (
        mock.patch.object(events, "send_to_groups") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = sue.post(priority_url(conversation), {"priority": Priority.URGENT}, **HTMX)
    assert response.status_code == 200 and LIST_CHANGED_EVENT in response["HX-Trigger"]
    html = response.content.decode()
    assert "Priority: Urgent." in html and "Urgent priority" in html
    assert 'aria-pressed="true" data-shortcut="p">Urgent</button>' in html
    conversation.refresh_from_db()
    assert conversation.priority == Priority.URGENT
    (entry,) = priority_log(conversation)
    assert entry.actor == segments.support_agent
    assert entry.changes_dict == {"priority": [str(Priority.NORMAL), str(Priority.URGENT)]}
    # Announced to the inbox's pages after the commit: the list and other agents refresh.
    (groups, message), _ = send.call_args
    assert groups == [events.inbox_group(segments.support.pk)]
    assert message["event"] == "conversation.priority" and message["priority"] == Priority.URGENT

    # The same priority again changes nothing and records nothing.
    sue.post(priority_url(conversation), {"priority": Priority.URGENT}, **HTMX)
    assert len(priority_log(conversation)) == 1


def test_priority_without_javascript_redirects_back(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    conversation_url = reverse("inbox:conversation", kwargs={"conversation_id": conversation.pk})
    page = sue.get(conversation_url).content.decode()
    assert "<dt><kbd>p</kbd></dt><dd>Priority (choose which)</dd>" in page  # the ? overlay names the key
    response = sue.post(priority_url(conversation), {"priority": Priority.LOW})
    assert response.status_code == 302 and response["Location"] == conversation_url
    conversation.refresh_from_db()
    assert conversation.priority == Priority.LOW


def test_a_stolen_session_cannot_rank_another_segments_conversation(segments: Segments, sue: Client) -> None:
    billing = segments.billing_conversations[0]
    response = sue.post(priority_url(billing), {"priority": Priority.URGENT}, **HTMX)
    assert response.status_code == 404
    billing.refresh_from_db()
    assert billing.priority == Priority.NORMAL and not priority_log(billing)
    # The probe is in the access trail, as denied.
    assert AccessEvent.objects.filter(
        user_id=segments.support_agent.pk,
        object_type="inbox.conversation",
        object_id=billing.pk,
        allowed=False,
    ).exists()


def test_a_read_only_grant_cannot_change_priority(segments: Segments, sue: Client) -> None:
    read_only = Inbox.objects.create(name="Read only", channel_kind="email")
    grant_inbox(read_only, segments.support_agent, perms=("view_inbox",))
    watched = make_conversation(read_only, text="look but do not touch")
    response = sue.post(priority_url(watched), {"priority": Priority.HIGH}, **HTMX)
    assert response.status_code == 403
    assert "You may not change this conversation&#x27;s priority." in response.content.decode()
    watched.refresh_from_db()
    assert watched.priority == Priority.NORMAL and not priority_log(watched)


@pytest.mark.parametrize("value", ["9", "high", "", "99999999999999999999"])
def test_a_bad_priority_is_a_400_with_a_message_and_nothing_changed(
    segments: Segments, sue: Client, value: str
) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(priority_url(conversation), {"priority": value}, **HTMX)
    assert response.status_code == 400 and "HX-Trigger" not in response
    html = response.content.decode()
    assert "Select a valid choice." in html or "This field is required." in html
    conversation.refresh_from_db()
    assert conversation.priority == Priority.NORMAL and not priority_log(conversation)


def test_the_list_shows_and_filters_by_priority(segments: Segments, sue: Client) -> None:
    urgent = segments.support_conversations[0]
    Conversation.objects.filter(pk=urgent.pk).update(priority=Priority.URGENT)
    html = sue.get(LIST_URL, **HTMX).content.decode()
    assert 'class="priority priority-3"' in html and '<span class="visually-hidden"> priority</span>' in html
    assert html.count('class="priority ') == 1  # normal is not flagged
    filtered = sue.get(LIST_URL + f"?priority={Priority.URGENT}", **HTMX)
    assert [row["id"] for row in filtered.context["rows"]] == [urgent.pk]
    assert sue.get(LIST_URL + "?priority=7", **HTMX).status_code == 400


# --- Unread per inbox ---------------------------------------------------------------------


def inbox_option(html: str, inbox: Inbox) -> str:
    start = html.index(f'<option value="{inbox.pk}"')
    return html[start : html.index("</option>", start)]


def test_each_inbox_of_the_filter_shows_the_agents_unread_count(segments: Segments, sue: Client) -> None:
    second = Inbox.objects.create(name="Chat support", channel_kind="email")
    grant_inbox(second, segments.support_team)
    make_conversation(second, text="chat one")
    html = sue.get(LIST_URL, **HTMX).content.decode()
    assert inbox_option(html, segments.support).endswith("Email support (3 unread)")
    assert inbox_option(html, second).endswith("Chat support (1 unread)")
    assert f'value="{segments.billing.pk}"' not in html  # another segment is neither listed nor counted

    sue.get(reverse("inbox:conversation", kwargs={"conversation_id": segments.support_conversations[0].pk}))
    html = sue.get(LIST_URL + f"?inbox={second.pk}", **HTMX).content.decode()
    # Narrowed to one inbox, the filter still counts every inbox.
    assert inbox_option(html, segments.support).endswith("Email support (2 unread)")
    assert inbox_option(html, second).endswith("Chat support (1 unread)")


def test_unread_per_inbox_costs_no_query_per_inbox(
    segments: Segments, sue: Client, django_assert_num_queries: Any
) -> None:
    sue.get(LIST_URL, **HTMX)  # warm the session
    with django_assert_num_queries(LIST_PANE_QUERIES):
        sue.get(LIST_URL, **HTMX)
    for number in range(6):
        inbox = Inbox.objects.create(name=f"Extra {number}", channel_kind="email")
        grant_inbox(inbox, segments.support_team)
        make_conversation(inbox, text=f"extra {number}")
    with django_assert_num_queries(LIST_PANE_QUERIES):
        html = sue.get(LIST_URL, **HTMX).content.decode()
    assert html.count(" (1 unread)</option>") == 6


def test_assignment_and_status_changes_are_in_the_audit_trail_too(segments: Segments, sue: Client) -> None:
    """Priority, status and assignment are written by one step, which logs before and after."""
    conversation = segments.support_conversations[0]
    sue.post(
        reverse("inbox:assign", kwargs={"conversation_id": conversation.pk}),
        {"assignee": segments.support_agent.pk},
    )
    sue.post(reverse("inbox:status", kwargs={"conversation_id": conversation.pk}), {"status": "resolved"})
    changes = [entry.changes_dict for entry in priority_log(conversation)]
    assert {"assignee_id": ["None", str(segments.support_agent.pk)]} in changes
    assert any(change.get("status") == ["open", "resolved"] for change in changes)
    assert all(entry.actor_id == segments.support_agent.pk for entry in priority_log(conversation))
