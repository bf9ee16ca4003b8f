"""Writes for the webhook channels, the same for every provider (Telegram, WhatsApp,
Messenger, Instagram, SMS and voice through Twilio); what differs is asked of the provider
(channels_app.webhooks.contract, found in registry.PROVIDERS).

Inbound runs in two steps, each committed before the next:

1. intake (the webhook view, or a getUpdates poll): the delivery's origin is proven, then
   its raw body is stored as an InboundEvent keyed by the provider's id, and the provider
   is answered. Nothing else happens while the provider waits.
2. processing (a task): the event becomes contacts, conversations, messages, attachments,
   delivery statuses and call records in the channel's inbox, idempotently. Unknown kinds
   are kept and marked; an event that keeps failing is marked failed, never retried forever;
   a status for a message we never sent is ignored after UNKNOWN_STATUS_TRIES tries.

Outbound replies leave through the common pipeline (channels_app.common.outbound); the
provider's part is `WebhookReplies`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from django.conf import settings
from django.core.cache import cache
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from audit.services import Kind, Severity, client_ip, security_event_record
from channels_app.common.inbound import (
    RAW_SCRUBBED_NOTE,
    attachment_build,
    bound_cursor,
    sniff,
    webhook_body_scrub,
)
from channels_app.common.outbound import ReadyReply
from channels_app.common.provider_http import ProviderError, TooLarge
from channels_app.common.retry import backoff_ceiling
from channels_app.webhooks import selectors
from channels_app.webhooks.contract import Answer, HookRequest, WebhookProvider
from channels_app.webhooks.items import (
    Delivery,
    FetchedMedia,
    InboundText,
    Item,
    Malformed,
    MediaRef,
    Skipped,
    StatusChange,
)
from channels_app.webhooks.models import InboundEvent, SocialChannel, VerificationMode
from channels_app.webhooks.registry import PROVIDERS
from inbox import dlp
from inbox.models import Attachment, ChannelKind, Inbox, Message
from inbox.services import (
    InboundMessage,
    inbound_messages_record,
    message_delivery_announce,
    message_delivery_set,
)

logger = logging.getLogger(__name__)

Endpoint = InboundEvent.Endpoint
EventStatus = InboundEvent.Status
Delivered = Message.DeliveryStatus

# An event whose processing was started this often without finishing is marked failed
# instead of blocking its channel.
MAX_PROCESS_ATTEMPTS = 5
# A status naming no message of ours waits (the reply's send may not have committed yet);
# after this many tries (about two minutes at the default backoff) it is taken for a
# message we never sent, one sent from the provider's own console say, and ignored. At
# most MAX_PROCESS_ATTEMPTS: past that an event is taken for one that kills the worker.
UNKNOWN_STATUS_TRIES = 5
# Events applied in one transaction: one commit (and one lock of the channel) per batch.
PROCESS_BATCH = 200
# An event that came this long ago and is due but still untouched lost its drain task (the
# broker failed after the commit): beat's requeue drains its channel again. Far above a
# normal drain's delay (seconds, or DRAIN_KEY_SECONDS behind a lost "queued" mark), so a
# channel that is merely busy is not drained twice.
STALLED_AFTER = timedelta(minutes=5)
# How long "a drain is queued" is remembered: a lost task delays the next one at most this.
DRAIN_KEY_SECONDS = 30
# A channel's drains start at most this often. Under load a drain began as soon as the one
# before ended, with ~25 events at 340 deliveries/s, and a batch's own statements (~20,
# 11 ms of the worker's CPU) cost more than its events: 1.3 ms of the worker an event,
# against 0.37 ms draining a backlog (tests/benchmarks/webhooks.py). Spaced, a busy
# channel's batches grow instead; a quiet channel's delivery is still drained at once.
DRAIN_INTERVAL_SECONDS = 0.25


# --- Intake -----------------------------------------------------------------------------


class Refused(Exception):
    """The delivery did not prove its origin: 403, nothing stored."""


def _hook_detail(request: HttpRequest, channel_id: int, provider: str, reason: str) -> dict[str, object]:
    return {"provider": provider, "channel_id": channel_id, "path": request.path[:200], "reason": reason}


def _refuse(request: HttpRequest, channel_id: int, provider: str, reason: str) -> NoReturn:
    security_event_record(
        kind=Kind.WEBHOOK_REFUSED,
        request=request,
        severity=Severity.WARNING,
        detail=_hook_detail(request, channel_id, provider, reason),
    )
    raise Refused


def delivery_type_refused(*, request: HttpRequest, channel_id: int, provider: str, expected: str) -> None:
    """A POST not of the provider's content type, refused before the channel is looked up or
    the body read: the same answer whatever the channel and signature, so it tells a caller
    nothing. Logged with what a refusal records, but no SecurityEvent row: the caller has
    proven nothing yet, and a row per request would let anyone fill the table."""
    reason = f"Content-Type {(request.content_type or '')[:100]!r} is not {expected}"
    detail = {**_hook_detail(request, channel_id, provider, reason), "ip_address": client_ip(request)}
    logger.warning(
        "webhook refused: %s channel %s: %s", provider, channel_id, reason, extra={"webhook": detail}
    )


def _no_channel(request: HttpRequest, channel_id: int, provider: WebhookProvider) -> NoReturn:
    _refuse(request, channel_id, provider.name, "no such enabled channel")


def _channel_or_refuse(provider: WebhookProvider, channel_id: int, request: HttpRequest) -> SocialChannel:
    channel = selectors.channel_enabled(provider.model, channel_id)
    if channel is None:
        _no_channel(request, channel_id, provider)
    return channel


def _channel_enabled(
    provider_name: str | None, channel_id: int
) -> tuple[WebhookProvider, SocialChannel] | None:
    """The channel, as its provider's model, if it is still enabled and feeds an inbox of its
    kind."""
    provider = PROVIDERS.get(provider_name or "")
    channel = selectors.channel_enabled(provider.model, channel_id) if provider is not None else None
    return (provider, channel) if provider is not None and channel is not None else None


def _channel_enabled_by_id(channel_id: int) -> tuple[WebhookProvider, SocialChannel] | None:
    """An event's channel, known by its id only."""
    return _channel_enabled(selectors.channel_provider(channel_id), channel_id)


