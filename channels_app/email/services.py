"""Email channel writes: poll a mailbox, import what it holds, send replies.

Ingestion runs in three steps, each committed before the next, so a worker killed at any
point loses nothing and duplicates nothing:

1. store: the raw bytes of new messages, deduplicated by (channel, Message-ID or content
   hash), and the channel's last UID, in one transaction per fetch;
2. process: parse each stored message into a conversation message, or quarantine it;
3. mark: only then tell the IMAP server (mark seen, or move).

Every step picks up what an interrupted run left behind. One run at a time works a
channel: it holds the channel's lease and renews it at every step, so a run whose worker
died gives the channel up within a lease. Within a run the steps overlap batch by batch
(one batch parsed while the one before is imported and the next fetched; `_Processing`),
the imports still one after another in the order stored.
"""

from __future__ import annotations

import contextlib
import logging
import mailbox as mailbox_lib
import secrets
import time
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from channels_app.common.inbound import RAW_SCRUBBED_NOTE, Redactor, bound_cursor, email_raw_scrub, sniff
from channels_app.common.outbound import ReadyReply
from channels_app.email import parse as email_parse
from channels_app.email import selectors, smtp
from channels_app.email.imap import Mailbox, MailboxError, SizeInfo
from channels_app.email.models import EmailChannel, InboundEmail
from inbox import dlp, events
from inbox.models import Attachment, ChannelKind, Contact, Inbox, Message, Note
from inbox.services import (
    InboundMessage,
    attachment_file_store,
    contacts_for_handles,
    inbound_messages_record,
)

logger = logging.getLogger(__name__)

FETCH_BATCH_SIZE = 100
# A fetch, and each of the two processing batches a run has in hand (one parsed while the
# one before is imported), holds at most this many bytes of mail in memory, or one
# message when a single one is larger.
BATCH_BYTES = 8 * 1024 * 1024
# A message whose processing was started this often without finishing (a worker killed
# by it, or errors that kept repeating) is quarantined instead of blocking the channel.
MAX_PROCESS_ATTEMPTS = 5
MARK_BATCH_SIZE = 500

Status = InboundEmail.Status


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    imported: int = 0
    quarantined: int = 0
    # Stopped at the per-run limit with mail left: poll again.
    more: bool = False
    # Another worker was already working the channel; this run did nothing.
    busy: bool = False

    def add(self, other: IngestResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.imported += other.imported
        self.quarantined += other.quarantined

    def summary(self) -> str:
        return (
            f"stored {self.stored}, imported {self.imported}, quarantined {self.quarantined}, "
            f"already stored {self.duplicates}"
        )


class LeaseLost(Exception):
    """Another run took the channel over: this one stalled past its lease and stops."""


@dataclass(frozen=True)
class _Lease:
    channel_id: int
    token: str

    def renew(self) -> None:
        """Hold the channel for another lease, or raise LeaseLost. Called between steps,
        outside any transaction, so the renewal is visible at once."""
        if not EmailChannel.objects.filter(pk=self.channel_id, poll_lease=self.token).update(
            poll_lease_until=_lease_end()
        ):
            raise LeaseLost(f"email channel {self.channel_id} was taken over by another run")


def _lease_end() -> datetime:
    return timezone.now() + timedelta(seconds=settings.EMAIL_POLL_LEASE_SECONDS)


def _lease_take(channel_id: int) -> _Lease | None:
    token = secrets.token_hex(16)
    taken = (
        EmailChannel.objects.filter(pk=channel_id)
        .filter(Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=timezone.now()))
        .update(poll_lease=token, poll_lease_until=_lease_end())
    )
    return _Lease(channel_id, token) if taken else None


