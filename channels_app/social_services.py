"""Writes for the social and phone channels (Telegram, WhatsApp, Messenger, Instagram, SMS
and voice through Twilio).

Inbound runs in two steps, each committed before the next:

1. intake (the webhook view, or a getUpdates poll): the delivery's origin is proven, then
   its raw body is stored as an InboundEvent keyed by the provider's id, and the provider
   is answered. Nothing else happens while the provider waits.
2. processing (a task): the event becomes contacts, conversations, messages, attachments,
   delivery statuses and call records in the channel's inbox, idempotently. Unknown kinds
   are kept and marked; an event that keeps failing is marked failed, never retried forever;
   a status for a message we never sent is ignored after UNKNOWN_STATUS_TRIES tries.

Outbound replies are sent by a task through the provider's HTTP API with retries; the
message row carries the delivery status the conversation shows.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.http import HttpRequest
from django.utils import timezone

from audit.services import Kind, Severity, client_ip, security_event_record
from channels_app import social_selectors as selectors
from channels_app.email_parse import sniff
from channels_app.models import (
    CallRecord,
    InboundEvent,
    MetaChannel,
    MetaKind,
    Provider,
    SocialChannel,
    TelegramChannel,
    TelegramMode,
    TwilioChannel,
    VerificationMode,
)
from channels_app.provider_http import ProviderError, TooLarge
from channels_app.providers import meta, telegram, twilio
from channels_app.providers.common import (
    CallEvent,
    Delivery,
    InboundText,
    Item,
    Malformed,
    MediaRef,
    Skipped,
    StatusChange,
)
from inbox import events
from inbox import policy as access_policy
from inbox.models import Attachment, ChannelKind, Message
from inbox.services import (
    InboundMessage,
    attachment_file_store,
    inbound_message_record,
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
STALLED_AFTER = timedelta(minutes=5)
# How long "a drain is queued" is remembered: a lost task delays the next one at most this.
DRAIN_KEY_SECONDS = 30
# Media types kept as attachments (sniffed from the bytes, never as declared).
ALLOWED_MEDIA_PREFIXES = ("image/", "audio/", "video/", "application/pdf", "text/plain")


# --- Intake -----------------------------------------------------------------------------


class Refused(Exception):
    """The delivery did not prove its origin: 403, nothing stored."""


ChannelT = TypeVar("ChannelT", bound=SocialChannel)


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


def _channel_or_refuse(
    model: type[ChannelT], provider: str, channel_id: int, request: HttpRequest
) -> ChannelT:
    channel = selectors.channel_enabled(model, channel_id)
    if channel is None:
        _refuse(request, channel_id, provider, "no such enabled channel")
    return channel


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


def _store(
    channel: SocialChannel, endpoint: str, delivery: Delivery, body: bytes, verified: bool, note: str
) -> None:
    try:
        with transaction.atomic():
            InboundEvent.objects.create(
                channel=channel,
                endpoint=endpoint,
                event_key=delivery.event_key(body),
                body=body,
                verified=verified,
                verification_note=note[:200],
            )
            transaction.on_commit(lambda: _process_later(channel.pk))
    except IntegrityError:
        pass  # a replay of a delivery already stored: answered like the first, stored once


def meta_subscription_verify(*, channel_id: int, params: dict[str, str], request: HttpRequest) -> str:
    """Meta's GET subscription check: the challenge to echo, or Refused. Never accepted
    unverified, whatever the mode: there is nothing to keep."""
    channel = _channel_or_refuse(MetaChannel, Provider.META, channel_id, request)
    challenge = meta.subscription_challenge(params, channel.verify_token)
    if challenge is None:
        _refuse(request, channel_id, Provider.META, "hub.verify_token does not match")
    return challenge


def meta_delivery_accept(
    *, channel_id: int, body: bytes, signature: str | None, request: HttpRequest
) -> None:
    channel = _channel_or_refuse(MetaChannel, Provider.META, channel_id, request)
    problem = meta.signature_problem(body, signature, channel.app_secret)
    verified = _verdict(channel, problem, request)
    _store(channel, Endpoint.META, meta.delivery_read(body), body, verified, problem or "")


def telegram_update_accept(*, channel_id: int, body: bytes, secret: str | None, request: HttpRequest) -> None:
    channel = _channel_or_refuse(TelegramChannel, Provider.TELEGRAM, channel_id, request)
    problem = telegram.secret_problem(secret, channel.webhook_secret)
    verified = _verdict(channel, problem, request)
    _store(channel, Endpoint.TELEGRAM, telegram.update_read(body), body, verified, problem or "")


def twilio_request_accept(
    *,
    channel_id: int,
    endpoint: str,
    body: bytes,
    signature: str | None,
    full_path: str,
    request: HttpRequest,
) -> tuple[TwilioChannel, twilio.Form]:
    """Twilio signs the URL it called and the form's parameters, so the form is read first
    (400 when unreadable), then checked. Returns what the TwiML answer is made from."""
    form = twilio.form_read(body)
    channel = _channel_or_refuse(TwilioChannel, Provider.TWILIO, channel_id, request)
    url = channel.public_base_url.rstrip("/") + full_path
    problem = twilio.signature_problem(url, form, signature, channel.auth_token)
    verified = _verdict(channel, problem, request)
    _store(channel, endpoint, twilio.delivery_read(endpoint, form), body, verified, problem or "")
    return channel, form


# --- Processing -------------------------------------------------------------------------


class NotYet(Exception):
    """The event names something not stored yet (a status for a reply whose send has not
    committed): the event is tried again later."""


@dataclass
class Processed:
    handled: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FetchedMedia:
    content: bytes | None
    note: str = ""


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


@functools.cache
def _flags() -> BaseCache:
    """One cache client for the process. Django's cache handles are per thread, and under
    ASGI each request runs in a thread of its own: each delivery would open a connection."""
    return caches.create_connection("default")


def _process_later(channel_id: int) -> None:
    """Queue a drain of the channel's events, unless one is already queued: under load one
    task then takes many events, instead of one task per delivery."""
    from channels_app import social_tasks

    if _flags().add(_drain_key(channel_id), 1, timeout=DRAIN_KEY_SECONDS):
        social_tasks.social_events_drain.delay(channel_id)


def inbound_events_drain_started(*, channel_id: int) -> None:
    """A drain task is starting: deliveries stored from now on queue another one. Called
    before the drain looks for events, so none committed in between is missed."""
    _flags().delete(_drain_key(channel_id))


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
    channel = selectors.social_channel_enabled_by_id(channel_id)
    if channel is None:
        InboundEvent.objects.filter(pk__in=[pk for pk, _ in due], status=EventStatus.RECEIVED).update(
            status=EventStatus.FAILED,
            reason="The channel was disabled or its inbox changed before processing; retry from the admin.",
            processed_at=now,
        )
        result.more = len(due) == PROCESS_BATCH
        return result
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
        if (ready := _prepare(channel, event, result, now)) is not None
    ]
    if not prepared:
        return result
    with transaction.atomic():
        SocialChannel.objects.select_for_update().filter(pk=channel_id).values_list("pk").first()
        still_received = set(
            InboundEvent.objects.filter(
                pk__in=[ready.event.pk for ready in prepared], status=EventStatus.RECEIVED
            ).values_list("pk", flat=True)
        )
        outcomes: dict[tuple[str, str], list[int]] = {}
        for ready in prepared:
            if ready.event.pk in still_received:
                _apply_event(channel, ready, result, now, outcomes)
        # One UPDATE per distinct outcome (nearly always one: processed, nothing to say).
        for (status, reason), event_ids in outcomes.items():
            InboundEvent.objects.filter(pk__in=event_ids).update(
                status=status, reason=reason, processed_at=now, next_attempt_at=None
            )
    return result


def _prepare(
    channel: SocialChannel, event: InboundEvent, result: DrainResult, now: datetime
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
        items = _items(channel, event)
    except Malformed as exc:
        _event_finish(event.pk, EventStatus.FAILED, str(exc))
        return None
    except Exception as exc:  # a reader bug on hostile input must not stop the channel
        logger.exception("inbound event %s: reading failed", event.pk)
        _event_finish(event.pk, EventStatus.FAILED, f"Reading the event failed: {type(exc).__name__}.")
        return None
    try:
        media = _media_fetch_all(channel, items, last_chance=last_chance)
    except ProviderError as exc:
        _retry_later(event, str(exc), result, now)
        return None
    return _Prepared(event=event, items=items, media=media)


def _apply_event(
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
                _apply(channel, item, ready.media, outcome, attempt=ready.event.attempts)
        if outcome.handled:
            status, reason = EventStatus.PROCESSED, "\n".join(outcome.notes + outcome.skipped)
        else:
            status, reason = EventStatus.IGNORED, "\n".join(outcome.skipped or ["Nothing in it to process."])
        outcomes.setdefault((status, reason[:5000]), []).append(ready.event.pk)
        result.processed += 1
    except NotYet as exc:
        _retry_later(ready.event, str(exc), result, now)
    except (OperationalError, InterfaceError):
        raise  # the connection is gone: the whole batch is retried
    except (DataError, IntegrityError) as exc:
        _event_finish(ready.event.pk, EventStatus.FAILED, f"The database refused it ({type(exc).__name__}).")
    except Exception as exc:  # one bad event must not fail its batch or block the channel
        logger.exception("inbound event %s: processing failed", ready.event.pk)
        _event_finish(ready.event.pk, EventStatus.FAILED, f"Processing failed: {type(exc).__name__}.")


def _retry_later(event: InboundEvent, reason: str, result: DrainResult, now: datetime) -> None:
    ceiling = min(settings.SOCIAL_RETRY_BACKOFF_SECONDS * 2**event.attempts, 600.0)
    at = now + timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311  # jitter, not a secret
    InboundEvent.objects.filter(pk=event.pk).update(
        next_attempt_at=at, reason=f"Waiting to retry: {reason}"[:5000]
    )
    result.retry_at = min(result.retry_at or at, at)


def _event_finish(event_id: int, status: str, reason: str) -> None:
    InboundEvent.objects.filter(pk=event_id).update(
        status=status, reason=reason[:5000], processed_at=timezone.now(), next_attempt_at=None
    )


def _items(channel: SocialChannel, event: InboundEvent) -> list[Item]:
    body = bytes(event.body)
    if isinstance(channel, MetaChannel):
        return meta.items(meta.delivery_read(body).payload, channel)
    if isinstance(channel, TelegramChannel):
        return telegram.items(telegram.update_read(body).payload)
    if isinstance(channel, TwilioChannel):
        form = twilio.form_read(body)
        return twilio.items(event.endpoint, form.as_dict(), channel)
    raise Malformed(f"No reader for {channel.provider} events.")


def _media_fetch_all(
    channel: SocialChannel, parsed: list[Item], *, last_chance: bool
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
        if isinstance(item, InboundText) and item.media:
            if item.provider_message_id not in stored:
                wanted += item.media
        elif isinstance(item, CallEvent) and item.recording_url and isinstance(channel, TwilioChannel):
            wanted.append(
                MediaRef(
                    ref=item.recording_url + ".mp3", declared_type="audio/mpeg", filename="voicemail.mp3"
                )
            )
    for media in wanted:
        try:
            fetched[media.ref] = FetchedMedia(_media_fetch(channel, media))
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


def _media_fetch(channel: SocialChannel, media: MediaRef) -> bytes:
    limit = settings.SOCIAL_MEDIA_MAX_BYTES
    if isinstance(channel, MetaChannel):
        return meta.media_fetch(channel, media, limit)
    if isinstance(channel, TelegramChannel):
        return telegram.media_fetch(channel, media, limit)
    if isinstance(channel, TwilioChannel):
        return twilio.media_fetch(channel, media, limit)
    raise ProviderError("no media client for this provider", transient=False)


def _apply(
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
        _message_store(channel, item, media, outcome)
        outcome.handled += 1
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
    elif isinstance(item, CallEvent) and isinstance(channel, TwilioChannel):
        _call_record(channel, item, media)
        outcome.handled += 1


def _message_store(
    channel: SocialChannel, item: InboundText, media: dict[str, FetchedMedia], outcome: Processed
) -> None:
    fetched = [(ref, media[ref.ref]) for ref in item.media if ref.ref in media]
    notes = [f.note for _, f in fetched if f.note]
    stored = [(ref, f.content) for ref, f in fetched if f.content is not None]
    attachments = []
    for ref, content in stored:
        attachment = _attachment(ref, content)
        if attachment is None:
            notes.append(f"A {sniff(content)[0]} file was not kept: that type is not accepted.")
        else:
            attachments.append(attachment)
    text = "\n\n".join(filter(None, [item.text, *(f"[{note}]" for note in notes)]))
    recorded = inbound_message_record(
        InboundMessage(
            inbox=channel.inbox,
            channel_kind=ChannelKind(selectors.handle_kind(channel.inbox.channel_kind)),
            handle=item.handle,
            sender_name=item.sender_name,
            text=text,
            provider_message_id=item.provider_message_id,
        )
    )
    if recorded.created and attachments:
        for attachment in attachments:
            attachment.message = recorded.message
        Attachment.objects.bulk_create(attachments)
    outcome.notes += notes


def _attachment(ref: MediaRef, content: bytes) -> Attachment | None:
    content_type, extension = sniff(content)
    if not content_type.startswith(ALLOWED_MEDIA_PREFIXES):
        return None
    name, digest = attachment_file_store(content=content, extension=extension)
    filename = "".join(ch for ch in ref.filename if ch.isprintable() and ch not in "/\\")[:255]
    return Attachment(
        file=name,
        filename=filename or f"{digest[:12]}.{extension}",
        content_type=content_type,
        size=len(content),
        sha256=digest,
    )


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


def _call_record(channel: TwilioChannel, item: CallEvent, media: dict[str, FetchedMedia]) -> None:
    record, _ = (
        CallRecord.objects.select_for_update(of=("self",))
        .select_related("message")
        .get_or_create(channel=channel, call_sid=item.call_sid, defaults={"caller": item.caller})
    )
    if item.call_status:
        record.call_status = item.call_status
    if item.answered is not None:
        record.answered = item.answered
    if item.duration_seconds is not None and (item.answered or record.duration_seconds is None):
        record.duration_seconds = item.duration_seconds
    if item.recording_url:
        record.recording_url, record.recording_seconds = item.recording_url, item.recording_seconds
    if item.transcription:
        record.transcription = item.transcription
    if record.answered is None and record.call_status in {
        "completed",
        "busy",
        "no-answer",
        "failed",
        "canceled",
    }:
        # Twilio answered (voicemail), nobody of ours did.
        record.answered = False
    text = _call_summary(record)
    message = record.message
    if message is None:
        message = inbound_message_record(
            InboundMessage(
                inbox=channel.inbox,
                channel_kind=ChannelKind.SMS,
                handle=record.caller,
                sender_name=record.caller,
                text=text,
                provider_message_id=f"call:{record.call_sid}",
            )
        ).message
        record.message = message
    else:
        Message.objects.filter(pk=message.pk).update(text=text)
        events.publish_after_commit(
            inbox_id=channel.inbox_id,
            event="message.updated",
            payload={"conversation_id": message.conversation_id, "message_id": message.pk},
        )
    record.save()
    recording = media.get(item.recording_url + ".mp3") if item.recording_url else None
    if recording is not None and recording.content is not None:
        attachment = _attachment(MediaRef(ref="", filename="voicemail.mp3"), recording.content)
        if (
            attachment is not None
            and not Attachment.objects.filter(message=message, sha256=attachment.sha256).exists()
        ):
            attachment.message = message
            attachment.save()


def _duration(seconds: int | None) -> str:
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds is not None else "?"


def _call_summary(record: CallRecord) -> str:
    if record.answered:
        lines = [f"Answered call from {record.caller}, {_duration(record.duration_seconds)}."]
    elif record.answered is False:
        lines = [f"Missed call from {record.caller}."]
    else:
        lines = [f"Incoming call from {record.caller}."]
    if record.recording_url:
        lines.append(f"Voicemail ({_duration(record.recording_seconds)}): {record.recording_url}")
    if record.transcription:
        lines.append(f"Transcription: {record.transcription}")
    return "\n".join(lines)


def inbound_events_retry(*, ids: list[int]) -> int:
    """Put failed events back in the queue (after a fix, or once the channel is back)."""
    retried = InboundEvent.objects.filter(pk__in=ids, status=EventStatus.FAILED)
    channel_ids = set(retried.values_list("channel_id", flat=True))
    count = retried.update(
        status=EventStatus.RECEIVED, attempts=0, reason="", processed_at=None, next_attempt_at=None
    )
    for channel_id in channel_ids:
        transaction.on_commit(functools.partial(_process_later, channel_id))
    return count


def inbound_events_requeue_stalled() -> int:
    """Channels with events due long after they came: their task was lost (the broker
    failed after the commit). Drained again; the attempt count still bounds each event."""
    now = timezone.now()
    channel_ids = selectors.channels_with_stalled_events(now=now, received_before=now - STALLED_AFTER)
    for channel_id in channel_ids:
        _process_later(channel_id)
    return len(channel_ids)


# --- Outbound ---------------------------------------------------------------------------


def _text_limit(channel: SocialChannel) -> int:
    if isinstance(channel, MetaChannel):
        return meta.TEXT_LIMITS[MetaKind(channel.kind)]
    if isinstance(channel, TelegramChannel):
        return telegram.TEXT_LIMIT
    return twilio.TEXT_LIMIT


def _reply_refusal(message: Message, channel: SocialChannel | None, recipient: str | None) -> str | None:
    """Why this reply must not go out, re-checked when it is sent (not only when written)."""
    if channel is None:
        return "The inbox's channel is missing or disabled."
    author = message.sender_user
    if author is None or not access_policy.can(
        access_policy.AccessContext.for_task(author), access_policy.Action.REPLY, message.conversation
    ):
        return "The author may no longer reply in this conversation."
    if recipient is None:
        return "The contact has no handle on this channel."
    limit = _text_limit(channel)
    if len(message.text) > limit:
        return f"The reply is longer than the {limit} characters this channel accepts."
    if message.inbox.channel_kind == ChannelKind.WHATSAPP and not selectors.whatsapp_window_open(
        message.conversation
    ):
        return (
            "Outside WhatsApp's 24-hour customer service window: the customer has not written in the last "
            "24 hours, so only an approved template message can be sent."
        )
    return None


def _send(channel: SocialChannel, recipient: str, text: str) -> str:
    if isinstance(channel, MetaChannel):
        return meta.text_send(channel, recipient, text)
    if isinstance(channel, TelegramChannel):
        return telegram.text_send(channel, recipient, text)
    if isinstance(channel, TwilioChannel):
        return twilio.text_send(channel, recipient, text)
    raise ProviderError("no sender for this provider", transient=False)


def social_reply_send(*, message_id: int) -> None:
    """Send a queued reply, once: the row stays locked while it is sent, so a second run of
    the task waits, then finds it sent. Raises ProviderError when worth retrying."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("inbox", "conversation", "conversation__inbox", "sender_user")
            .filter(pk=message_id, direction=Message.Direction.OUTBOUND)
            .first()
        )
        if message is None or message.delivery_status != Delivered.QUEUED:
            return
        channel = selectors.social_channel_for_inbox(message.inbox_id)
        recipient = selectors.recipient_handle(message.conversation) if channel is not None else None
        refusal = _reply_refusal(message, channel, recipient)
        if refusal is not None or channel is None or recipient is None:
            message_delivery_set(message=message, status=Delivered.FAILED, detail=refusal or "")
            return
        try:
            provider_id = _send(channel, recipient, message.text)
        except ProviderError as exc:
            if exc.transient:
                raise
            message_delivery_set(message=message, status=Delivered.FAILED, detail=str(exc))
            return
        message_delivery_set(message=message, status=Delivered.SENT, provider_message_id=provider_id)