def _channel_for_inbox(inbox_id: int) -> tuple[WebhookProvider, SocialChannel] | None:
    found = selectors.channel_of_inbox(inbox_id)
    return _channel_enabled(*found) if found is not None else None


def _verdict(channel: SocialChannel, problem: str | None, request: HttpRequest) -> bool:
    """Refuse (raise) or accept a delivery; returns whether it was verified. In monitor mode
    a failed check is accepted, and recorded as what enforce mode would have refused."""
    if problem is None:
        return True
    if channel.verification_mode == VerificationMode.ENFORCE:
        _refuse(request, channel.pk, channel.provider, problem)
    security_event_record(
        kind=Kind.WEBHOOK_UNVERIFIED,
        request=request,
        severity=Severity.WARNING,
        detail={
            **_hook_detail(request, channel.pk, channel.provider, problem),
            "mode": VerificationMode.MONITOR,
        },
    )
    return False


def delivery_store(
    channel: SocialChannel,
    endpoint: str,
    delivery: Delivery,
    body: bytes,
    verified: bool,
    note: str = "",
    *,
    fingerprint: str | None = None,
) -> bool | None:
    """Store a proven delivery once, keyed by the provider's ids, and queue its processing;
    False for a replay of one already stored (answered like the first). With a fingerprint
    (selectors.channel_fingerprint_sql), stored only while the channel is still enabled and
    as it was when the delivery was checked: None when it is not (nothing stored).

    One statement (committed by itself in autocommit: no transaction round trips), which is
    the whole database cost of a delivery whose channel this process knows."""
    model = PROVIDERS[channel.provider].model
    social, event = SocialChannel._meta.db_table, InboundEvent._meta.db_table
    sql = f"""
        WITH channel AS (
            SELECT "{social}".id FROM "{social}"
            JOIN "{model._meta.db_table}" ON "{model._meta.db_table}".socialchannel_ptr_id = "{social}".id
            JOIN "{Inbox._meta.db_table}" ON "{Inbox._meta.db_table}".id = "{social}".inbox_id
            WHERE "{social}".id = %(channel_id)s
                AND (%(fingerprint)s::text IS NULL
                    OR ("{social}".enabled AND {selectors.channel_fingerprint_sql(model)} = %(fingerprint)s))
        ), stored AS (
            INSERT INTO "{event}" (
                channel_id, endpoint, event_key, body, verified, verification_note, status, reason,
                attempts, next_attempt_at, received_at, processed_at
            )
            SELECT id, %(endpoint)s, %(event_key)s, %(body)b, %(verified)s, %(note)s, %(received)s, '',
                0, NULL, %(now)s, NULL
            FROM channel
            ON CONFLICT (channel_id, event_key) DO NOTHING
            RETURNING id
        )
        SELECT (SELECT count(*) FROM channel), (SELECT count(*) FROM stored)
    """  # noqa: S608  # only table names are interpolated, from the models; values are parameters
    with bound_cursor() as cursor:
        cursor.execute(
            sql,
            {
                "channel_id": channel.pk,
                "fingerprint": fingerprint,
                "endpoint": endpoint,
                "event_key": delivery.event_key(body),
                "body": body,
                "verified": verified,
                "note": note[:200],
                "received": EventStatus.RECEIVED,
                "now": timezone.now(),
            },
        )
        found, stored = cursor.fetchone()
    if not found:
        return None
    if stored:
        transaction.on_commit(lambda: process_later(channel.pk))
    return bool(stored)