@contextlib.contextmanager
def _channel_lease(channel_id: int, *, wait: bool) -> Iterator[_Lease | None]:
    """One run at a time works a channel's mailbox and stored mail; None: another does.

    A lease on the channel row, not a session lock: it does not need one connection to
    live as long as the run, and a run whose worker died or hangs loses it when it runs
    out. The constraints still make two overlapping runs safe; the lease keeps them from
    fetching the same mail.
    """
    lease = _lease_take(channel_id)
    while lease is None and wait:
        time.sleep(1)
        lease = _lease_take(channel_id)
    try:
        yield lease
    finally:
        if lease is not None:
            # A database that is gone cannot be told; the lease then runs out by itself.
            with contextlib.suppress(DatabaseError):
                EmailChannel.objects.filter(pk=channel_id, poll_lease=lease.token).update(
                    poll_lease="", poll_lease_until=None
                )


# --- Polling ----------------------------------------------------------------------------


def email_channel_poll(*, channel_id: int, max_messages: int | None = None) -> IngestResult:
    """Fetch and import new mail of an enabled channel. Raises MailboxError on failure."""
    result = IngestResult()
    channel = selectors.email_channel_enabled(channel_id)
    if channel is None:
        logger.info("email poll skipped: channel %s is gone or disabled", channel_id)
        return result
    limit = max_messages or settings.EMAIL_POLL_MAX_MESSAGES
    with _channel_lease(channel.pk, wait=False) as lease:
        if lease is None:
            result.busy = True
            return result
        try:
            _poll(channel, lease, limit, result)
        except LeaseLost:
            # Everything up to the last step is committed; the run that took over goes on.
            logger.warning("email poll of channel %s stopped: its lease was taken over", channel.pk)
            result.busy = True
    return result


def _poll(channel: EmailChannel, lease: _Lease, limit: int, result: IngestResult) -> None:
    try:
        with Mailbox(channel) as mailbox, _Processing(channel, lease, result) as processing:
            _uidvalidity_check(channel, mailbox.uidvalidity)
            # Whatever an interrupted run left half done, first.
            processing.finish()
            _mark_done(channel, mailbox, [])
            uids, result.more = mailbox.uids_after(channel.last_uid, limit)
            known_uids: list[int] = []
            for start in range(0, len(uids), FETCH_BATCH_SIZE):
                lease.renew()
                fetched_known = _fetch_batch(channel, mailbox, uids[start : start + FETCH_BATCH_SIZE], result)
                processing.catch_up()
                # The UIDs the batch before found stored: catching up imported every row
                # that was pending then. This batch's may still be parsing.
                _mark_done(channel, mailbox, known_uids)
                known_uids = fetched_known
            processing.finish()
            _mark_done(channel, mailbox, known_uids)
    except MailboxError as exc:
        EmailChannel.objects.filter(pk=channel.pk).update(last_error=str(exc)[:500])
        raise
    EmailChannel.objects.filter(pk=channel.pk).update(last_polled_at=timezone.now(), last_error="")


def email_polls_claim_due() -> list[int]:
    """The channels to poll now, each claimed so a second beat tick does not queue it twice."""
    now = timezone.now()
    # A run whose worker died left its lease to run out: its channel is due at once, not
    # after the rest of its interval. The condition is checked again on the locked row, so
    # a run that renewed meanwhile keeps its lease.
    EmailChannel.objects.exclude(poll_lease="").filter(poll_lease_until__lt=now).update(
        poll_lease="", poll_lease_until=None, poll_enqueued_at=None
    )
    claimed: list[int] = []
    for channel in selectors.email_channels_due(now):
        if EmailChannel.objects.filter(pk=channel.pk, poll_enqueued_at=channel.poll_enqueued_at).update(
            poll_enqueued_at=now
        ):
            claimed.append(channel.pk)
    return claimed


def _uidvalidity_check(channel: EmailChannel, uidvalidity: int) -> None:
    if channel.uidvalidity == uidvalidity:
        return
    if channel.uidvalidity is not None:
        # Every UID seen so far now means nothing: start over from UID 1. The resync
        # re-reads only Message-IDs for mail already stored, so nothing is imported twice.
        logger.warning(
            "email channel %s: UIDVALIDITY changed from %s to %s; resyncing",
            channel.pk,
            channel.uidvalidity,
            uidvalidity,
        )
    with transaction.atomic():
        InboundEmail.objects.filter(channel=channel, marked_on_server=False).exclude(
            uidvalidity=uidvalidity
        ).update(marked_on_server=True)
        EmailChannel.objects.filter(pk=channel.pk).update(uidvalidity=uidvalidity, last_uid=0)
    channel.uidvalidity, channel.last_uid = uidvalidity, 0


