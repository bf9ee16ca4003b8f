"""The API with a verified browser session: segments, writes, CSRF, billing, bad input."""

from __future__ import annotations

import base64
import json
import secrets
import string
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from accounts import roles
from audit.models import AccessEvent
from inbox.models import Conversation, Inbox, Invoice, Label, Message, Note
from tests.api.conftest import api_url
from tests.conftest import start_session
from tests.inbox.conftest import Segments, grant_inbox, make_conversation

pytestmark = pytest.mark.django_db


def ids(response: Any) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def encoded_cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# --- Who gets in ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["inboxes/", "conversations/", "conversations/1/", "conversations/1/messages/", "contacts/1/"]
)
def test_anonymous_gets_401_and_password_only_gets_403(make_user: Any, path: str) -> None:
    response = Client().get(api_url(path))
    assert response.status_code == 401 and response.json()["detail"]
    agent = make_user(roles.AGENT)
    half_signed_in = Client()
    start_session(half_signed_in, agent, verified=False)
    response = half_signed_in.get(api_url(path))
    assert response.status_code == 403 and "verification" in response.json()["detail"]


def test_password_only_session_with_another_authorization_scheme_is_still_refused(make_user: Any) -> None:
    # Any Authorization header lets the request past the HTTP gate to DRF; DRF must then
    # apply the same rule itself.
    agent = make_user(roles.AGENT)
    client = Client(headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert client.get(api_url("conversations/")).status_code == 401
    start_session(client, agent, verified=False)
    assert client.get(api_url("conversations/")).status_code == 403


# --- Segments ---------------------------------------------------------------------------


def test_each_agent_lists_only_their_segment(segments: Segments, verified_client: Any) -> None:
    sue = verified_client(segments.support_agent)
    listed = sue.get(api_url("conversations/"))
    assert listed.status_code == 200
    assert ids(listed) == [c.pk for c in segments.support_conversations]  # newest first
    assert listed.json()["next"] is None
    assert ids(sue.get(api_url("inboxes/"))) == [segments.support.pk]
    # Filtering by the other segment's inbox finds nothing rather than its rows.
    assert ids(sue.get(api_url(f"conversations/?inbox={segments.billing.pk}"))) == []
    bill = verified_client(segments.billing_agent)
    assert set(ids(bill.get(api_url("conversations/")))) == {c.pk for c in segments.billing_conversations}


def test_other_segment_and_unknown_ids_are_the_same_404(segments: Segments, verified_client: Any) -> None:
    sue = verified_client(segments.support_agent)
    foreign = segments.billing_conversations[0]
    for path in (
        f"conversations/{foreign.pk}/",
        f"conversations/{foreign.pk}/messages/",
        f"conversations/{foreign.pk}/notes/",
        f"contacts/{foreign.contact_id}/",
        "conversations/999999999/",
        "contacts/999999999/",
    ):
        response = sue.get(api_url(path))
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}
    posted = sue.post(
        api_url(f"conversations/{foreign.pk}/messages/"), {"text": "hi"}, content_type="application/json"
    )
    assert posted.status_code == 404
    assert not Message.objects.filter(conversation=foreign, direction=Message.Direction.OUTBOUND).exists()


def test_reads_of_own_segment(segments: Segments, verified_client: Any) -> None:
    sue = verified_client(segments.support_agent)
    conversation = segments.support_conversations[0]
    label = Label.objects.create(name="printer")
    conversation.labels.add(label)
    detail = sue.get(api_url(f"conversations/{conversation.pk}/")).json()
    assert detail["id"] == conversation.pk
    assert detail["inbox"] == {
        "id": segments.support.pk,
        "name": segments.support.name,
        "channel_kind": "email",
        "module": "support",
    }
    assert detail["labels"] == [{"id": label.pk, "name": "printer", "color": label.color}]
    messages = sue.get(api_url(f"conversations/{conversation.pk}/messages/")).json()["results"]
    assert [m["text"] for m in messages] == ["printer jam 0"]
    assert messages[0]["direction"] == "in" and messages[0]["attachments"] == []
    contact = sue.get(api_url(f"contacts/{conversation.contact_id}/")).json()
    assert contact["identities"] == [{"channel_kind": "email", "handle": contact["identities"][0]["handle"]}]
    assert AccessEvent.objects.filter(
        user_id=segments.support_agent.pk, object_id=conversation.pk, action="view", allowed=True
    ).exists()