def subscription_verify(
    *, provider: WebhookProvider, channel_id: int, params: dict[str, str], request: HttpRequest
) -> str:
    """A GET subscription check (Meta's): the challenge to echo, or Refused. Never accepted
    unverified, whatever the mode: there is nothing to keep."""
    channel = _channel_or_refuse(provider, channel_id, request)
    challenge = provider.subscription_challenge(channel, params)
    if challenge is None:
        _refuse(request, channel_id, provider.name, "the subscription check does not match")
    return challenge


# Channels as this process's intake last read them, with their fingerprints, so that a
# delivery costs one statement: the store re-checks the fingerprint, and a channel changed
# since (disabled, secret rotated, mode switched) is read again before anything is stored.
# Only enabled channels are kept; the bound stops nothing but a runaway.
_INTAKE_CHANNELS_MAX = 10_000
_intake_channels: dict[tuple[str, int], tuple[SocialChannel, str]] = {}


def _intake_channel(
    provider: WebhookProvider, channel_id: int, *, fresh: bool
) -> tuple[SocialChannel, str] | None:
    key = (provider.name, channel_id)
    known = None if fresh else _intake_channels.get(key)
    if known is not None:
        return known
    _intake_channels.pop(key, None)
    found = selectors.channel_enabled_with_fingerprint(provider.model, channel_id)
    if found is not None:
        if len(_intake_channels) >= _INTAKE_CHANNELS_MAX:
            _intake_channels.clear()
        _intake_channels[key] = found
    return found


def delivery_accept(
    *, provider: WebhookProvider, channel_id: int, hook: HookRequest, request: HttpRequest
) -> Answer:
    """Prove a delivery's origin (Refused, 403), read it far enough to key it (Malformed,
    400), store it once, and return what the provider is answered.

    Checked first against the channel as this process knows it; a failed check, or a
    channel changed since (the store finds another fingerprint), is done again on the
    channel read afresh. Nothing is refused, accepted or stored on a stale copy."""
    for fresh in (False, True):
        found = _intake_channel(provider, channel_id, fresh=fresh)
        if found is None:
            _no_channel(request, channel_id, provider)
        channel, fingerprint = found
        problem = provider.verify(channel, hook)
        if problem is not None and not fresh:
            continue
        verified = _verdict(channel, problem, request)
        delivery = provider.read(hook)
        stored = delivery_store(
            channel, hook.endpoint, delivery, hook.body, verified, problem or "", fingerprint=fingerprint
        )
        if stored is not None:
            return provider.answer(channel, hook, delivery)
    # Changed again between its fresh read and the store: the provider delivers it again.
    _refuse(request, channel_id, provider.name, "the channel changed while the delivery was checked")


# --- Processing -------------------------------------------------------------------------


