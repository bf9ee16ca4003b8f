"""Contacts resolved from senders' handles (inbox.services.contacts_for_handles): two writers
meeting a new handle at the same moment end with one contact, on real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from inbox import services
from inbox.models import ChannelKind, Contact, ContactIdentity

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        (count,) = cursor.fetchone()
    return bool(count)


def test_two_writers_meeting_a_new_handle_share_the_first_ones_contact() -> None:
    handle, results = "+15550100", {}
    inserted, release = threading.Event(), threading.Event()

    def resolve(name: str) -> Contact:
        contacts = services.contacts_for_handles(channel_kind=ChannelKind.SMS, names={handle: name})
        return contacts[handle]

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = resolve("Ada")
                inserted.set()
                release.wait(10)  # holds its uncommitted identity: the second waits on it
        finally:
            connection.close()

    def second() -> None:
        try:
            inserted.wait(10)
            results["second"] = resolve("Ada L.")
        finally:
            connection.close()

    writers = [threading.Thread(target=first), threading.Thread(target=second)]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + 10
    while not _waiting_on_a_lock() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _waiting_on_a_lock(), "the second writer's insert did not wait on the first's"
    release.set()
    for writer in writers:
        writer.join(10)

    assert results["first"].pk == results["second"].pk
    assert list(Contact.objects.values_list("pk", "name")) == [(results["first"].pk, "Ada")]
    assert ContactIdentity.objects.get(handle=handle).contact_id == results["first"].pk


def test_known_and_new_handles_are_resolved_together() -> None:
    known = services.contact_for_handle(channel_kind=ChannelKind.SMS, handle="+15550101", name="Bea")
    contacts = services.contacts_for_handles(
        channel_kind=ChannelKind.SMS, names={"+15550101": "ignored", "+15550102": "Cy"}
    )
    assert contacts["+15550101"] == known
    assert contacts["+15550102"].name == "Cy" and contacts["+15550102"].pk != known.pk
    assert ContactIdentity.objects.get(handle="+15550102").contact == contacts["+15550102"]
