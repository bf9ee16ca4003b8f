"""Webhook throughput without loss: a delivery to a known channel is one statement, a
drained batch costs a number of statements that does not grow with its size, and the
batch store keeps every guarantee the one-by-one path had (stored once, nothing lost, a
bad event failing alone, a failure mid-batch leaving everything to do again)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, close_old_connections, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import SecurityEvent
from channels_app.models import InboundEvent, MetaChannel, VerificationMode
from channels_app.webhooks import services as social_services
from inbox.models import Contact, ContactIdentity, Conversation, Message
from tests.channels.webhooks.conftest import drain, meta_post, meta_signature, whatsapp_text

pytestmark = pytest.mark.django_db

Status = InboundEvent.Status


def sqls(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries]


def deliver(
    client: Client, channel: MetaChannel, count: int, *, tag: str, senders: int, prefix: str = "1555"
) -> None:
    for i in range(count):
        sender = f"{prefix}{i % senders:07d}"
        response = meta_post(
            client, channel, whatsapp_text(channel, wamid=f"wamid.{tag}{i}", sender=sender, text=f"{tag} {i}")
        )
        assert response.status_code == 200


def drain_statements(channel: MetaChannel) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        result = social_services.inbound_events_drain(channel_id=channel.pk)
    assert not result.more
    return sqls(captured)


# --- Intake -----------------------------------------------------------------------------


def test_a_delivery_to_a_known_channel_is_one_statement_and_a_replay_too(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    assert meta_post(client, channel, whatsapp_text(channel, wamid="wamid.first")).status_code == 200
    payload = whatsapp_text(channel, wamid="wamid.second")
    with CaptureQueriesContext(connection) as captured:
        assert meta_post(client, channel, payload).status_code == 200
    [statement] = sqls(captured)
    assert "INSERT INTO" in statement and "ON CONFLICT" in statement
    with CaptureQueriesContext(connection) as captured:
        assert meta_post(client, channel, payload).status_code == 200
    assert len(captured) == 1
    assert InboundEvent.objects.filter(event_key="wamid:wamid.second").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_intake_statement_is_prepared_once_a_connection_has_run_it_a_few_times(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    def prepared() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                [f'%INSERT INTO "{InboundEvent._meta.db_table}"%'],
            )
            return [row[0] for row in cursor.fetchall()]

    channel = meta_channel()
    queued = f"channels_app:drain-queued:{channel.pk}"
    connection.close()  # a connection of its own: none prepared yet
    assert prepared() == []
    cache.set(queued, 1, timeout=60)  # no worker takes them
    deliver(client, channel, 6, tag="prep", senders=2)
    # Planned once for this connection, not for every delivery; its body bound as bytes.
    [statement] = prepared()
    assert "ON CONFLICT" in statement and "$4" in statement
    assert InboundEvent.objects.filter(channel=channel).count() == 6
    cache.delete(queued)


def test_a_rotated_secret_is_never_checked_against_the_copy_in_memory(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    assert meta_post(client, channel, whatsapp_text(channel, wamid="wamid.before")).status_code == 200
    channel.app_secret = "the-rotated-app-secret"
    channel.save()
    # Signed with the old secret, which the process's copy of the channel still holds: the
    # store sees the channel changed, the check is made again on the new row, and refuses.
    old = json.dumps(whatsapp_text(channel, wamid="wamid.old-secret")).encode()
    response = meta_post(client, channel, old)
    assert response.status_code == 403
    assert not InboundEvent.objects.filter(event_key="wamid:wamid.old-secret").exists()
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_REFUSED).count() == 1
    new = json.dumps(whatsapp_text(channel, wamid="wamid.new-secret")).encode()
    assert (
        meta_post(client, channel, new, signature=meta_signature(new, "the-rotated-app-secret")).status_code
        == 200
    )
    assert InboundEvent.objects.filter(event_key="wamid:wamid.new-secret").exists()


@pytest.mark.parametrize("change", ["disabled", "monitor_to_enforce"])
def test_a_channel_changed_behind_the_copy_in_memory_is_read_again(
    client: Client, meta_channel: Callable[..., MetaChannel], change: str
) -> None:
    monitor = change == "monitor_to_enforce"
    channel = meta_channel(
        verification_mode=VerificationMode.MONITOR if monitor else VerificationMode.ENFORCE
    )
    assert meta_post(client, channel, whatsapp_text(channel, wamid="wamid.cached")).status_code == 200
    # A queryset update: no signal, nothing in this process is told.
    if monitor:
        MetaChannel.objects.filter(pk=channel.pk).update(verification_mode=VerificationMode.ENFORCE)
        response = meta_post(
            client, channel, whatsapp_text(channel, wamid="wamid.after"), signature="sha256=00"
        )
    else:
        MetaChannel.objects.filter(pk=channel.pk).update(enabled=False)
        response = meta_post(client, channel, whatsapp_text(channel, wamid="wamid.after"))
    assert response.status_code == 403
    assert not InboundEvent.objects.filter(event_key="wamid:wamid.after").exists()


# --- Draining ---------------------------------------------------------------------------


def test_a_drained_batch_costs_the_same_statements_whatever_its_size(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    small, large = meta_channel(), meta_channel()
    # New customers (contacts and conversations created)...
    deliver(client, small, 3, tag="s", senders=3)
    deliver(client, large, 60, tag="l", senders=25, prefix="1666")
    first = drain_statements(small)
    assert len(drain_statements(large)) == len(first)
    # ...then known ones (their open conversations found and woken).
    deliver(client, small, 3, tag="s2-", senders=3)
    deliver(client, large, 60, tag="l2-", senders=25, prefix="1666")
    known = drain_statements(small)
    assert len(drain_statements(large)) == len(known)
    # No savepoint per message: the drain's transaction (a savepoint inside the test's),
    # one for the run of events, one for the batch store.
    assert sum(sql.startswith("SAVEPOINT") for sql in known) == 3
    assert Message.objects.filter(inbox=large.inbox).count() == 120
    assert Conversation.objects.filter(inbox=large.inbox).count() == 25
    assert not InboundEvent.objects.exclude(status=Status.PROCESSED).exists()
    # Stored in the order they came.
    texts = list(Message.objects.filter(inbox=large.inbox).order_by("pk").values_list("text", flat=True))
    assert texts == [f"l {i}" for i in range(60)] + [f"l2- {i}" for i in range(60)]


def test_duplicates_inside_one_batch_are_stored_once(
    client: Client, meta_channel: Callable[..., MetaChannel], caplog: pytest.LogCaptureFixture
) -> None:
    channel = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.D1", text="one"))
    # Another delivery (another key) carrying the same message again, and a new one.
    both = whatsapp_text(channel, wamid="wamid.D1", text="one")
    both["entry"].append(whatsapp_text(channel, wamid="wamid.D2", text="two")["entry"][0])
    meta_post(client, channel, both)
    assert InboundEvent.objects.count() == 2
    result = social_services.inbound_events_drain(channel_id=channel.pk)
    assert result.processed == 2
    assert list(Message.objects.order_by("pk").values_list("provider_message_id", flat=True)) == [
        "wamid.D1",
        "wamid.D2",
    ]
    assert Conversation.objects.count() == 1 and Contact.objects.count() == 1
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {Status.PROCESSED}
    # Told apart by the batch store itself, not by falling back to one event at a time.
    assert "applied one by one" not in caplog.text


def test_a_replay_across_batches_is_stored_once_in_the_same_conversation(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    deliver(client, channel, 3, tag="r", senders=1)
    drain(channel)
    replay = whatsapp_text(channel, wamid="wamid.r1", sender="15550000000", text="r 1")
    replay["entry"].append(
        whatsapp_text(channel, wamid="wamid.r9", sender="15550000000", text="new")["entry"][0]
    )
    meta_post(client, channel, replay)
    assert drain(channel) == 1
    assert Message.objects.filter(provider_message_id="wamid.r1").count() == 1
    assert Message.objects.count() == 4
    assert Conversation.objects.get().messages.count() == 4


def test_a_bad_event_inside_a_batch_fails_alone_with_its_reason(
    client: Client, meta_channel: Callable[..., MetaChannel], caplog: pytest.LogCaptureFixture
) -> None:
    channel = meta_channel()
    deliver(client, channel, 4, tag="b", senders=2)
    # Hostile, in the middle of the batch: a sender longer than any handle column holds.
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.bad", sender="9" * 400, text="bad"))
    deliver(client, channel, 4, tag="c", senders=2)
    result = social_services.inbound_events_drain(channel_id=channel.pk)
    assert result.processed == 8 and not result.more
    # The batch store refused the run; its events were then applied one at a time.
    assert "applied one by one after DataError" in caplog.text
    bad = InboundEvent.objects.get(event_key="wamid:wamid.bad")
    assert bad.status == Status.FAILED and "The database refused it (DataError)" in bad.reason
    assert InboundEvent.objects.filter(status=Status.PROCESSED).count() == 8
    texts = list(Message.objects.order_by("pk").values_list("text", flat=True))
    assert texts == [f"b {i}" for i in range(4)] + [f"c {i}" for i in range(4)]
    # Retried after a fix it goes through; nothing else is stored twice.
    social_services.inbound_events_retry(ids=[bad.pk])
    assert drain(channel) == 0  # still refused: the reason stays
    assert Message.objects.count() == 8


@pytest.fixture
def killed_before_messages_insert() -> Iterator[list[int]]:
    """Terminates this test's database connection (from another one, as a crashed server
    or a failover would) just before the drain inserts its messages."""
    killed: list[int] = []

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not killed and sql.startswith('INSERT INTO "inbox_message"'):
            killed.append(1)
            db = settings.DATABASES["default"]
            with psycopg.connect(
                host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=True
            ) as other:
                # Waits until the backend is gone: the next statement meets a dead connection.
                other.execute(
                    "SELECT pg_terminate_backend(%s, 5000)", [connection.connection.info.backend_pid]
                )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield killed


@pytest.mark.django_db(transaction=True)
def test_a_failure_mid_batch_loses_nothing_and_the_retry_stores_each_once(
    client: Client, meta_channel: Callable[..., MetaChannel], killed_before_messages_insert: list[int]
) -> None:
    channel = meta_channel()
    # As if a drain were queued already: the deliveries (committed at once, outside a test
    # transaction) queue none, so a worker running for other tests leaves them to this one.
    queued = f"channels_app:drain-queued:{channel.pk}"
    cache.set(queued, 1, timeout=60)
    deliver(client, channel, 20, tag="f", senders=5, prefix="1777")
    with pytest.raises(OperationalError):
        social_services.inbound_events_drain(channel_id=channel.pk)
    assert killed_before_messages_insert == [1]
    close_old_connections()
    connection.close()
    messages = Message.objects.filter(inbox=channel.inbox)
    events = InboundEvent.objects.filter(channel=channel)
    # Rolled back whole: no message, no contact, every event still to do (its try counted).
    assert not messages.exists() and not ContactIdentity.objects.filter(handle__startswith="1777").exists()
    assert list(events.values_list("status", "attempts").distinct()) == [(Status.RECEIVED, 1)]
    assert drain(channel) == 20
    assert messages.count() == 20 and Conversation.objects.filter(inbox=channel.inbox).count() == 5
    assert set(events.values_list("status", flat=True)) == {Status.PROCESSED}
    cache.delete(queued)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_is_stored_while_a_drain_holds_its_channel(
    client: Client, meta_channel: Callable[..., MetaChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = meta_channel()
    queued = f"channels_app:drain-queued:{channel.pk}"
    cache.set(queued, 1, timeout=60)  # no worker takes these: this test drains them
    deliver(client, channel, 1, tag="before", senders=1)
    holding, release = threading.Event(), threading.Event()
    apply_run = social_services._apply_run

    def held(*args: Any, **kwargs: Any) -> Any:
        holding.set()
        release.wait(10)
        return apply_run(*args, **kwargs)

    monkeypatch.setattr(social_services, "_apply_run", held)

    def drainer() -> None:
        try:
            social_services.inbound_events_drain(channel_id=channel.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=drainer)
    thread.start()
    try:
        assert holding.wait(5)
        # Blocked behind the drain's lock, the insert would fail here instead of waiting.
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        deliver(client, channel, 1, tag="during", senders=1)
    finally:
        release.set()
        thread.join(10)
        cache.delete(queued)
    assert InboundEvent.objects.filter(event_key="wamid:wamid.during0").exists()
    assert Message.objects.filter(inbox=channel.inbox, text="before 0").exists()