class NotYet(Exception):
    """The event names something not stored yet (a status for a reply whose send has not
    committed): the event is tried again later."""


@dataclass
class Processed:
    handled: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # A message of the event was stored redacted (inbound DLP): its raw copy must follow.
    redacted: bool = False


@dataclass
class DrainResult:
    processed: int = 0
    # A full batch was taken: there may be more, drain again.
    more: bool = False
    # The earliest time an event put back for a retry is due.
    retry_at: datetime | None = None


@dataclass(frozen=True)
class _Prepared:
    event: InboundEvent
    items: list[Item]
    media: dict[str, FetchedMedia]


def _drain_key(channel_id: int) -> str:
    return f"channels_app:drain-queued:{channel_id}"


def process_later(channel_id: int) -> None:
    """Queue a drain of the channel's events, unless one is already queued: under load one
    task then takes many events, instead of one task per delivery."""
    from channels_app.webhooks import tasks as social_tasks

    if cache.add(_drain_key(channel_id), 1, timeout=DRAIN_KEY_SECONDS):
        social_tasks.social_events_drain.delay(channel_id)


def _drain_started_key(channel_id: int) -> str:
    return f"channels_app:drain-started:{channel_id}"


def inbound_events_drain_started(*, channel_id: int) -> float:
    """A drain task is starting: 0 when it goes on, and deliveries stored from now on queue
    another one (called before the drain looks for events, so none committed in between is
    missed). Or, when the channel's last drain started less than DRAIN_INTERVAL_SECONDS ago,
    the seconds until it may: the task comes back then, and the mark that a drain is queued
    stays, so deliveries meanwhile queue none."""
    now = time.time()
    last = cache.get(_drain_started_key(channel_id))
    if last is not None and 0 <= now - float(last) < DRAIN_INTERVAL_SECONDS:
        return float(last) + DRAIN_INTERVAL_SECONDS - now
    cache.set(_drain_started_key(channel_id), now, timeout=DRAIN_KEY_SECONDS)
    cache.delete(_drain_key(channel_id))
    return 0.0


def inbound_events_drain(*, channel_id: int, now: datetime | None = None) -> DrainResult:
    """Process one batch of a channel's due events, oldest first, in one transaction.

    The channel row is locked while a batch is applied, so two drains of one channel never
    interleave a conversation's messages. An event that must wait (media provider down, a
    status for a reply not committed yet) is put back with a time to retry; one that keeps
    failing is marked failed. Raises only database errors worth retrying."""
    now = now or timezone.now()
    result = DrainResult()
    due = selectors.inbound_events_due(channel_id, now=now, limit=PROCESS_BATCH)
    if not due:
        return result
    found = _channel_enabled_by_id(channel_id)
    if found is None:
        InboundEvent.objects.filter(pk__in=[pk for pk, _ in due], status=EventStatus.RECEIVED).update(
            status=EventStatus.FAILED,
            reason="The channel was disabled or its inbox changed before processing; retry from the admin.",
            processed_at=now,
        )
        result.more = len(due) == PROCESS_BATCH
        return result
    provider, channel = found
    # An event tried before goes alone: if it is what kills the worker, it takes no other
    # event down with it. The attempt is counted (and committed) before the work starts.
    if due[0][1] > 0:
        batch = [due[0][0]]
    else:
        batch = [pk for pk, _ in itertools.takewhile(lambda row: row[1] == 0, due)]
    result.more = len(due) > len(batch) or len(due) == PROCESS_BATCH
    InboundEvent.objects.filter(pk__in=batch, status=EventStatus.RECEIVED).update(attempts=F("attempts") + 1)
    prepared = [
        ready
        for event in InboundEvent.objects.filter(pk__in=batch, status=EventStatus.RECEIVED).order_by("pk")
        if (ready := _prepare(provider, channel, event, result, now)) is not None
    ]
    if not prepared:
        return result
    with transaction.atomic():
        # FOR NO KEY UPDATE: two drains still exclude each other, but a delivery's INSERT
        # (whose foreign key takes FOR KEY SHARE on this row) is not held for the batch. FOR
        # UPDATE held every intake for as long as a batch took: intake p99 35 ms at 256/s.
        SocialChannel.objects.select_for_update(no_key=True).filter(pk=channel_id).values_list("pk").first()
        still_received = set(
            InboundEvent.objects.filter(
                pk__in=[ready.event.pk for ready in prepared], status=EventStatus.RECEIVED
            ).values_list("pk", flat=True)
        )
        outcomes: dict[tuple[str, str], list[int]] = {}
        for run in _runs([ready for ready in prepared if ready.event.pk in still_received]):
            if len(run) == 1 and not _plain(run[0]):
                _apply_event(provider, channel, run[0], result, now, outcomes)
            else:
                _apply_run(provider, channel, run, result, now, outcomes)
        # One UPDATE per distinct outcome (nearly always one: processed, nothing to say).
        for (status, reason), event_ids in outcomes.items():
            InboundEvent.objects.filter(pk__in=event_ids).update(
                status=status, reason=reason, processed_at=now, next_attempt_at=None
            )
    return result