def _size_groups(infos: list[SizeInfo]) -> Iterator[list[SizeInfo]]:
    group: list[SizeInfo] = []
    total = 0
    for info in infos:
        if group and total + info.size > BATCH_BYTES:
            yield group
            group, total = [], 0
        group.append(info)
        total += info.size
    if group:
        yield group


def _fetch_batch(channel: EmailChannel, mailbox: Mailbox, uids: list[int], result: IngestResult) -> list[int]:
    """Store the raw bytes of the batch's new messages; return the UIDs already stored.

    A UID names one message while UIDVALIDITY holds, so a UID stored before (a rerun of
    an interrupted batch) is not fetched again. Any other message is fetched and known by
    its bytes: a Message-ID it shares with a stored one proves nothing.
    """
    infos = mailbox.sizes(uids)
    stored = selectors.inbound_email_stored_uids(channel, mailbox.uidvalidity, [info.uid for info in infos])
    known_uids = sorted(stored)
    result.duplicates += len(known_uids)
    wanted = [info for info in infos if info.uid not in stored]
    oversize = [info for info in wanted if info.size > settings.EMAIL_MAX_MESSAGE_BYTES]
    for group in _size_groups([info for info in wanted if info.size <= settings.EMAIL_MAX_MESSAGE_BYTES]):
        bodies = mailbox.bodies([info.uid for info in group])
        rows = [
            _raw_row(channel, mailbox.uidvalidity, info.uid, bodies[info.uid])
            for info in group
            if info.uid in bodies
        ]
        known_uids += _raw_store(channel, rows, result)
    for info in oversize:
        header = mailbox.bodies([info.uid], header_only=True).get(info.uid, b"")
        row = _raw_row(channel, mailbox.uidvalidity, info.uid, header)
        row.size, row.truncated, row.status = info.size, True, Status.QUARANTINED
        row.reason = (
            f"The message is {info.size} bytes, over the {settings.EMAIL_MAX_MESSAGE_BYTES}-byte limit: "
            "only its header was stored; it stays on the mail server."
        )
        known_uids += _raw_store(channel, [row], result)
    # The position advances with the batch, so a crash repeats at most this batch, and the
    # repeat finds its messages already stored.
    EmailChannel.objects.filter(
        pk=channel.pk, uidvalidity=mailbox.uidvalidity, last_uid__lt=max(uids)
    ).update(last_uid=max(uids))
    channel.last_uid = max(channel.last_uid, max(uids))
    return known_uids


def _raw_row(channel: EmailChannel, uidvalidity: int | None, uid: int | None, raw: bytes) -> InboundEmail:
    return InboundEmail(
        channel=channel,
        dedup_key=email_parse.dedup_key(raw),
        uidvalidity=uidvalidity,
        uid=uid,
        raw=raw,
        size=len(raw),
    )


def _raw_store(channel: EmailChannel, rows: list[InboundEmail], result: IngestResult) -> list[int]:
    """Insert the rows whose key is new; return the UIDs of the others, already stored.

    A concurrent poll inserting the same key makes one insert a no-op (ON CONFLICT DO
    NOTHING), never a second row.
    """
    known = selectors.inbound_email_known_keys(channel, [row.dedup_key for row in rows])
    new: dict[str, InboundEmail] = {}
    duplicate_uids: list[int] = []
    for row in rows:
        if row.dedup_key in known or row.dedup_key in new:
            if row.uid is not None:
                duplicate_uids.append(row.uid)
        else:
            new[row.dedup_key] = row
    _raw_insert(list(new.values()))
    result.stored += len(new)
    result.duplicates += len(rows) - len(new)
    return duplicate_uids


