"""'Who accessed' a contact: the accesses to it and its conversations, within the viewer's
segment — a supervisor learns nothing about a contact or a read outside it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from audit.models import AccessEvent
from inbox.models import Contact, Conversation, Inbox
from tests.audit.test_alerts import people  # noqa: F401  # fixture used by name
from tests.inbox.conftest import make_conversation

pytestmark = pytest.mark.django_db


def page(contact: Contact) -> str:
    return f"/admin/audit/alert/contact/{contact.pk}/accesses/"


def read(user: User, conversation: Conversation) -> None:
    AccessEvent.objects.create(
        user_id=user.pk,
        object_type="inbox.conversation",
        object_id=conversation.pk,
        action="view",
        allowed=True,
    )


def test_a_supervisor_sees_who_read_a_contact_in_their_segment_and_nothing_outside(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
) -> None:
    support = make_conversation(Inbox.objects.get(name="Support"), handle="carol@example.com")
    billing = make_conversation(Inbox.objects.get(name="Billing"), handle="dan@example.com")
    for _ in range(3):
        read(people["alice"], support)
    read(people["olga"], billing)

    client = verified_client(people["sam"])
    assert (
        page(support.contact)
        in client.get(f"/admin/inbox/contact/{support.contact.pk}/change/").content.decode()
    )
    with CaptureQueriesContext(connection) as few:
        answer = client.get(page(support.contact))
    assert answer.status_code == 200
    body = answer.content.decode()
    assert "alice" in body and body.count("view") >= 3
    assert "olga" not in body
    # The page's cost does not grow with the rows it shows (user and device come annotated).
    for _ in range(20):
        read(people["olga"], support)
    with CaptureQueriesContext(connection) as many:
        assert "olga" in client.get(page(support.contact)).content.decode()
    assert len(many) <= len(few) + 1  # the look itself is an access event too

    # A contact of another segment is not found — and who read it stays unknown.
    assert client.get(page(billing.contact)).status_code == 404
    assert client.get("/admin/audit/alert/contact/999999/accesses/").status_code == 404
    # An agent has no admin at all.
    assert verified_client(people["alice"]).get(page(support.contact)).status_code in (302, 403, 404)