def _prepare(
    provider: WebhookProvider, channel: SocialChannel, event: InboundEvent, result: DrainResult, now: datetime
) -> _Prepared | None:
    """Read the event and fetch its media, outside the transaction (no lock held over the
    network). None when the event is settled (failed) or put back for later."""
    if event.attempts > MAX_PROCESS_ATTEMPTS:
        # Started this often and never finished: something in it kills the worker.
        _event_finish(
            event.pk, EventStatus.FAILED, f"Processing started {event.attempts - 1} times, never finished."
        )
        return None
    last_chance = event.attempts >= MAX_PROCESS_ATTEMPTS
    try:
        items = provider.items(channel, event.endpoint, bytes(event.body))
    except Malformed as exc:
        _event_finish(event.pk, EventStatus.FAILED, str(exc))
        return None
    except Exception as exc:  # a reader bug on hostile input must not stop the channel
        logger.exception("inbound event %s: reading failed", event.pk)
        _event_finish(event.pk, EventStatus.FAILED, f"Reading the event failed: {type(exc).__name__}.")
        return None
    try:
        media = _media_fetch_all(provider, channel, items, last_chance=last_chance)
    except ProviderError as exc:
        _retry_later(event, str(exc), result, now)
        return None
    return _Prepared(event=event, items=items, media=media)


def _plain(ready: _Prepared) -> bool:
    """An event of messages only (and items skipped): nothing in it must wait or fail alone."""
    return all(isinstance(item, InboundText | Skipped) for item in ready.items)


def _runs(prepared: list[_Prepared]) -> list[list[_Prepared]]:
    """The batch cut into runs, in order: consecutive plain events together, each other
    event alone (a status may have to wait; a call is its provider's to apply)."""
    runs: list[list[_Prepared]] = []
    for ready in prepared:
        if runs and _plain(ready) and _plain(runs[-1][-1]):
            runs[-1].append(ready)
        else:
            runs.append([ready])
    return runs


def _apply_run(
    provider: WebhookProvider,
    channel: SocialChannel,
    run: list[_Prepared],
    result: DrainResult,
    now: datetime,
    outcomes: dict[tuple[str, str], list[int]],
) -> None:
    """Apply a run of plain events together: all their messages by one batch store, under
    one savepoint for the run. If anything in it fails, the run is rolled back whole and
    applied event by event, each in a savepoint of its own: the bad event fails alone, with
    its reason, and the others are stored. Nothing is lost, nothing stored twice."""
    applied = [(ready, Processed()) for ready in run]
    try:
        with transaction.atomic():
            for ready, outcome in applied:
                outcome.skipped += [
                    f"Skipped: {item.why}." for item in ready.items if isinstance(item, Skipped)
                ]
            _messages_store(
                channel,
                [
                    (item, ready.media, outcome)
                    for ready, outcome in applied
                    for item in ready.items
                    if isinstance(item, InboundText)
                ],
            )
            for ready, outcome in applied:
                if outcome.redacted:
                    _event_body_scrub(provider, channel, ready.event, outcome)
    except (OperationalError, InterfaceError):
        raise  # the connection is gone: the whole batch is retried
    except Exception as exc:
        logger.warning(
            "inbound events %s to %s: applied one by one after %s",
            run[0].event.pk,
            run[-1].event.pk,
            type(exc).__name__,
            extra={"channel_id": channel.pk},
        )
        for ready in run:
            _apply_event(provider, channel, ready, result, now, outcomes)
        return
    for ready, outcome in applied:
        _outcome_record(ready, outcome, result, outcomes)