def test_reply_and_note_are_written_and_answered_201(segments: Segments, verified_client: Any) -> None:
    sue = verified_client(segments.support_agent)
    conversation = segments.support_conversations[1]
    reply = sue.post(
        api_url(f"conversations/{conversation.pk}/messages/"),
        {"text": "  Have you tried turning it off?  "},
        content_type="application/json",
    )
    assert reply.status_code == 201
    body = reply.json()
    assert body["text"] == "Have you tried turning it off?"
    assert body["direction"] == "out" and body["delivery_status"] == "queued"
    assert body["sender_user"] == {"id": segments.support_agent.pk, "username": "sue"}
    stored = Message.objects.get(pk=body["id"])
    assert stored.conversation_id == conversation.pk and stored.sender_user_id == segments.support_agent.pk
    note = sue.post(
        api_url(f"conversations/{conversation.pk}/notes/"), {"text": "VIP"}, content_type="application/json"
    )
    assert note.status_code == 201
    assert Note.objects.get(pk=note.json()["id"]).author_id == segments.support_agent.pk
    notes = sue.get(api_url(f"conversations/{conversation.pk}/notes/")).json()["results"]
    assert [n["text"] for n in notes] == ["VIP"]
    # Notes stay out of the messages list, which the contact's side of the thread is.
    texts = [
        m["text"] for m in sue.get(api_url(f"conversations/{conversation.pk}/messages/")).json()["results"]
    ]
    assert texts == ["printer jam 1", "Have you tried turning it off?"]


def test_view_only_grant_reads_but_cannot_write(segments: Segments, verified_client: Any) -> None:
    read_only = Inbox.objects.create(name="Read only", channel_kind="email")
    grant_inbox(read_only, segments.support_agent, perms=("view_inbox",))
    conversation = make_conversation(read_only)
    sue = verified_client(segments.support_agent)
    assert sue.get(api_url(f"conversations/{conversation.pk}/")).status_code == 200
    for path in ("messages", "notes"):
        response = sue.post(
            api_url(f"conversations/{conversation.pk}/{path}/"),
            {"text": "x"},
            content_type="application/json",
        )
        assert response.status_code == 403
        assert "not reply" in response.json()["detail"]
    assert conversation.messages.count() == 1 and not conversation.notes.exists()


def test_expired_grant_closes_the_api_at_once(segments: Segments, verified_client: Any) -> None:
    temporary = Inbox.objects.create(name="Temporary", channel_kind="email")
    grant_inbox(temporary, segments.support_agent, expires_at=timezone.now() + timedelta(hours=1))
    conversation = make_conversation(temporary)
    sue = verified_client(segments.support_agent)
    assert sue.get(api_url(f"conversations/{conversation.pk}/")).status_code == 200
    # The database clock decides; inside the test's transaction it stands at its start.
    temporary.user_grants.update(expires_at=timezone.now() - timedelta(hours=1))
    assert sue.get(api_url(f"conversations/{conversation.pk}/")).status_code == 404
    assert conversation.pk not in ids(sue.get(api_url("conversations/")))


# --- Billing module ---------------------------------------------------------------------


def test_invoices_only_for_the_billing_module(segments: Segments, verified_client: Any) -> None:
    billing_contact = segments.billing_conversations[0].contact
    Invoice.objects.create(
        contact=billing_contact, number="INV-1", amount_cents=1250, issued_at=timezone.now().date()
    )
    bill = verified_client(segments.billing_agent).get(api_url(f"contacts/{billing_contact.pk}/")).json()
    assert [(i["number"], i["amount_cents"], i["status"]) for i in bill["invoices"]] == [
        ("INV-1", 1250, "open")
    ]
    # A support agent who can see a contact's conversation still gets no billing data:
    # the key is absent, not an empty list.
    shared = make_conversation(segments.support, handle="shared@example.com")
    Invoice.objects.create(contact=shared.contact, number="INV-2", amount_cents=1, issued_at="2026-01-01")
    sue = verified_client(segments.support_agent).get(api_url(f"contacts/{shared.contact_id}/")).json()
    assert "invoices" not in sue
    assert sue["id"] == shared.contact_id


# --- CSRF -------------------------------------------------------------------------------


