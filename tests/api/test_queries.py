"""Query-count benchmarks: the list endpoints cost the same for 5 or 500 rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from inbox.models import Attachment, Contact, Conversation, Inbox, Label, Message, Note
from tests.api.conftest import api_url, token_client
from tests.inbox.conftest import Segments, grant_inbox

pytestmark = pytest.mark.django_db

# Session: user, OTP device, session record (the session data itself is in the cache);
# whether the user holds any conversation grant (it simplifies the list's plan); the page
# (one query with its last-message subquery), the page's labels, whether the caller sees
# personal data unmasked ("view PII"), and the one INSERT of the request's access events.
SESSION_LIST_QUERIES = 8
# Token: the token with its account; then the page, the page's labels, "view PII", the
# access events.
TOKEN_LIST_QUERIES = 5
# Session (3); the conversation, loaded with its view decision in one query; the thread's messages, their
# attachments and its notes (either list loads the whole thread); the access events. Messages
# also ask "view PII" (notes are the agents' own words, never masked).
SESSION_THREAD_QUERIES = {"messages": 9, "notes": 8}


def add_conversations(inbox: Inbox, count: int, agent: User, label: Label) -> None:
    now = timezone.now()
    contacts = Contact.objects.bulk_create(Contact(name=f"bulk {i}") for i in range(count))
    conversations = Conversation.objects.bulk_create(
        Conversation(
            inbox=inbox,
            contact=contact,
            subject=f"bulk {i}",
            # Every row differs in what a serializer could fetch lazily.
            assignee=agent if i % 2 else None,
            last_activity_at=now - timedelta(seconds=i),
        )
        for i, contact in enumerate(contacts)
    )
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            inbox=inbox,
            direction=Message.Direction.INBOUND,
            text="hello",
            delivery_status=Message.DeliveryStatus.RECEIVED,
        )
        for conversation in conversations
    )
    Conversation.labels.through.objects.bulk_create(
        Conversation.labels.through(conversation_id=c.pk, label_id=label.pk) for c in conversations[::3]
    )


def list_query_count(client: Client, path: str = "conversations/") -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(api_url(path))
    assert response.status_code == 200
    return len(queries)


def test_list_costs_the_same_for_5_and_500(segments: Segments, verified_client: Any) -> None:
    label = Label.objects.create(name="bulk")
    client = verified_client(segments.support_agent)
    add_conversations(segments.support, 5, segments.support_agent, label)
    client.get(api_url("conversations/"))  # the session's once-a-minute bookkeeping, out of the way
    few = list_query_count(client)
    add_conversations(segments.support, 495, segments.support_agent, label)
    many = list_query_count(client)
    assert few == many == SESSION_LIST_QUERIES


def test_list_query_count_is_exact(
    segments: Segments, verified_client: Any, django_assert_num_queries: Any
) -> None:
    add_conversations(segments.support, 60, segments.support_agent, Label.objects.create(name="bulk"))
    client = verified_client(segments.support_agent)
    client.get(api_url("conversations/"))
    with django_assert_num_queries(SESSION_LIST_QUERIES):
        response = client.get(api_url("conversations/"))
    assert len(response.json()["results"]) == 50 and response.json()["next"] is not None


def test_token_list_costs_the_same_for_5_and_500(
    segments: Segments, service_account: User, issue_token: Any
) -> None:
    grant_inbox(segments.support, service_account)
    label = Label.objects.create(name="bulk")
    client = token_client(issue_token(service_account, [segments.support]).plaintext)
    add_conversations(segments.support, 5, segments.support_agent, label)
    client.get(api_url("conversations/"))  # writes last_used_at, at most once a minute
    few = list_query_count(client)
    add_conversations(segments.support, 495, segments.support_agent, label)
    many = list_query_count(client)
    assert few == many == TOKEN_LIST_QUERIES


def add_thread_entries(conversation: Conversation, count: int, agent: User) -> None:
    messages = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            inbox_id=conversation.inbox_id,
            # Outbound rows have a sender a serializer could fetch lazily.
            direction=Message.Direction.OUTBOUND if i % 2 else Message.Direction.INBOUND,
            sender_user=agent if i % 2 else None,
            text=f"entry {i}",
            delivery_status=Message.DeliveryStatus.QUEUED if i % 2 else Message.DeliveryStatus.RECEIVED,
        )
        for i in range(count)
    )
    Attachment.objects.bulk_create(
        Attachment(message=message, filename="a.txt", content_type="text/plain", size=1, sha256="0" * 64)
        for message in messages[::3]
    )
    Note.objects.bulk_create(
        Note(conversation=conversation, author=agent, text=f"note {i}") for i in range(count)
    )


@pytest.mark.parametrize("kind", ["messages", "notes"])
def test_thread_lists_cost_the_same_for_5_and_500(
    segments: Segments, verified_client: Any, kind: str
) -> None:
    conversation = segments.support_conversations[0]
    client = verified_client(segments.support_agent)
    path = f"conversations/{conversation.pk}/{kind}/"
    add_thread_entries(conversation, 5, segments.support_agent)
    client.get(api_url(path))  # the session's once-a-minute bookkeeping, out of the way
    few = list_query_count(client, path)
    add_thread_entries(conversation, 495, segments.support_agent)
    many = list_query_count(client, path)
    assert few == many == SESSION_THREAD_QUERIES[kind]