def _outcome_record(
    ready: _Prepared, outcome: Processed, result: DrainResult, outcomes: dict[tuple[str, str], list[int]]
) -> None:
    """Note an applied event's outcome; the batch writes them, one UPDATE per distinct one."""
    if outcome.handled:
        status, reason = EventStatus.PROCESSED, "\n".join(outcome.notes + outcome.skipped)
    else:
        status, reason = EventStatus.IGNORED, "\n".join(outcome.skipped or ["Nothing in it to process."])
    outcomes.setdefault((status, reason[:5000]), []).append(ready.event.pk)
    result.processed += 1


def _apply_event(
    provider: WebhookProvider,
    channel: SocialChannel,
    ready: _Prepared,
    result: DrainResult,
    now: datetime,
    outcomes: dict[tuple[str, str], list[int]],
) -> None:
    """Apply one event in a savepoint: its failure rolls back only itself."""
    try:
        with transaction.atomic():
            outcome = Processed()
            for item in ready.items:
                _apply(provider, channel, item, ready.media, outcome, attempt=ready.event.attempts)
            if outcome.redacted:
                _event_body_scrub(provider, channel, ready.event, outcome)
        _outcome_record(ready, outcome, result, outcomes)
    except NotYet as exc:
        _retry_later(ready.event, str(exc), result, now)
    except (OperationalError, InterfaceError):
        raise  # the connection is gone: the whole batch is retried
    except (DataError, IntegrityError) as exc:
        _event_finish(ready.event.pk, EventStatus.FAILED, f"The database refused it ({type(exc).__name__}).")
    except Exception as exc:  # one bad event must not fail its batch or block the channel
        logger.exception("inbound event %s: processing failed", ready.event.pk)
        _event_finish(ready.event.pk, EventStatus.FAILED, f"Processing failed: {type(exc).__name__}.")


def _event_body_scrub(
    provider: WebhookProvider, channel: SocialChannel, event: InboundEvent, outcome: Processed
) -> None:
    """Redaction at ingest kept a card's original out of the message; the delivery as it
    came still holds it. Scrubbed the same way, in the transaction that stored the message,
    so the original is committed nowhere past processing."""
    redact = dlp.inbound_redactor(inbox_id=channel.inbox_id)
    if redact is None:
        return
    body = webhook_body_scrub(bytes(event.body), content_type=provider.content_type, redact=redact)
    InboundEvent.objects.filter(pk=event.pk).update(body=body)
    outcome.notes.append(RAW_SCRUBBED_NOTE)
    logger.info("inbound event scrubbed", extra={"event_id": event.pk, "channel_id": channel.pk})


def _retry_later(event: InboundEvent, reason: str, result: DrainResult, now: datetime) -> None:
    ceiling = backoff_ceiling(event.attempts)
    at = now + timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311  # jitter, not a secret
    InboundEvent.objects.filter(pk=event.pk).update(
        next_attempt_at=at, reason=f"Waiting to retry: {reason}"[:5000]
    )
    result.retry_at = min(result.retry_at or at, at)


def _event_finish(event_id: int, status: str, reason: str) -> None:
    InboundEvent.objects.filter(pk=event_id).update(
        status=status, reason=reason[:5000], processed_at=timezone.now(), next_attempt_at=None
    )