# The batch statements' columns of an inbound email: (field, PostgreSQL type).
_RAW_COLUMNS = (
    ("channel_id", "bigint"),
    ("dedup_key", "text"),
    ("uidvalidity", "bigint"),
    ("uid", "bigint"),
    ("raw", "bytea"),
    ("size", "bigint"),
    ("truncated", "boolean"),
    ("status", "text"),
    ("reason", "text"),
    ("attempts", "int"),
    ("from_address", "text"),
    ("subject", "text"),
    ("marked_on_server", "boolean"),
)
_OUTCOME_COLUMNS = (
    ("id", "bigint"),
    ("status", "text"),
    ("reason", "text"),
    ("message_id", "bigint"),
    ("from_address", "text"),
    ("subject", "text"),
    ("processed_at", "timestamptz"),
)


def _unnest(rows: list[InboundEmail], columns: tuple[tuple[str, str], ...]) -> tuple[str, list[list[Any]]]:
    """`unnest(...)` of one array per column over the rows, and those arrays as its
    parameters: a batch read or written in one statement. Bytes go as binary (`%b`)."""
    arrays = ", ".join(f"{'%b' if kind == 'bytea' else '%s'}::{kind}[]" for _, kind in columns)
    return f"unnest({arrays})", [[getattr(row, name) for row in rows] for name, _ in columns]


def _raw_insert(rows: list[InboundEmail]) -> None:
    """Insert new raw rows in one statement, a key stored meanwhile skipped (ON CONFLICT DO
    NOTHING, as `bulk_create(ignore_conflicts=True)` would). Only the table and column
    names are interpolated, from the model."""
    if not rows:
        return
    source, params = _unnest(rows, _RAW_COLUMNS)
    names = ", ".join(name for name, _ in _RAW_COLUMNS)
    sql = (
        f"INSERT INTO {InboundEmail._meta.db_table} ({names}, received_at)"  # noqa: S608  # names from the model
        f" SELECT *, %s::timestamptz FROM {source} ON CONFLICT (channel_id, dedup_key) DO NOTHING"
    )
    with bound_cursor() as cursor:
        cursor.execute(sql, [timezone.now(), *params])


def _mark_done(channel: EmailChannel, mailbox: Mailbox, known_uids: list[int]) -> None:
    """Tell the server about messages whose import is committed, and only those."""
    if known_uids:
        mailbox.mark_done(known_uids)
    while rows := selectors.inbound_emails_unmarked(channel, mailbox.uidvalidity, MARK_BATCH_SIZE):
        mailbox.mark_done([uid for _, uid in rows])
        InboundEmail.objects.filter(pk__in=[pk for pk, _ in rows]).update(marked_on_server=True)


# --- Processing stored mail -------------------------------------------------------------


def _claim_pending(channel: EmailChannel, *, claimed_before: Collection[int]) -> list[int] | None:
    """Count an attempt on the next pending rows, committed before any of them is parsed.

    None when nothing is pending; an empty list when the rows looked at were all given up.
    """
    with transaction.atomic():
        candidates = list(
            InboundEmail.objects.select_for_update(skip_locked=True)
            .filter(channel=channel, status=Status.PENDING)
            .exclude(pk__in=claimed_before)
            .order_by("id")
            .values_list("pk", "size", "attempts")[:FETCH_BATCH_SIZE]
        )
        if not candidates:
            return None
        claimed: list[int] = []
        exhausted: list[int] = []
        total = 0
        for pk, size, attempts in candidates:
            if claimed and total + size > BATCH_BYTES:
                break
            (exhausted if attempts >= MAX_PROCESS_ATTEMPTS else claimed).append(pk)
            total += size
        InboundEmail.objects.filter(pk__in=exhausted).update(
            status=Status.QUARANTINED,
            processed_at=timezone.now(),
            reason=f"Processing was started {MAX_PROCESS_ATTEMPTS} times without finishing.",
        )
        InboundEmail.objects.filter(pk__in=claimed).update(attempts=F("attempts") + 1)
    return claimed


@dataclass(frozen=True)
class _Claimed:
    rows: list[InboundEmail]
    parsed: Future[dict[int, email_parse.ParsedEmail | None]]


