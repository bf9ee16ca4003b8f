"""Phone calls as the conversation shows them: Twilio reports a call in several requests
(ringing, forwarded, voicemail, transcription, status), each filling in what it knows."""

from __future__ import annotations

from collections.abc import Mapping

from channels_app.common.inbound import attachment_build
from channels_app.webhooks.items import CallEvent, FetchedMedia, MediaRef
from channels_app.webhooks.providers.twilio.models import CallRecord, TwilioChannel
from inbox import dlp, events
from inbox.models import Attachment, ChannelKind, Message
from inbox.services import InboundMessage, inbound_message_record

VOICEMAIL_FILENAME = "voicemail.mp3"
# Twilio answered (voicemail), nobody of ours did.
UNANSWERED_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def recording_ref(item: CallEvent) -> MediaRef:
    return MediaRef(ref=item.recording_url + ".mp3", declared_type="audio/mpeg", filename=VOICEMAIL_FILENAME)


def call_record(channel: TwilioChannel, item: CallEvent, media: Mapping[str, FetchedMedia]) -> None:
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
        # It arrives after the call's message exists, so it misses the redaction at ingest:
        # a card read into a voicemail is redacted here, before either copy stores it.
        redact = dlp.inbound_redactor(inbox_id=channel.inbox_id)
        record.transcription = redact(item.transcription) if redact else item.transcription
    if record.answered is None and record.call_status in UNANSWERED_STATUSES:
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
    recording = media.get(recording_ref(item).ref) if item.recording_url else None
    if recording is not None and recording.content is not None:
        attachment = attachment_build(VOICEMAIL_FILENAME, recording.content)
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