def _media_fetch_all(
    provider: WebhookProvider, channel: SocialChannel, parsed: list[Item], *, last_chance: bool
) -> dict[str, FetchedMedia]:
    """Download what new messages carry, before the transaction (no lock held over the
    network). A provider that is down makes the event wait, unless this is its last try:
    then the message is stored with a note instead of its media."""
    fetched: dict[str, FetchedMedia] = {}
    wanted: list[MediaRef] = []
    with_media = [item for item in parsed if isinstance(item, InboundText) and item.media]
    # Messages already stored (a replay) need no download: one query for the whole event.
    stored = (
        set(
            Message.objects.filter(
                inbox_id=channel.inbox_id,
                provider_message_id__in=[item.provider_message_id for item in with_media],
            ).values_list("provider_message_id", flat=True)
        )
        if with_media
        else set()
    )
    for item in parsed:
        if isinstance(item, InboundText):
            if item.provider_message_id not in stored:
                wanted += item.media
        else:
            wanted += provider.extra_media(item)
    for media in wanted:
        try:
            fetched[media.ref] = FetchedMedia(
                provider.media_fetch(channel, media, settings.SOCIAL_MEDIA_MAX_BYTES)
            )
        except TooLarge as exc:
            fetched[media.ref] = FetchedMedia(
                None, f"A {media.declared_type or 'file'} was not fetched: {exc}."
            )
        except ProviderError as exc:
            if exc.transient and not last_chance:
                raise
            fetched[media.ref] = FetchedMedia(
                None, f"A {media.declared_type or 'file'} could not be fetched: {exc}."
            )
    return fetched


def _apply(
    provider: WebhookProvider,
    channel: SocialChannel,
    item: Item,
    media: dict[str, FetchedMedia],
    outcome: Processed,
    *,
    attempt: int,
) -> None:
    if isinstance(item, Skipped):
        outcome.skipped.append(f"Skipped: {item.why}.")
    elif isinstance(item, InboundText):
        _messages_store(channel, [(item, media, outcome)])
    elif isinstance(item, StatusChange):
        if _status_apply(channel, item):
            outcome.handled += 1
        elif attempt < UNKNOWN_STATUS_TRIES:
            raise NotYet(
                f"no outbound message {item.provider_message_id!r} yet "
                f"(try {attempt} of {UNKNOWN_STATUS_TRIES})"
            )
        else:
            outcome.skipped.append(
                f"Ignored: a {item.status} status for a message we never sent (none had its id after "
                f"{UNKNOWN_STATUS_TRIES} tries): {item.provider_message_id!r}."
            )
    elif provider.apply(channel, item, media):
        outcome.handled += 1


@dataclass(frozen=True)
class _Built:
    inbound: InboundMessage
    attachments: list[Attachment]
    notes: list[str]


def _inbound_build(channel: SocialChannel, item: InboundText, media: dict[str, FetchedMedia]) -> _Built:
    """A message as the inbox stores it: its text with a note for each file not kept, and
    its attachments (unsaved; their bytes are stored by digest)."""
    fetched = [(ref, media[ref.ref]) for ref in item.media if ref.ref in media]
    notes = [f.note for _, f in fetched if f.note]
    attachments = []
    for ref, content in [(ref, f.content) for ref, f in fetched if f.content is not None]:
        attachment = attachment_build(ref.filename, content)
        if attachment is None:
            notes.append(f"A {sniff(content)[0]} file was not kept: that type is not accepted.")
        else:
            attachments.append(attachment)
    text = "\n\n".join(filter(None, [item.text, *(f"[{note}]" for note in notes)]))
    inbound = InboundMessage(
        inbox=channel.inbox,
        channel_kind=ChannelKind(selectors.handle_kind(channel.inbox.channel_kind)),
        handle=item.handle,
        sender_name=item.sender_name,
        text=text,
        provider_message_id=item.provider_message_id,
    )
    return _Built(inbound, attachments, notes)


def _messages_store(
    channel: SocialChannel, texts: list[tuple[InboundText, dict[str, FetchedMedia], Processed]]
) -> None:
    """Store messages of the channel's events, in order, by one batch store; each one's
    attachments and notes go with it, to its event's outcome."""
    built = [_inbound_build(channel, item, media) for item, media, _ in texts]
    recorded = inbound_messages_record([each.inbound for each in built])
    attachments = []
    for (_, _, outcome), each, stored in zip(texts, built, recorded, strict=True):
        if stored.created:
            for attachment in each.attachments:
                attachment.message = stored.message
            attachments += each.attachments
        outcome.handled += 1
        outcome.notes += each.notes
        # Stored otherwise than it came: redacted at ingest (a replay finds the redacted one).
        outcome.redacted |= stored.message.text != each.inbound.text
    if attachments:
        Attachment.objects.bulk_create(attachments)


