"""Faults during ingestion: each one ends with every message stored exactly once."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import LazySettings
from django.db import DatabaseError, connection
from django.utils import timezone

from channels_app.email import parse as email_parse
from channels_app.email import services, tasks
from channels_app.email.imap import Mailbox, MailboxError
from channels_app.models import EmailChannel, InboundEmail
from inbox.models import Message
from tests.channels.conftest import MailAccount, allow_port, mail, wait_for


class CuttingProxy:
    """A loopback TCP relay to the IMAP server that can drop a connection mid-response."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        # Server-to-client bytes after which the next connection is cut, once.
        self.cut_after: int | None = None
        self.cuts = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        limit, self.cut_after = self.cut_after, None
        relayed = 0
        with client, upstream, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while True:
                for key, _ in selector.select():
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is upstream and limit is not None:
                        if relayed + len(data) >= limit:
                            client.sendall(data[: limit - relayed])
                            self.cuts += 1
                            return
                        relayed += len(data)
                    key.data.sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(mail_account: MailAccount, settings: LazySettings) -> Iterator[CuttingProxy]:
    relay = CuttingProxy(mail_account.server.port)
    allow_port(settings, relay.port)
    yield relay
    relay.close()


def stored_once(channel: EmailChannel, expected: int) -> None:
    """Every message has one stored copy, one conversation message, and is marked seen."""
    rows = InboundEmail.objects.filter(channel=channel)
    assert rows.count() == expected
    assert set(rows.values_list("status", flat=True)) == {InboundEmail.Status.IMPORTED}
    messages = Message.objects.filter(inbox=channel.inbox)
    assert messages.count() == expected
    assert len(set(messages.values_list("provider_message_id", flat=True))) == expected


def big_mail(number: int) -> bytes:
    # About 1 MB each, so a fetch takes several reads and the cut lands inside it.
    return mail(subject=f"Report {number}", body=f"report {number}\r\n" + ("x" * 998 + "\r\n") * 1000)


@pytest.mark.django_db
def test_connection_dropped_mid_fetch(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], proxy: CuttingProxy
) -> None:
    uids = mail_account.append(*(big_mail(n) for n in range(12)))
    channel = make_channel(mail_account, imap_port=proxy.port)
    proxy.cut_after = 10 * 1024 * 1024
    with pytest.raises(MailboxError) as raised:
        services.email_channel_poll(channel_id=channel.pk)
    assert raised.value.transient and proxy.cuts == 1
    channel.refresh_from_db()
    assert "connection" in channel.last_error
    # What was fetched before the cut is stored (raw, not yet imported); nothing is marked.
    stored = InboundEmail.objects.filter(channel=channel).count()
    assert 0 < stored < 12
    assert not any("\\Seen" in flags for flags in mail_account.flags().values())

    result = services.email_channel_poll(channel_id=channel.pk)
    assert result.stored == 12 - stored and result.imported == 12
    stored_once(channel, 12)
    assert all("\\Seen" in mail_account.flags()[uid] for uid in uids)
    channel.refresh_from_db()
    assert channel.last_error == "" and channel.last_uid == max(uids)


