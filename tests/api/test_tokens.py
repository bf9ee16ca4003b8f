"""API tokens: scoped to inboxes and to read or read/write, expiring, hashed at rest."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import roles, tokens
from accounts.models import ApiToken, User
from audit.models import AccessEvent, SecurityEvent
from inbox.models import Invoice, Message, Note
from tests.api.conftest import api_url, token_client
from tests.conftest import start_session
from tests.inbox.conftest import Segments, grant_inbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def both_inboxes(segments: Segments, service_account: User) -> User:
    """The service account holds grants on both segments: only its token narrows it."""
    grant_inbox(segments.support, service_account)
    grant_inbox(segments.billing, service_account)
    return service_account


def ids(response: Any) -> set[int]:
    return {row["id"] for row in response.json()["results"]}


def refusal(response: Any) -> str:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    detail: str = response.json()["detail"]
    return detail


# --- Scope ------------------------------------------------------------------------------


def test_token_reaches_only_its_inboxes(segments: Segments, both_inboxes: User, issue_token: Any) -> None:
    client = token_client(issue_token(both_inboxes, [segments.support]).plaintext)
    assert ids(client.get(api_url("conversations/"))) == {c.pk for c in segments.support_conversations}
    assert ids(client.get(api_url("inboxes/"))) == {segments.support.pk}
    outside = segments.billing_conversations[0]
    for path in (
        f"conversations/{outside.pk}/",
        f"conversations/{outside.pk}/messages/",
        f"contacts/{outside.contact_id}/",
    ):
        assert client.get(api_url(path)).status_code == 404, path
    inside = segments.support_conversations[0]
    assert client.get(api_url(f"conversations/{inside.pk}/")).status_code == 200
    token = ApiToken.objects.get()
    assert AccessEvent.objects.filter(api_token_id=token.pk, object_id=inside.pk, allowed=True).exists()


def test_token_narrows_but_never_widens_the_account(
    segments: Segments, service_account: User, issue_token: Any
) -> None:
    # The token names the billing inbox, but the account holds no grant there.
    client = token_client(issue_token(service_account, [segments.billing]).plaintext)
    assert ids(client.get(api_url("conversations/"))) == set()
    assert client.get(api_url(f"conversations/{segments.billing_conversations[0].pk}/")).status_code == 404


def test_read_only_token_cannot_write(segments: Segments, both_inboxes: User, issue_token: Any) -> None:
    client = token_client(issue_token(both_inboxes, [segments.support], can_write=False).plaintext)
    conversation = segments.support_conversations[0]
    for kind in ("messages", "notes"):
        response = client.post(
            api_url(f"conversations/{conversation.pk}/{kind}/"),
            {"text": "sync"},
            content_type="application/json",
        )
        assert response.status_code == 403
        assert response.json()["detail"]
    assert conversation.messages.count() == 1 and not conversation.notes.exists()


def test_read_write_token_replies_as_its_service_account(
    segments: Segments, both_inboxes: User, issue_token: Any
) -> None:
    client = token_client(issue_token(both_inboxes, [segments.support], can_write=True).plaintext)
    conversation = segments.support_conversations[0]
    response = client.post(
        api_url(f"conversations/{conversation.pk}/messages/"),
        {"text": "From the CRM"},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert Message.objects.get(pk=response.json()["id"]).sender_user_id == both_inboxes.pk
    # No CSRF token is needed: a bearer token is not sent by a browser on its own.
    note = client.post(
        api_url(f"conversations/{conversation.pk}/notes/"), {"text": "n"}, content_type="application/json"
    )
    assert note.status_code == 201 and Note.objects.filter(conversation=conversation).count() == 1
    # Still only within its inboxes.
    outside = segments.billing_conversations[0]
    response = client.post(
        api_url(f"conversations/{outside.pk}/messages/"), {"text": "x"}, content_type="application/json"
    )
    assert response.status_code == 404


def test_token_never_sees_billing_data(segments: Segments, service_account: User, issue_token: Any) -> None:
    service_account.groups.add(*segments.billing_agent.groups.all())
    grant_inbox(segments.billing, service_account)
    contact = segments.billing_conversations[0].contact
    Invoice.objects.create(contact=contact, number="INV-9", amount_cents=5, issued_at="2026-01-01")
    client = token_client(issue_token(service_account, [segments.billing]).plaintext)
    body = client.get(api_url(f"contacts/{contact.pk}/")).json()
    assert body["id"] == contact.pk and "invoices" not in body


# --- Refusals ---------------------------------------------------------------------------


def test_expired_token_is_refused(segments: Segments, both_inboxes: User, issue_token: Any) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert (
        refusal(token_client(issued.plaintext).get(api_url("conversations/")))
        == "This API token has expired."
    )
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.API_TOKEN_REFUSED)
    assert event.user_id == both_inboxes.pk
    assert event.detail == {"reason": "expired", "token_id": issued.token.pk}


def test_revoked_token_is_refused(segments: Segments, both_inboxes: User, issue_token: Any) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    client = token_client(issued.plaintext)
    assert client.get(api_url("conversations/")).status_code == 200
    assert tokens.tokens_revoke(tokens=ApiToken.objects.all(), by=None) == 1
    assert refusal(client.get(api_url("conversations/"))) == "This API token has been revoked."
    assert tokens.tokens_revoke(tokens=ApiToken.objects.all(), by=None) == 0  # already revoked
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.API_TOKEN_REVOKED).count() == 1


def test_token_of_a_person_is_refused(segments: Segments, both_inboxes: User, issue_token: Any) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    User.objects.filter(pk=both_inboxes.pk).update(is_service_account=False)
    assert refusal(token_client(issued.plaintext).get(api_url("inboxes/"))) == (
        "This API token's account may not use the API."
    )
    with pytest.raises(tokens.InvalidToken):
        tokens.token_issue(
            name="x",
            user=segments.support_agent,
            inbox_ids=[],
            can_write=False,
            expires_at=timezone.now() + timedelta(days=1),
        )


@pytest.mark.parametrize("change", [{"is_active": False}, {"locked_at": timezone.now()}])
def test_token_of_a_disabled_account_is_refused(
    segments: Segments, both_inboxes: User, issue_token: Any, change: dict[str, Any]
) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    User.objects.filter(pk=both_inboxes.pk).update(**change)
    assert refusal(token_client(issued.plaintext).get(api_url("inboxes/")))


def test_wrong_secret_and_unknown_id_read_the_same(
    segments: Segments, both_inboxes: User, issue_token: Any
) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    lookup_id = issued.token.lookup_id
    wrong_secret = f"pcl_{lookup_id}_{'A' * 43}"
    unknown_id = f"pcl_{'0' * 16}_{issued.plaintext.split('_', 2)[2]}"
    assert refusal(token_client(wrong_secret).get(api_url("inboxes/"))) == "Invalid API token."
    assert refusal(token_client(unknown_id).get(api_url("inboxes/"))) == "Invalid API token."
    events = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.API_TOKEN_REFUSED)
    # A wrong secret must not be attributed, or the event would confirm the id exists.
    assert [(e.user_id, e.detail) for e in events] == [(None, {"reason": "unknown"})] * 2


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer pcl_abc",
        "Bearer pcl_0123456789abcdef_short",
        "Bearer xyz_0123456789abcdef_" + "A" * 43,
        "Bearer pcl_0123456789ABCDEF_" + "A" * 43,
        "Bearer pcl_0123456789abcdef_" + "A" * 43 + " extra",
        "Bearer pcl_0123456789abcdef_" + "A" * 42 + "é",
        "bearer\tpcl_0123456789abcdef_" + "A" * 42 + "!",
    ],
)
def test_malformed_tokens_are_refused(segments: Segments, header: str) -> None:
    client = Client(headers={"authorization": header})
    detail = refusal(client.get(api_url("conversations/")))
    assert detail.startswith("Malformed API token")
    assert SecurityEvent.objects.get(kind=SecurityEvent.Kind.API_TOKEN_REFUSED).detail == {
        "reason": "malformed"
    }


def test_bad_token_never_falls_back_to_the_session(segments: Segments) -> None:
    client = Client()
    start_session(client, segments.support_agent, verified=True)
    assert client.get(api_url("conversations/")).status_code == 200
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer pcl_0123456789abcdef_" + "A" * 43
    assert refusal(client.get(api_url("conversations/"))) == "Invalid API token."


def test_other_schemes_without_a_session_are_401(segments: Segments) -> None:
    response = Client(headers={"authorization": "Basic dXNlcjpwYXNz"}).get(api_url("conversations/"))
    assert response.status_code == 401


def test_token_opens_no_agent_page(segments: Segments, both_inboxes: User, issue_token: Any) -> None:
    client = token_client(issue_token(both_inboxes, [segments.support]).plaintext)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/admin/").status_code == 302


# --- Storage ----------------------------------------------------------------------------


def test_only_a_hash_of_the_secret_is_stored(
    segments: Segments, both_inboxes: User, issue_token: Any
) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    prefix, lookup_id, secret = issued.plaintext.split("_", 2)
    assert prefix == "pcl" and lookup_id == issued.token.lookup_id and len(secret) >= 32
    token_client(issued.plaintext).get(api_url("inboxes/"))
    token_client(issued.plaintext[:-1] + ("B" if issued.plaintext[-1] != "B" else "C")).get(
        api_url("inboxes/")
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        stored_tokens = repr(cursor.fetchall())
        cursor.execute("SELECT kind, detail::text, user_agent FROM audit_securityevent")
        stored_events = repr(cursor.fetchall())
    assert secret not in stored_tokens and secret not in stored_events
    assert issued.token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert issued.token.secret_hash in stored_tokens


def test_last_used_is_written_at_most_once_a_minute(
    segments: Segments, both_inboxes: User, issue_token: Any
) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    client = token_client(issued.plaintext)
    assert ApiToken.objects.get().last_used_at is None
    client.get(api_url("inboxes/"))
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        client.get(api_url("inboxes/"))
    assert not [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "accounts_apitoken"')]
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    client.get(api_url("inboxes/"))
    assert ApiToken.objects.get().last_used_at > first  # type: ignore[operator]


def test_issue_refuses_bad_expiry(service_account: User) -> None:
    for expires_at in (timezone.now() - timedelta(minutes=1), timezone.now() + timedelta(days=400)):
        with pytest.raises(tokens.InvalidToken):
            tokens.token_issue(
                name="x", user=service_account, inbox_ids=[], can_write=False, expires_at=expires_at
            )
    assert not ApiToken.objects.exists()


# --- Admin ------------------------------------------------------------------------------


@pytest.fixture
def administrator_client(make_user: Any, verified_client: Any) -> Client:
    client: Client = verified_client(make_user(roles.ADMINISTRATOR, is_staff=True, is_superuser=True))
    return client


def _add_form(user: User, inbox_ids: list[int], expires: Any) -> dict[str, Any]:
    return {
        "name": "Billing CRM",
        "user": user.pk,
        "inboxes": inbox_ids,
        "can_write": "on",
        "expires_at_0": expires.strftime("%Y-%m-%d"),
        "expires_at_1": expires.strftime("%H:%M:%S"),
    }


def test_admin_issues_a_token_shown_once(
    segments: Segments, both_inboxes: User, administrator_client: Client
) -> None:
    expires = timezone.now() + timedelta(days=30)
    response = administrator_client.post(
        "/admin/accounts/apitoken/add/", _add_form(both_inboxes, [segments.support.pk], expires), follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "not be shown again" in str(m)]
    assert len(shown) == 1
    plaintext = shown[0].rsplit(" ", 1)[1]
    token = ApiToken.objects.get()
    assert token.user == both_inboxes and token.can_write
    assert list(token.inboxes.all()) == [segments.support]
    assert plaintext.startswith(f"pcl_{token.lookup_id}_")
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.API_TOKEN_ISSUED, user=both_inboxes).exists()
    # The token works, and the admin never shows its secret again.
    assert token_client(plaintext).get(api_url("inboxes/")).status_code == 200
    secret = plaintext.split("_", 2)[2]
    listing = administrator_client.get("/admin/accounts/apitoken/")
    change = administrator_client.get(f"/admin/accounts/apitoken/{token.pk}/change/")
    assert listing.status_code == change.status_code == 200
    for page in (listing, change):
        assert secret not in page.content.decode()
    assert "Billing CRM" in listing.content.decode() and segments.support.name in listing.content.decode()


def test_admin_refuses_a_person_and_a_past_expiry(
    segments: Segments, service_account: User, administrator_client: Client
) -> None:
    future = timezone.now() + timedelta(days=1)
    person = administrator_client.post(
        "/admin/accounts/apitoken/add/", _add_form(segments.support_agent, [segments.support.pk], future)
    )
    past = administrator_client.post(
        "/admin/accounts/apitoken/add/",
        _add_form(service_account, [segments.support.pk], timezone.now() - timedelta(days=1)),
    )
    assert person.status_code == past.status_code == 200  # the form again, with its errors
    assert person.context["adminform"].form.errors.keys() == {"user"}
    assert past.context["adminform"].form.errors.keys() == {"expires_at"}
    assert not ApiToken.objects.exists()


def test_admin_revokes_and_cannot_widen_or_delete(
    segments: Segments, both_inboxes: User, issue_token: Any, administrator_client: Client
) -> None:
    issued = issue_token(both_inboxes, [segments.support])
    client = token_client(issued.plaintext)
    assert client.get(api_url("inboxes/")).status_code == 200
    changed = administrator_client.post(
        f"/admin/accounts/apitoken/{issued.token.pk}/change/",
        {"name": "wider", "inboxes": [segments.support.pk, segments.billing.pk], "can_write": "on"},
    )
    assert changed.status_code == 302
    token = ApiToken.objects.get()
    assert token.name == "CRM sync" and not token.can_write and token.inboxes.count() == 1
    assert administrator_client.post(f"/admin/accounts/apitoken/{token.pk}/delete/").status_code == 403
    response = administrator_client.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    assert ApiToken.objects.get().revoked_at is not None
    assert refusal(client.get(api_url("inboxes/"))) == "This API token has been revoked."