def _parse_all(rows: list[InboundEmail]) -> dict[int, email_parse.ParsedEmail | None]:
    return {row.pk: _parse(row) for row in rows}


class _Processing:
    """A channel's stored mail, parsed and imported batch after batch, in the order stored.

    A batch is parsed in a thread of its own while this one imports the batch before it
    (and fetches the next): parsing is Python, importing mostly waiting on PostgreSQL, each
    about a third of a worker's time (measured 2026-12-07), so each hides the other. Imports
    stay in this thread, one after another, so a reply is threaded against every message
    stored before it. Rows claimed but not imported yet stay pending: a worker killed with
    a batch in hand leaves it to the next run, its attempt counted.
    """

    def __init__(self, channel: EmailChannel, lease: _Lease, result: IngestResult) -> None:
        self._channel, self._lease, self._result = channel, lease, result
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="email-parse")
        self._waiting: _Claimed | None = None

    def __enter__(self) -> _Processing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._parser.shutdown(wait=True, cancel_futures=True)

    def catch_up(self) -> None:
        """Claim every pending row, and import every batch claimed before this call; the
        last batch this call claims may still be parsing when it returns."""
        claimed_any = False
        while (claimed := self._claim()) is not None:
            self._import_waiting()
            self._waiting, claimed_any = claimed, True
        if not claimed_any:  # nothing new to overlap the batch in hand with
            self._import_waiting()

    def finish(self) -> None:
        """Import every pending row."""
        self.catch_up()
        self._import_waiting()

    def _claim(self) -> _Claimed | None:
        in_hand = [row.pk for row in self._waiting.rows] if self._waiting is not None else []
        while True:
            self._lease.renew()
            claimed = _claim_pending(self._channel, claimed_before=in_hand)
            if claimed is None:
                return None
            if claimed:
                break
        rows = list(InboundEmail.objects.filter(pk__in=claimed, status=Status.PENDING).order_by("id"))
        return _Claimed(rows, self._parser.submit(_parse_all, rows))

    def _import_waiting(self) -> None:
        if self._waiting is None:
            return
        waiting, self._waiting = self._waiting, None
        _batch_import(self._channel, waiting.rows, waiting.parsed.result(), self._result)


@dataclass(frozen=True)
class _Import:
    row: InboundEmail
    parsed: email_parse.ParsedEmail
    inbound: InboundMessage


def _batch_import(
    channel: EmailChannel,
    rows: list[InboundEmail],
    parsed: dict[int, email_parse.ParsedEmail | None],
    result: IngestResult,
) -> None:
    """Store a batch's parsed messages through the inbox's batch store, in one transaction
    with the rows' outcomes: a fixed number of statements per batch, not per message."""
    emails = [(row, email) for row in rows if (email := parsed[row.pk]) is not None]
    senders: dict[str, str] = {}
    for _, email in emails:
        senders.setdefault(email.from_address, email.from_name)
    # Contacts are shared by all inboxes. They are settled before the batch, in a short
    # transaction of their own that creates them in address order, so a batch never waits
    # on a contact another channel's batch is creating (no deadlock between channels).
    contacts = contacts_for_handles(channel_kind=ChannelKind.EMAIL, names=dict(sorted(senders.items())))
    provider_ids = _provider_message_ids(channel.inbox, emails)
    imports = {
        row.pk: _Import(row, email, _inbound(channel, email, provider_id, contacts[email.from_address]))
        for (row, email), provider_id in zip(emails, provider_ids, strict=True)
    }
    # The rules the ingest redacts by, for the raw copies of what it redacted.
    redact = dlp.inbound_redactor(inbox_id=channel.inbox_id)
    with transaction.atomic():
        # Rows a concurrent run got to first are left to it.
        mine = set(
            InboundEmail.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[row.pk for row in rows], status=Status.PENDING)
            .values_list("pk", flat=True)
        )
        done = [row for row in rows if row.pk in mine]
        _imports_store([imports[row.pk] for row in done if row.pk in imports], redact)
        for row in done:
            if row.status == Status.IMPORTED:
                result.imported += 1
            else:
                result.quarantined += 1
        _outcomes_write(done)


