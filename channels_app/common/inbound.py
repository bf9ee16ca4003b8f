"""What every channel's intake shares: the cursor its raw stores write with; files a
customer sent, kept by what their bytes are (never by what they are declared as); and the
scrub of a raw copy once its message was stored redacted, so the original is kept nowhere."""

from __future__ import annotations

import codecs
import contextlib
import email
import email.policy
import json
from collections.abc import Callable, Iterator
from email.header import Header, decode_header, make_header
from typing import Any
from urllib.parse import parse_qsl, urlencode

import filetype
import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from inbox.models import Attachment
from inbox.services import attachment_file_store


@contextlib.contextmanager
def bound_cursor() -> Iterator[CursorWrapper]:
    """A cursor that binds its parameters on the server. Django's psycopg cursors write
    every parameter into the statement's text: a raw mail or webhook body travels as an
    escaped literal twice its size for the server to parse back (storing a raw mail took
    ~0.7 ms; ~0.2 ms bound), and none is ever prepared. Bound, a statement a connection
    runs again and again is prepared (settings: prepare_threshold): planning the webhook
    intake's statement was about half of PostgreSQL's CPU for a delivery. Wrapped as Django
    wraps its own, so query logging and execute wrappers see it."""
    connection.ensure_connection()
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    with wrapper(psycopg.Cursor(connection.connection), connection) as cursor:
        yield cursor


def sniff(content: bytes) -> tuple[str, str]:
    """The content type and extension the bytes show, whatever the message declared."""
    sample = content[:8192]
    kind = filetype.guess(sample)
    if kind is not None:
        return kind.mime, kind.extension
    try:
        # Not final: a multi-byte character cut at the sample's end is still text.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return "application/octet-stream", "bin"
    if b"\x00" in sample:
        return "application/octet-stream", "bin"
    return "text/plain", "txt"


# Media types kept as attachments (sniffed from the bytes, never as declared).
ALLOWED_MEDIA_PREFIXES = ("image/", "audio/", "video/", "application/pdf", "text/plain")


def attachment_build(filename: str, content: bytes) -> Attachment | None:
    """An unsaved attachment for the bytes, stored by digest; None for a refused type."""
    content_type, extension = sniff(content)
    if not content_type.startswith(ALLOWED_MEDIA_PREFIXES):
        return None
    name, digest = attachment_file_store(content=content, extension=extension)
    filename = "".join(ch for ch in filename if ch.isprintable() and ch not in "/\\")[:255]
    return Attachment(
        file=name,
        filename=filename or f"{digest[:12]}.{extension}",
        content_type=content_type,
        size=len(content),
        sha256=digest,
    )


# --- Scrubbing a raw copy -----------------------------------------------------------------

# One text in, the same text redacted out (`inbox.dlp.inbound_redactor`).
Redactor = Callable[[str], str]

# The note put on a raw row that was scrubbed (its `reason`, shown in the admin).
RAW_SCRUBBED_NOTE = (
    "The stored copy was scrubbed too: card numbers in it keep only their first 6 and last 4 digits."
)


def _json_scrub(body: bytes, redact: Redactor) -> bytes:
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    return json.dumps(walk(json.loads(body)), ensure_ascii=False, separators=(",", ":")).encode()


def _form_scrub(body: bytes, redact: Redactor) -> bytes:
    # Decoded first: a form writes a card's spaces as "+", which no detector reads as one.
    pairs = parse_qsl(body.decode(), keep_blank_values=True)
    return urlencode([(key, redact(value)) for key, value in pairs]).encode()


def _text_scrub(body: bytes, redact: Redactor) -> bytes:
    return redact(body.decode("utf-8", "replace")).encode()


# How a webhook delivery is scrubbed, by the content type its provider posts
# (`WebhookProvider.content_type`); anything else is read as text.
BODY_SCRUBBERS: dict[str, Callable[[bytes, Redactor], bytes]] = {
    "application/json": _json_scrub,
    "application/x-www-form-urlencoded": _form_scrub,
}


def webhook_body_scrub(body: bytes, *, content_type: str, redact: Redactor) -> bytes:
    """The delivery with what the redactor finds masked in each of its values. Its
    signature no longer matches: it was proven when it arrived (`InboundEvent.verified`)."""
    return BODY_SCRUBBERS.get(content_type, _text_scrub)(body, redact)


def email_raw_scrub(raw: bytes, *, redact: Redactor) -> bytes:
    """The mail with its subject and text parts (plain and HTML, however transfer-encoded)
    redacted, re-encoded as UTF-8; attachments and other headers as they were. The ingest
    redacts the same three: text, HTML and subject."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    subject = message.get("Subject")
    if subject is not None:
        decoded = str(make_header(decode_header(str(subject))))
        if (redacted := redact(decoded)) != decoded:
            message.replace_header("Subject", Header(redacted, "utf-8").encode())
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text" or part.get_filename():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            text = payload.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:  # a charset Python does not know
            text = payload.decode("utf-8", "replace")
        if (redacted := redact(text)) != text:
            del part["Content-Transfer-Encoding"]
            part.set_payload(redacted, charset="utf-8")
    return message.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