FAIL_ON_INSERT = """
CREATE OR REPLACE FUNCTION portcullis_test_fail() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'worker killed'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER portcullis_test_fail BEFORE INSERT ON {table}
FOR EACH ROW EXECUTE FUNCTION portcullis_test_fail();
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("table", "raw_kept"),
    [
        # Dies before the raw bytes commit: the mailbox is untouched, the rerun fetches again.
        ("channels_app_inboundemail", False),
        # Dies after the raw bytes are stored, before the messages commit.
        ("inbox_message", True),
    ],
)
def test_worker_dies_between_fetch_and_commit(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], table: str, raw_kept: bool
) -> None:
    uids = mail_account.append(*(mail(subject=f"Question {n}") for n in range(5)))
    channel = make_channel(mail_account)
    with connection.cursor() as cursor:
        cursor.execute(FAIL_ON_INSERT.format(table=table))
    try:
        with pytest.raises(DatabaseError, match="worker killed"):
            tasks.email_poll.apply(args=[channel.pk], throw=True)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER portcullis_test_fail ON {table}")
    assert InboundEmail.objects.filter(channel=channel).count() == (5 if raw_kept else 0)
    assert not Message.objects.filter(inbox=channel.inbox).exists()
    assert not any("\\Seen" in flags for flags in mail_account.flags().values())

    tasks.email_poll.apply(args=[channel.pk], throw=True)
    stored_once(channel, 5)
    assert all("\\Seen" in mail_account.flags()[uid] for uid in uids)


@pytest.mark.django_db(transaction=True)
def test_two_polls_at_once(mail_account: MailAccount, make_channel: Callable[..., EmailChannel]) -> None:
    mail_account.append(*(mail(subject=f"Order {n}", sender=f"buyer{n % 7}@example.org") for n in range(60)))
    channel = make_channel(mail_account)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def poll() -> None:
        try:
            start.wait()
            tasks.email_poll.apply(args=[channel.pk], throw=True)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored_once(channel, 60)


@pytest.mark.django_db
def test_uidvalidity_change_resyncs_without_duplicates(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    mail_account.create_folder("Support")
    first = [mail(subject="One"), mail(subject="Two"), mail(subject="No id", message_id="")]
    # A message without a Message-ID is deduplicated by its content hash.
    first[2] = first[2].replace(b"Message-ID: <", b"X-No-Id: <")
    mail_account.append(*first, folder="Support")
    channel = make_channel(mail_account, imap_folder="Support")
    services.email_channel_poll(channel_id=channel.pk)
    channel.refresh_from_db()
    old_validity = channel.uidvalidity
    assert InboundEmail.objects.filter(channel=channel).count() == 3

    # The folder is rebuilt: same mail, new UIDs from 1, a new UIDVALIDITY, and two new messages.
    conn = mail_account.connect()
    conn.delete('"Support"')
    conn.create('"Support"')
    conn.logout()
    new_uids = mail_account.append(*first, mail(subject="Three"), mail(subject="Four"), folder="Support")
    result = services.email_channel_poll(channel_id=channel.pk)
    channel.refresh_from_db()
    assert channel.uidvalidity != old_validity and channel.last_uid == max(new_uids)
    assert result.stored == 2 and result.duplicates == 3
    stored_once(channel, 5)
    assert all("\\Seen" in flags for flags in mail_account.flags("Support").values())


@pytest.mark.django_db
def test_rerunning_a_poll_creates_nothing(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    mail_account.append(*(mail(subject=f"Hi {n}") for n in range(3)))
    channel = make_channel(mail_account)
    services.email_channel_poll(channel_id=channel.pk)
    # As if the position were lost: every message is seen again, none is stored again.
    EmailChannel.objects.filter(pk=channel.pk).update(last_uid=0)
    again = services.email_channel_poll(channel_id=channel.pk)
    assert again.stored == 0 and again.duplicates == 3
    stored_once(channel, 3)


@pytest.mark.django_db
def test_disabled_channel_is_not_polled(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], settings: Any
) -> None:
    mail_account.append(mail())
    channel = make_channel(mail_account, enabled=False)
    assert services.email_channel_poll(channel_id=channel.pk).stored == 0
    assert services.email_polls_claim_due() == []
    EmailChannel.objects.filter(pk=channel.pk).update(enabled=True)
    assert services.email_polls_claim_due() == [channel.pk]
    # Claimed: the next beat tick inside the interval queues nothing more.
    assert services.email_polls_claim_due() == []
    assert not InboundEmail.objects.exists()


@pytest.mark.django_db
def test_large_mailboxes_are_worked_in_bounded_steps(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    uids = mail_account.append(*(mail(subject=f"Backlog {n}") for n in range(7)))
    channel = make_channel(mail_account)
    # The UID search walks the mailbox in windows, never in one unbounded answer.
    with Mailbox(channel, search_window=2) as mailbox:
        assert mailbox.uids_after(0, limit=3) == (uids[:3], True)
        assert mailbox.uids_after(uids[2], limit=10) == (uids[3:], False)
        assert mailbox.uids_after(uids[-1], limit=10) == ([], False)
    # One poll imports at most its share and says more is waiting; the task then queues
    # the next one.
    first = services.email_channel_poll(channel_id=channel.pk, max_messages=3)
    assert (first.stored, first.more) == (3, True)
    assert services.email_channel_poll(channel_id=channel.pk, max_messages=3).more
    last = services.email_channel_poll(channel_id=channel.pk, max_messages=3)
    assert (last.stored, last.more) == (1, False)
    stored_once(channel, 7)


@pytest.mark.django_db
def test_a_message_that_keeps_killing_the_worker_is_quarantined(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    # Stored, then processing was started five times and never finished (the worker died
    # each time); behind them waits an ordinary message.
    for n, attempts in enumerate([5, 5, 0]):
        raw = mail(subject=f"Stored {n}")
        InboundEmail.objects.create(
            channel=channel, dedup_key=email_parse.dedup_key(raw), raw=raw, size=len(raw), attempts=attempts
        )
    result = services.email_channel_poll(channel_id=channel.pk)
    assert (result.imported, InboundEmail.objects.filter(status="quarantined").count()) == (1, 2)
    assert InboundEmail.objects.get(subject="Stored 2").status == "imported"


class SilentServer:
    """A loopback listener that accepts connections and never answers: an IMAP server
    that hangs, so a poll can be caught in the middle."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connected = threading.Event()
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.clients.append(client)
            self.connected.set()

    def close(self) -> None:
        self.listener.close()
        for client in self.clients:
            client.close()


