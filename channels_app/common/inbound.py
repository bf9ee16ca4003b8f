"""What every channel's intake shares past its own raw store: files a customer sent, kept
by what their bytes are (never by what they are declared as)."""

from __future__ import annotations

import codecs

import filetype

from inbox.models import Attachment
from inbox.services import attachment_file_store


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