def social_reply_retry_note(*, message_id: int, attempt: int, reason: str) -> None:
    """The conversation shows that the provider is being retried, and why."""
    with transaction.atomic():
        message = Message.objects.filter(pk=message_id, delivery_status=Delivered.QUEUED).first()
        if message is not None:
            message_delivery_set(
                message=message, status=Delivered.QUEUED, detail=f"Retrying (attempt {attempt}): {reason}"
            )


def social_reply_give_up(*, message_id: int, reason: str) -> None:
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(pk=message_id, delivery_status=Delivered.QUEUED)
            .first()
        )
        if message is not None:
            message_delivery_set(
                message=message, status=Delivered.FAILED, detail=f"Gave up after retries: {reason}"
            )


# --- Telegram: pull mode and webhook registration ----------------------------------------


def telegram_polls_start() -> list[tuple[int, str]]:
    """Claim every pull-mode channel without a live poll chain; returns (channel, lease)."""
    now = timezone.now()
    started: list[tuple[int, str]] = []
    for channel_id in selectors.telegram_channels_to_poll(now):
        lease = secrets.token_hex(16)
        # Claimed only if still free: two beat ticks racing start one chain.
        claimed = (
            TelegramChannel.objects.filter(pk=channel_id)
            .filter(Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now))
            .update(poll_lease=lease, poll_lease_until=now + _lease_length())
        )
        if claimed:
            started.append((channel_id, lease))
    return started