# A status only moves forward; "failed" yields to a later delivery report (a customer
# with several devices), never the other way round.
_STATUS_RANK: dict[str, int] = {
    Delivered.QUEUED: 0,
    Delivered.SENT: 1,
    Delivered.DELIVERED: 2,
    Delivered.READ: 3,
}


def _status_moves(current: str, new: str) -> bool:
    if new == Delivered.FAILED:
        return current in {Delivered.QUEUED, Delivered.SENT}
    if current == Delivered.FAILED:
        return new in {Delivered.DELIVERED, Delivered.READ}
    return _STATUS_RANK.get(new, -1) > _STATUS_RANK.get(current, -1)


def _status_apply(channel: SocialChannel, item: StatusChange) -> bool:
    """Returns False when the message it names is not (yet) known."""
    outbound = Message.objects.select_for_update(of=("self",)).filter(
        inbox_id=channel.inbox_id, direction=Message.Direction.OUTBOUND
    )
    if item.watermark_ms is not None:
        until = datetime.fromtimestamp(item.watermark_ms / 1000, tz=UTC)
        messages = list(
            outbound.filter(
                conversation__contact__identities__channel_kind=selectors.handle_kind(
                    channel.inbox.channel_kind
                ),
                conversation__contact__identities__handle=item.handle,
                created_at__lte=until,
                delivery_status__in=[Delivered.SENT, Delivered.DELIVERED],
            )
        )
        # One UPDATE for the whole watermark, however many messages it covers.
        Message.objects.filter(pk__in=[read.pk for read in messages]).update(
            delivery_status=item.status, delivery_detail=""
        )
        for read in messages:
            message_delivery_announce(message=read, status=item.status)
        return True
    message = outbound.filter(provider_message_id=item.provider_message_id).first()
    if message is None:
        return False
    if _status_moves(message.delivery_status, item.status):
        message_delivery_set(message=message, status=item.status, detail=item.detail)
    return True


def inbound_events_retry(*, ids: list[int]) -> int:
    """Put failed events back in the queue (after a fix, or once the channel is back)."""
    retried = InboundEvent.objects.filter(pk__in=ids, status=EventStatus.FAILED)
    channel_ids = set(retried.values_list("channel_id", flat=True))
    count = retried.update(
        status=EventStatus.RECEIVED, attempts=0, reason="", processed_at=None, next_attempt_at=None
    )
    for channel_id in channel_ids:
        transaction.on_commit(functools.partial(process_later, channel_id))
    return count


def inbound_events_requeue_stalled() -> int:
    """Channels with events due long after they came: their task was lost (the broker
    failed after the commit). Drained again; the attempt count still bounds each event."""
    now = timezone.now()
    channel_ids = selectors.channels_with_stalled_events(now=now, received_before=now - STALLED_AFTER)
    for channel_id in channel_ids:
        process_later(channel_id)
    return len(channel_ids)


# --- Outbound ---------------------------------------------------------------------------


class WebhookReplies:
    """Every webhook provider in the outbound pipeline (channels_app.common.outbound): the
    reply goes out through the provider's HTTP API, to the contact's handle on it."""

    inline = False

    def reply_prepare(self, message: Message) -> ReadyReply | str:
        found = _channel_for_inbox(message.inbox_id)
        if found is None:
            return "The inbox's channel is missing or disabled."
        provider, channel = found
        recipient = selectors.recipient_handle(message.conversation)
        if recipient is None:
            return "The contact has no handle on this channel."
        refusal = provider.reply_refusal(channel, message)
        if refusal is not None:
            return refusal
        return ReadyReply(
            recipient=recipient,
            text_limit=provider.text_limit(channel),
            send=functools.partial(provider.send, channel, recipient, message.text),
        )


# --- Secrets ----------------------------------------------------------------------------


def channel_secrets_rotate() -> int:
    """Re-encrypt every provider's channel secrets under the newest key (see
    channels_app.common.crypto)."""
    count = 0
    with transaction.atomic():
        for provider in PROVIDERS.values():
            for channel in provider.model.objects.select_for_update():
                channel.save(update_fields=list(provider.secret_fields))
                count += 1
    return count
