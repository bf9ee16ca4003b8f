"""What every channel's intake shares past its own raw store: files a customer sent, kept
by what their bytes are (never by what they are declared as)."""

from __future__ import annotations

from channels_app.email.parse import sniff
from inbox.models import Attachment
from inbox.services import attachment_file_store

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