def _outcomes_write(rows: list[InboundEmail]) -> None:
    """Write the batch's outcomes on its rows, in one statement.

    Raw SQL because the ORM's `bulk_update` builds a CASE per field and row, and building
    it cost more than storing the batch's messages; an UPDATE from unnested arrays is one
    round trip. Only the table and column names are interpolated, from the model."""
    if not rows:
        return
    source, params = _unnest(rows, _OUTCOME_COLUMNS)
    names = [name for name, _ in _OUTCOME_COLUMNS]
    assignments = ", ".join(f"{name} = outcome.{name}" for name in names if name != "id")
    sql = (
        f"UPDATE {InboundEmail._meta.db_table} AS inbound SET {assignments}"  # noqa: S608  # names from the model
        f" FROM {source} AS outcome({', '.join(names)}) WHERE inbound.id = outcome.id"
    )
    with bound_cursor() as cursor:
        cursor.execute(sql, params)


def _inbound(
    channel: EmailChannel, parsed: email_parse.ParsedEmail, provider_id: str, contact: Contact
) -> InboundMessage:
    return InboundMessage(
        inbox=channel.inbox,
        channel_kind=ChannelKind.EMAIL,
        handle=parsed.from_address,
        sender_name=parsed.from_name or parsed.from_address,
        text=parsed.text,
        html=parsed.html,
        provider_message_id=provider_id,
        subject=parsed.subject,
        # An email threads by its headers, else by its subject among its sender's open
        # conversations; with neither, it starts a conversation of its own.
        references=tuple(parsed.references),
        subject_key=email_parse.subject_key,
        continue_open_conversation=False,
        contact=contact,
    )


def _provider_message_ids(
    inbox: Inbox, emails: list[tuple[InboundEmail, email_parse.ParsedEmail]]
) -> list[str]:
    """Each message's id in the inbox: its Message-ID, unless another mail already holds
    that one (stored, or earlier in the batch). Then it is kept under its digest (never put
    in a header, so nobody threads into it), instead of being taken for the other one."""
    taken = selectors.email_message_ids_taken(
        inbox=inbox, message_ids=[email.message_id for _, email in emails if email.message_id]
    )
    ids = []
    for row, email in emails:
        if email.message_id and email.message_id not in taken:
            taken.add(email.message_id)
            ids.append(email.message_id)
        else:
            ids.append(row.dedup_key)
    return ids


def _imports_store(imports: list[_Import], redact: Redactor | None) -> None:
    """Store the messages together; if the database refuses the batch, it is rolled back
    whole and stored message by message, each in a savepoint of its own: the bad one is
    quarantined alone, with its reason, and the others are stored.

    Only problems of a message itself quarantine it. A database that is down raises, and
    the whole batch is retried later."""
    try:
        with transaction.atomic():
            _imports_record(imports, redact)
        return
    except (DataError, IntegrityError) as exc:
        if len(imports) == 1:
            _quarantine_refused(imports[0].row, exc)
            return
        logger.warning(
            "emails %s to %s: stored one by one after %s",
            imports[0].row.pk,
            imports[-1].row.pk,
            type(exc).__name__,
        )
    for each in imports:
        try:
            with transaction.atomic():
                _imports_record([each], redact)
        except (DataError, IntegrityError) as exc:
            _quarantine_refused(each.row, exc)


def _quarantine_refused(row: InboundEmail, exc: Exception) -> None:
    logger.warning("email %s refused by the database: %s", row.pk, type(exc).__name__)
    row.message = None
    row.status, row.reason = (
        Status.QUARANTINED,
        f"The database refused the message ({type(exc).__name__}).",
    )