def test_session_writes_need_the_csrf_token(segments: Segments) -> None:
    conversation = segments.support_conversations[0]
    url = api_url(f"conversations/{conversation.pk}/messages/")
    client = Client(enforce_csrf_checks=True)
    start_session(client, segments.support_agent, verified=True)
    refused = client.post(url, {"text": "forged"}, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not conversation.messages.filter(text="forged").exists()

    csrf_secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    client.cookies[settings.CSRF_COOKIE_NAME] = csrf_secret
    accepted = client.post(
        url, {"text": "genuine"}, content_type="application/json", headers={"x-csrftoken": csrf_secret}
    )
    assert accepted.status_code == 201
    assert conversation.messages.filter(text="genuine").exists()


# --- Pagination -------------------------------------------------------------------------


def test_pages_walk_every_row_exactly_once(segments: Segments, verified_client: Any) -> None:
    now = timezone.now()
    # Ties on the activity time are where a keyset on time alone would skip or repeat rows.
    for i in range(20):
        make_conversation(segments.support, text=f"bulk {i}", when=now - timedelta(minutes=i // 3))
    make_conversation(segments.support, status=Conversation.Status.PENDING)
    expected = list(
        Conversation.objects.filter(inbox=segments.support, status="open")
        .order_by("-last_activity_at", "-id")
        .values_list("id", flat=True)
    )
    sue = verified_client(segments.support_agent)
    url: str | None = api_url("conversations/?status=open&limit=4")
    seen: list[int] = []
    pages = 0
    while url is not None:
        page = sue.get(url)
        assert page.status_code == 200
        seen += ids(page)
        url = page.json()["next"]
        if url is not None:
            assert url.startswith("http://testserver/api/v1/conversations/?") and "status=open" in url
        pages += 1
    assert seen == expected
    assert pages == -(-len(expected) // 4)


def test_a_cursor_in_another_offset_means_the_same_instant(segments: Segments, verified_client: Any) -> None:
    # PostgreSQL refuses offsets beyond 15:59 that Python accepts; the instant still counts.
    newest, middle, _ = segments.support_conversations
    when = middle.last_activity_at.astimezone(timezone.get_fixed_timezone(-(23 * 60 + 59)))
    cursor = encoded_cursor([when.isoformat(), middle.pk])
    response = verified_client(segments.support_agent).get(api_url(f"conversations/?cursor={cursor}"))
    assert response.status_code == 200
    assert ids(response) == [segments.support_conversations[2].pk]
    assert newest.pk not in ids(response)


# --- Bad input --------------------------------------------------------------------------

NAIVE_CURSOR = encoded_cursor(["2026-01-01T00:00:00", 5])
HUGE_ID_CURSOR = encoded_cursor(["2026-01-01T00:00:00+00:00", 2**70])
INFINITE_CURSOR = "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgMWU0MDBd"  # ["…", 1e400]
OVERFLOW_CURSOR = encoded_cursor(["9999-12-31T23:59:59-23:59", 5])

BAD_QUERIES = [
    "status=bogus",
    "status=open,,bogus",
    "status=open,",  # the schema's pattern: known statuses joined by commas, nothing else
    "status=open,%20pending",
    "scope=everyone",
    "inbox=abc",
    "inbox=0",
    "inbox=-5",
    "inbox=99999999999999999999999",
    "label=x",
    "label=99999999999999999999999",
    "q=" + "x" * 201,
    "q=a%00b",
    "cursor=@@@",
    "cursor=" + encoded_cursor(["2026-01-01T00:00:00+00:00", 5]) + "==",  # padded: not from `next`
    "cursor=" + encoded_cursor({"a": 1}),
    "cursor=" + encoded_cursor([1, 2, 3]),
    "cursor=" + NAIVE_CURSOR,
    "cursor=" + HUGE_ID_CURSOR,
    "cursor=" + INFINITE_CURSOR,
    "cursor=" + OVERFLOW_CURSOR,
    "cursor=" + encoded_cursor(["2026-01-01T00:00:00+00:00"]),
    "limit=0",
    "limit=101",
    "limit=1.5",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_list_filters_are_400(segments: Segments, verified_client: Any, query: str) -> None:
    response = verified_client(segments.support_agent).get(api_url(f"conversations/?{query}"))
    assert response.status_code == 400, response.content
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "conversations/abc/",
        "conversations/99999999999999999999999/",
        "conversations/-1/",
        "contacts/0/",
        "contacts/99999999999999999999999/",
        "nothing/",
        "conversations/1/attachments/",
    ],
)
def test_unknown_paths_and_ids_are_json_404(segments: Segments, verified_client: Any, path: str) -> None:
    response = verified_client(segments.support_agent).get(api_url(path))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]


UNKNOWN_API_PATHS = [
    "/api/v1/conversations/%00/",
    "/api/v1/conversations/%0A/",
    "/api/v1/conversations/1%0A/",
    "/api/v1/contacts/%1B%7F/",
    "/api/v1/conversations/%E2%80%A8/messages/",
    "/api/v1/conversations/1/messages/%0D%0A",
    "/api/",
    "/api/v2/conversations/",
    "/api/schema/%00",
    "/api/%0A",
]


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
@pytest.mark.parametrize("method", ["get", "post"])
def test_any_unknown_path_under_the_api_is_json_404(
    segments: Segments, verified_client: Any, path: str, method: str
) -> None:
    response = getattr(verified_client(segments.support_agent), method)(path)
    assert response.status_code == 404, response.content
    assert response.json() == {"detail": "No such API endpoint."}


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
def test_unknown_paths_under_the_api_answer_anonymous_json_401(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_refused_host_is_json_400_under_the_api_only(db: Any) -> None:
    client = Client(headers={"host": "attacker.example"})
    response = client.get(api_url("inboxes/"))
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request."}
    assert client.get("/accounts/login/").status_code == 400
    assert "html" in client.get("/accounts/login/")["Content-Type"]


def test_an_unhandled_error_is_json_500_under_the_api_only(
    segments: Segments, verified_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    # The API's list and the inbox page call these.
    monkeypatch.setattr("inbox.selectors.conversation_list", fail)
    monkeypatch.setattr("inbox.selectors.conversation_list_rows", fail)
    client = verified_client(segments.support_agent)
    client.raise_request_exception = False
    response = client.get(api_url("conversations/"))
    assert response.status_code == 500
    assert response.json() == {"detail": "Server error."}
    page = client.get("/")
    assert page.status_code == 500 and "html" in page["Content-Type"]


BAD_BODIES: list[tuple[Any, str, int]] = [
    ({"text": "x" * 20_001}, "application/json", 400),
    ({"text": " " + "x" * 20_000 + " "}, "application/json", 201),  # whitespace is trimmed first
    ({"text": ""}, "application/json", 400),
    ({"text": "   "}, "application/json", 400),
    ({}, "application/json", 400),
    ({"text": ["a"]}, "application/json", 400),
    ({"text": None}, "application/json", 400),
    ({"text": "a\x00b"}, "application/json", 400),
    ("{not json", "application/json", 400),
    ("text=hello", "application/x-www-form-urlencoded", 415),
]


@pytest.mark.parametrize(("body", "content_type", "status"), BAD_BODIES)
@pytest.mark.parametrize("kind", ["messages", "notes"])
def test_bad_bodies_are_refused_and_nothing_is_written(
    segments: Segments, verified_client: Any, body: Any, content_type: str, status: int, kind: str
) -> None:
    conversation = segments.support_conversations[0]
    before = (conversation.messages.count(), conversation.notes.count())
    response = verified_client(segments.support_agent).post(
        api_url(f"conversations/{conversation.pk}/{kind}/"), body, content_type=content_type
    )
    assert response.status_code == status, response.content
    if status >= 400:
        assert isinstance(response.json()["detail"], str)
        assert (conversation.messages.count(), conversation.notes.count()) == before


def test_validation_errors_name_the_field(segments: Segments, verified_client: Any) -> None:
    conversation = segments.support_conversations[0]
    response = verified_client(segments.support_agent).post(
        api_url(f"conversations/{conversation.pk}/messages/"), {}, content_type="application/json"
    )
    assert response.json() == {
        "detail": "text: This field is required.",
        "errors": {"text": ["This field is required."]},
    }


def test_options_and_unsupported_methods_are_refused(segments: Segments, verified_client: Any) -> None:
    sue = verified_client(segments.support_agent)
    assert sue.options(api_url("conversations/")).status_code == 405
    assert sue.delete(api_url(f"conversations/{segments.support_conversations[0].pk}/")).status_code == 405