def _lease_length() -> timedelta:
    return timedelta(seconds=settings.TELEGRAM_POLL_TIMEOUT_SECONDS + 60)


@dataclass(frozen=True)
class PollResult:
    stored: int
    # The chain still owns the channel and it is still in pull mode: poll again.
    go_on: bool


def telegram_poll(*, channel_id: int, lease: str) -> PollResult:
    """One getUpdates round from the stored offset. The updates and the new offset are
    committed together, so a worker killed at any point resumes from the right offset:
    before the commit Telegram still holds the updates (it hands them out until a higher
    offset confirms them), after it they are stored (and a replay is deduplicated).
    Raises ProviderError."""
    channel = (
        TelegramChannel.objects.select_related("inbox")
        .filter(pk=channel_id, enabled=True, mode=TelegramMode.PULL, poll_lease=lease)
        .first()
    )
    if channel is None:
        return PollResult(stored=0, go_on=False)
    try:
        updates = telegram.updates_get(channel, channel.update_offset, settings.TELEGRAM_POLL_TIMEOUT_SECONDS)
    except ProviderError as exc:
        TelegramChannel.objects.filter(pk=channel_id).update(last_error=str(exc)[:500])
        if not exc.transient:
            TelegramChannel.objects.filter(pk=channel_id, poll_lease=lease).update(
                poll_lease="", poll_lease_until=None
            )
        raise
    rows = []
    highest = channel.update_offset - 1
    for update in updates:
        try:
            delivery = telegram.update_check(update)
        except Malformed:
            continue
        highest = max(highest, update["update_id"])
        body = json.dumps(update, separators=(",", ":")).encode()
        rows.append(
            InboundEvent(
                channel=channel,
                endpoint=Endpoint.TELEGRAM_POLL,
                event_key=delivery.event_key(body),
                body=body,
            )
        )
    with transaction.atomic():
        owner = TelegramChannel.objects.select_for_update().filter(pk=channel_id, poll_lease=lease).first()
        if owner is None:
            return PollResult(stored=0, go_on=False)
        InboundEvent.objects.bulk_create(rows, ignore_conflicts=True)
        TelegramChannel.objects.filter(pk=channel_id).update(
            # Never backwards, even if another chain got further meanwhile.
            update_offset=Greatest(F("update_offset"), highest + 1),
            poll_lease_until=timezone.now() + _lease_length(),
            last_polled_at=timezone.now(),
            last_error="",
        )
        if rows:
            transaction.on_commit(lambda: _process_later(channel_id))
    return PollResult(stored=len(rows), go_on=True)