def _imports_record(imports: list[_Import], redact: Redactor | None) -> None:
    recorded = inbound_messages_record([each.inbound for each in imports])
    attachments: list[Attachment] = []
    for each, stored in zip(imports, recorded, strict=True):
        each.row.message = stored.message
        if stored.created:
            attachments += _attachments_build(stored.message, each.parsed.attachments)
            if stored.refused_conversation_id is not None:
                _thread_refusal_note(stored.message, each.parsed.from_address, stored.refused_conversation_id)
        scrubbed = _raw_scrub(each.row, each.parsed, redact)
        each.row.status, each.row.reason = (
            Status.IMPORTED,
            "\n".join([*each.parsed.notes, *([RAW_SCRUBBED_NOTE] if scrubbed else [])]),
        )
    if attachments:
        Attachment.objects.bulk_create(attachments)


def _parse(row: InboundEmail) -> email_parse.ParsedEmail | None:
    """The parsed message, or None with the row quarantined and the reason on it."""
    row.processed_at = timezone.now()
    try:
        parsed = email_parse.parse(bytes(row.raw), max_attachment_bytes=settings.EMAIL_MAX_ATTACHMENT_BYTES)
    except email_parse.Unparseable as exc:
        row.status, row.reason = Status.QUARANTINED, str(exc)
        return None
    except Exception as exc:  # a parser bug on hostile input must not stop the channel
        logger.exception("email %s: the parser failed", row.pk)
        row.status, row.reason = Status.QUARANTINED, f"The parser failed: {type(exc).__name__}."
        return None
    row.from_address, row.subject = parsed.from_address, parsed.subject
    return parsed


def _raw_scrub(row: InboundEmail, parsed: email_parse.ParsedEmail, redact: Redactor | None) -> bool:
    """Redaction at ingest kept a card's original out of the message (stored otherwise than
    parsed, or a subject it changed); the mail as it came still holds it, and the row its
    subject. Both are scrubbed the same way, in the transaction that stored the message. The
    bytes are written alone: the batch's update leaves them alone."""
    message = row.message
    if message is None or redact is None:
        return False
    row.subject = redact(parsed.subject)
    if message.text == parsed.text and message.html == parsed.html and row.subject == parsed.subject:
        return False
    InboundEmail.objects.filter(pk=row.pk).update(raw=email_raw_scrub(bytes(row.raw), redact=redact))
    logger.info("inbound email scrubbed", extra={"inbound_email_id": row.pk, "channel_id": row.channel_id})
    return True


def _thread_refusal_note(message: Message, sender: str, refused_conversation_id: int) -> None:
    """Tell the agents why a reply by its headers started a conversation of its own."""
    note = Note.objects.create(
        conversation=message.conversation,
        text=(
            f"Not joined to conversation #{refused_conversation_id}, which this email's "
            f"In-Reply-To/References point to: its sender {sender} is not that conversation's "
            "contact. Anyone who has seen a Message-ID can write those headers."
        ),
    )
    events.publish_after_commit(
        inbox_id=message.inbox_id,
        event="note.created",
        payload={"conversation_id": message.conversation_id, "note_id": note.pk},
    )


def _attachments_build(message: Message, attachments: list[email_parse.ParsedAttachment]) -> list[Attachment]:
    """The message's attachment rows, unsaved; their bytes are stored by digest."""
    rows = []
    for attachment in attachments:
        content_type, extension = sniff(attachment.content)
        name, digest = attachment_file_store(content=attachment.content, extension=extension)
        rows.append(
            Attachment(
                message=message,
                file=name,
                filename=attachment.filename,
                content_type=content_type,
                size=len(attachment.content),
                sha256=digest,
            )
        )
    return rows


def inbound_emails_retry(*, ids: list[int]) -> IngestResult:
    """Process quarantined messages again (after a fix, or a parser upgrade).

    A message stored without its body (over the size limit) stays quarantined: its bytes
    were never fetched.
    """
    result = IngestResult()
    retried = InboundEmail.objects.filter(pk__in=ids, status=Status.QUARANTINED, truncated=False)
    channel_ids = set(retried.values_list("channel_id", flat=True))
    retried.update(status=Status.PENDING, attempts=0)
    for channel in EmailChannel.objects.select_related("inbox").filter(pk__in=channel_ids):
        with _channel_lease(channel.pk, wait=False) as lease:
            # A running poll processes them itself; otherwise the next poll will.
            if lease is not None:
                with _Processing(channel, lease, result) as processing:
                    processing.finish()
    return result