@pytest.mark.django_db(transaction=True)
def test_a_killed_poll_is_taken_over_when_its_lease_runs_out(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], settings: LazySettings
) -> None:
    silent = SilentServer()
    allow_port(settings, silent.port)
    # Polled hourly: the beat would not come back to it for an hour.
    channel = make_channel(mail_account, imap_port=silent.port, poll_interval_seconds=3600)
    EmailChannel.objects.filter(pk=channel.pk).update(poll_enqueued_at=timezone.now())
    mail_account.append(mail())
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "CHANNEL_ALLOW_PRIVATE_HOSTS": "127.0.0.1/32",
        "CHANNEL_ALLOW_PRIVATE_PORTS": str(silent.port),
        "EMAIL_POLL_LEASE_SECONDS": "3",
    }
    code = (
        "import django; django.setup(); from channels_app.email import services; "
        f"services.email_channel_poll(channel_id={channel.pk})"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        assert silent.connected.wait(timeout=30), "the worker never connected"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
        silent.close()
    channel.refresh_from_db()
    assert channel.poll_lease and channel.poll_lease_until is not None
    # The server is back; the dead run's lease is still live, so nobody runs a second poll.
    EmailChannel.objects.filter(pk=channel.pk).update(imap_port=mail_account.server.port)
    assert services.email_channel_poll(channel_id=channel.pk).busy
    assert services.email_polls_claim_due() == []
    # Once the lease has run out, the next beat tick queues the channel, whatever its interval.
    assert wait_for(services.email_polls_claim_due, timeout=10) == [channel.pk]
    result = services.email_channel_poll(channel_id=channel.pk)
    assert not result.busy and result.imported == 1
    channel.refresh_from_db()
    assert channel.poll_lease == "" and channel.poll_lease_until is None


@pytest.mark.django_db
def test_a_poll_that_lost_its_lease_stops_at_its_next_step(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    mail_account.append(*(mail(subject=f"Step {n}") for n in range(3)))
    channel = make_channel(mail_account)
    fetch = services._fetch_batch

    def stalled_fetch(*args: Any) -> list[int]:
        # As if this run stalled past its lease and another run took the channel over.
        EmailChannel.objects.filter(pk=channel.pk).update(poll_lease="another-run")
        return fetch(*args)

    monkeypatch.setattr(services, "_fetch_batch", stalled_fetch)
    result = services.email_channel_poll(channel_id=channel.pk)
    # What the step fetched is stored; nothing after it ran, the other run's lease stands.
    assert result.busy and result.stored == 3 and result.imported == 0
    assert EmailChannel.objects.get(pk=channel.pk).poll_lease == "another-run"
    assert not any("\\Seen" in flags for flags in mail_account.flags().values())
