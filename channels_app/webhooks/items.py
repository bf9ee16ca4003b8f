"""What a delivery holds, once read: the same few shapes whatever the provider."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any


class Malformed(ValueError):
    """Not what the provider sends: answered 400, nothing stored."""


@dataclass(frozen=True)
class MediaRef:
    """A file the provider holds for a message; `ref` means something to its provider only
    (a media id, a file id, a URL)."""

    ref: str
    declared_type: str = ""
    filename: str = ""
    declared_size: int | None = None


@dataclass(frozen=True)
class InboundText:
    """A customer's message."""

    provider_message_id: str
    handle: str
    sender_name: str
    text: str
    media: tuple[MediaRef, ...] = ()


@dataclass(frozen=True)
class StatusChange:
    """What the provider says became of one of our messages. Messenger reports reads as a
    watermark (every message up to a time) for a handle instead of by id."""

    status: str
    provider_message_id: str = ""
    detail: str = ""
    watermark_ms: int | None = None
    handle: str = ""


@dataclass(frozen=True)
class CallEvent:
    """One of the requests Twilio makes about a call; each fills in what it knows."""

    call_sid: str
    caller: str
    call_status: str = ""
    answered: bool | None = None
    duration_seconds: int | None = None
    recording_url: str = ""
    recording_seconds: int | None = None
    transcription: str = ""


@dataclass(frozen=True)
class Skipped:
    """Kept but not processed: an unknown kind of event, or one meant for another account."""

    why: str


Item = InboundText | StatusChange | CallEvent | Skipped


@dataclass
class Delivery:
    """A delivery read just far enough to key it: the provider's ids it carries."""

    payload: Any
    ids: list[str] = field(default_factory=list)

    def event_key(self, body: bytes) -> str:
        """The provider's id when there is one; for a batch, a digest of all of them, so
        the same batch replayed gets the same key. With no id at all, the body's digest."""
        ids = sorted(set(self.ids))
        if len(ids) == 1 and len(ids[0]) <= 190:
            return ids[0]
        if not ids:
            return "body:" + hashlib.sha256(body).hexdigest()
        return "batch:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("The body is not JSON.") from None
    if not isinstance(payload, dict):
        raise Malformed("The body is not a JSON object.")
    return payload


def secrets_equal(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time: how long the comparison takes says nothing about the secret."""
    given_bytes = given.encode() if isinstance(given, str) else given
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(given_bytes, expected_bytes)


def text_of(value: Any, limit: int = 20_000) -> str:
    """A provider string field, bounded and without NULs (PostgreSQL refuses them)."""
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "")[:limit]


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list, whatever else it holds."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class FetchedMedia:
    """A file downloaded for an item, or the note the message carries instead of it."""

    content: bytes | None
    note: str = ""