def email_file_import(*, channel: EmailChannel, path: Path) -> IngestResult:
    """Import an mbox file or a maildir directory into the channel's inbox, idempotently."""
    result = IngestResult()
    box: mailbox_lib.Mailbox[Any] = (
        mailbox_lib.Maildir(path, factory=None, create=False)
        if path.is_dir()
        else mailbox_lib.mbox(path, factory=None, create=False)
    )
    with _channel_lease(channel.pk, wait=True) as lease:
        assert lease is not None  # noqa: S101  # waited for
        _file_import(channel, lease, box, result)
    return result


def _file_import(
    channel: EmailChannel, lease: _Lease, box: mailbox_lib.Mailbox[Any], result: IngestResult
) -> None:
    rows: list[InboundEmail] = []
    with _Processing(channel, lease, result) as processing:
        for key in box.iterkeys():
            rows.append(_raw_row(channel, None, None, box.get_bytes(key)))
            if len(rows) >= FETCH_BATCH_SIZE or sum(row.size for row in rows) > BATCH_BYTES:
                _raw_store(channel, rows, result)
                processing.catch_up()
                rows = []
        _raw_store(channel, rows, result)
        processing.finish()


# --- Sending replies --------------------------------------------------------------------


def email_message_id(message: Message, domain: str) -> str:
    """Our Message-ID for an outbound message: stable across retries, and unguessable, so
    nobody can thread their mail into a conversation by guessing our ids."""
    token = salted_hmac("channels_app.email.message-id", str(message.pk)).hexdigest()[:24]
    return f"portcullis.{message.pk}.{token}@{domain}"


def _reply_subject(subject: str) -> str:
    subject = " ".join(subject.split()) or "Your message"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def _reply_build(message: Message, channel: EmailChannel, context: selectors.ReplyContext) -> EmailMessage:
    local, _, domain = channel.email_address.rpartition("@")
    email = EmailMessage(policy=policy.SMTP)
    email["From"] = Address(display_name=" ".join(message.inbox.name.split()), username=local, domain=domain)
    email["To"] = context.recipient
    email["Subject"] = _reply_subject(message.conversation.subject)
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = f"<{email_message_id(message, domain)}>"
    if context.in_reply_to:
        email["In-Reply-To"] = f"<{context.in_reply_to}>"
    if context.references:
        email["References"] = " ".join(f"<{reference}>" for reference in context.references)
    email.set_content(message.text)
    return email


class EmailReplies:
    """The email channel in the outbound pipeline (channels_app.common.outbound): a reply
    goes out over SMTP, threaded under the customer's last message."""

    inline = False

    def reply_prepare(self, message: Message) -> ReadyReply | str:
        channel = selectors.email_channel_for_inbox(message.inbox_id)
        if channel is None or not channel.enabled:
            return "The inbox's email channel is missing or disabled."
        context = selectors.email_reply_context(message)
        if context.recipient is None:
            return "The contact has no email address."
        email = _reply_build(message, channel, context)
        recipient = context.recipient

        def send(idempotency_key: str) -> str:
            # Mail's own idempotency key is its Message-ID, derived from the message: a retried
            # send carries the same one, and receiving servers and clients drop the repeat.
            smtp.send(channel, email, recipient)
            return str(email["Message-ID"]).strip("<>")

        return ReadyReply(recipient=recipient, text_limit=None, send=send)


# --- Secrets ----------------------------------------------------------------------------


def channel_secrets_rotate() -> int:
    """Re-encrypt every stored secret under the newest key; returns the channels rewritten.

    Reading decrypts with any configured key, saving encrypts with the first.
    """
    with transaction.atomic():
        channels = list(EmailChannel.objects.select_for_update())
        for channel in channels:
            channel.save(update_fields=["imap_password", "smtp_password"])
    return len(channels)