def telegram_poll_release(*, channel_id: int, lease: str) -> None:
    TelegramChannel.objects.filter(pk=channel_id, poll_lease=lease).update(
        poll_lease="", poll_lease_until=None
    )


def telegram_webhook_register(*, channel: TelegramChannel) -> str:
    """Point Telegram at our webhook with the channel's secret token and switch to push.
    Raises ProviderError; returns the URL registered."""
    if not channel.public_base_url.startswith("https://"):
        raise ProviderError("Telegram delivers to https URLs only: set the public base URL.", transient=False)
    url = channel.public_base_url.rstrip("/") + channel.webhook_path()
    telegram.webhook_set(channel, url)
    TelegramChannel.objects.filter(pk=channel.pk).update(
        mode=TelegramMode.PUSH,
        webhook_registered_at=timezone.now(),
        poll_lease="",
        poll_lease_until=None,
        last_error="",
    )
    return url


def telegram_webhook_remove(*, channel: TelegramChannel) -> None:
    """Stop pushes and switch to pull mode (getUpdates works only without a webhook)."""
    telegram.webhook_delete(channel)
    TelegramChannel.objects.filter(pk=channel.pk).update(
        mode=TelegramMode.PULL, webhook_registered_at=None, last_error=""
    )


def social_channel_secrets_rotate() -> int:
    """Re-encrypt the social channels' secrets under the newest key (see channels_app.crypto)."""
    fields: dict[type[SocialChannel], list[str]] = {
        TelegramChannel: ["bot_token", "webhook_secret"],
        MetaChannel: ["app_secret", "verify_token", "access_token"],
        TwilioChannel: ["auth_token"],
    }
    count = 0
    with transaction.atomic():
        for model, names in fields.items():
            for channel in model.objects.select_for_update():
                channel.save(update_fields=names)
                count += 1
    return count
