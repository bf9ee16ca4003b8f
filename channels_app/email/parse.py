"""Reading a raw RFC 822 message: sender, threading headers, text, safe HTML, attachments.

Nothing here trusts the input. Any header may fail to parse, a charset may not exist,
declared types lie, filenames carry paths. What can be repaired is repaired and noted;
a message that names no sender at all cannot become a conversation and raises
Unparseable. Either way the caller keeps the raw bytes.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import html as html_lib
import re
import unicodedata
from dataclasses import dataclass, field
from email import errors, policy
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader, BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses

import nh3

MAX_TEXT_CHARS = 200_000
MAX_HTML_CHARS = 1_000_000
MAX_ATTACHMENTS = 50
MAX_REFERENCES = 50
MAX_NESTING = 20
MAX_NOTES = 20
# Longer ids are replaced by their hash: they must fit the provider id column.
MAX_MESSAGE_ID = 250
MAX_ADDRESS = 320
# Ids made from a content hash are ours, not Message-IDs: never put them in headers.
PSEUDO_ID_PREFIX = "sha256:"

# Remote images are tracking beacons and a channel for exfiltration; inline images arrive
# as attachments. Only plain web and mail links survive.
_html_cleaner = nh3.Cleaner(
    tags=nh3.ALLOWED_TAGS - {"img", "area", "map"},
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
)
_text_cleaner = nh3.Cleaner(tags=set())
_BLOCK_END = re.compile(r"<(?:br|/p|/div|/tr|/li|/h[1-6]|/blockquote)\b[^>]*>", re.IGNORECASE)
_MSGID = re.compile(r"<([^<>\s]+)>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|vs|tr)(\[\d+\])?\s*:\s*|\[[^\]]{1,40}\]\s*)+", re.I)
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")
_EMBEDDED_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"']+@[^@\s<>()\[\],;:\"']+")
_address_registry = HeaderRegistry()
# Longer header values are parsed afresh each time rather than held in the cache.
MAX_CACHED_HEADER = 1_000


@functools.lru_cache(maxsize=4096)
def _header_cached(name: str, value: str) -> BaseHeader:
    return _address_registry(name, value)


class _CachingHeaderRegistry(HeaderRegistry):
    """The standard registry, remembering the headers it parsed. Under policy.default the
    email package parses a header again at every look at it (a part's Content-Type some
    ten times a message, each through a class built afresh), which was most of the cost of
    reading a mail. A header's parse depends on its name and value alone and the result is
    immutable, so one parse serves every look, in every message."""

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > MAX_CACHED_HEADER:
            return super().__call__(name, value)
        return _header_cached(name, value)


_parser = BytesParser(policy=policy.default.clone(header_factory=_CachingHeaderRegistry()))


class Unparseable(ValueError):
    """The message cannot become a conversation message; the reason says why."""


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content: bytes


@dataclass
class ParsedEmail:
    message_id: str | None
    # In-Reply-To first, then References newest first: the order to look threads up in.
    references: list[str]
    subject: str
    from_address: str
    from_name: str
    text: str
    html: str
    attachments: list[ParsedAttachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def clean_text(value: str) -> str:
    """Text the database and a browser accept: valid UTF-8, no control characters."""
    try:
        # Undecodable header bytes arrive as surrogate escapes; make them U+FFFD.
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", value)


def subject_key(subject: str) -> str:
    """The subject without reply/forward prefixes and list tags, for comparing threads."""
    return " ".join(_SUBJECT_PREFIX.sub("", subject).split()).casefold()


def raw_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _message_id_token(token: str) -> str:
    token = clean_text(token)
    if len(token) > MAX_MESSAGE_ID:
        return PSEUDO_ID_PREFIX + hashlib.sha256(token.encode()).hexdigest()
    return token


def message_id_tokens(value: str) -> list[str]:
    """The ids in a Message-ID / In-Reply-To / References value, without angle brackets."""
    tokens = _MSGID.findall(value)
    if not tokens:
        bare = value.strip()
        tokens = [bare] if bare and not any(ch.isspace() for ch in bare) else []
    return [_message_id_token(token) for token in tokens]


def dedup_key(raw: bytes) -> str:
    """What makes two stored messages the same: their bytes. A Message-ID is the sender's
    claim, so two different mails that share one are both kept; a digest match implies
    the same Message-ID anyway."""
    return PSEUDO_ID_PREFIX + raw_hash(raw)


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            try:
                return str(make_header(decode_header(value)))
            except (ValueError, LookupError, UnicodeError, AssertionError):
                return str(value)
    return None


def _header(msg: Message, name: str, notes: list[str]) -> str | None:
    try:
        value = msg.get(name)
        return None if value is None else str(value)
    # The structured header parser has known crashes on hostile input; fall back to the
    # unparsed value rather than losing the message.
    except Exception:
        notes.append(f"The {name} header could not be parsed; its raw value was used.")
        return _raw_header(msg, name)


def _message_id(msg: Message, notes: list[str]) -> str | None:
    value = _header(msg, "Message-ID", notes)
    tokens = message_id_tokens(value) if value else []
    return tokens[0] if tokens else None


def _raw_values(msg: Message, name: str) -> list[str]:
    """The header's values as they arrived, encoded words and all: the address parser
    must see them undecoded, or an encoded word could forge the address syntax."""
    return [str(value) for key, value in msg.raw_items() if key.lower() == name.lower()]


def _mailbox(name: str, value: str) -> tuple[str, str]:
    """The one address a sender header names, read by the strict parser, or Unparseable.

    The structured parser (email.headerregistry) is the strict one: it marks what it had
    to guess as a defect. A guess is where the attack hides (`victim@corp.com
    <attacker@evil.com>` reads as the victim to one parser and as the attacker to the
    next), so any such defect, or a lenient parser reading other addresses, refuses the
    sender instead of picking one.
    """
    value = "".join(value.splitlines())  # unfolded, as the structured parser reads it
    try:
        header = _address_registry("from", value)
    except Exception:  # the structured parser's known crashes on hostile input
        raise Unparseable(f"The {name} header could not be parsed as an address.") from None
    assert isinstance(header, AddressHeader)  # noqa: S101  # the registry's type for "from"
    addresses = header.addresses
    invalid = [defect for defect in header.defects if isinstance(defect, errors.InvalidHeaderDefect)]
    if invalid:
        raise Unparseable(f"The {name} header is malformed ({invalid[0]}): its sender cannot be trusted.")
    if len(addresses) != 1:
        raise Unparseable(f"The {name} header names {len(addresses)} addresses, not exactly one.")
    address = addresses[0]
    addr_spec = address.addr_spec.strip().lower()
    if not _ADDRESS.match(addr_spec) or _has_surrogates(addr_spec):
        raise Unparseable(f"The {name} header holds no usable address ({clean_text(addr_spec)[:80]!r}).")
    lenient = [found.strip().lower() for _, found in getaddresses([value])]
    if lenient != [addr_spec]:
        raise Unparseable(f"The {name} header reads as different addresses to different parsers.")
    if len(addr_spec) > MAX_ADDRESS:
        raise Unparseable(f"The sender address is longer than {MAX_ADDRESS} characters.")
    return addr_spec, " ".join(clean_text(address.display_name).split())


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _sender(msg: Message, notes: list[str]) -> tuple[str, str]:
    """The sender's address and a display name that does not contradict it."""
    for name in ("From", "Sender", "Reply-To", "Return-Path"):
        values = _raw_values(msg, name)
        if not values:
            continue
        if len(values) > 1:
            raise Unparseable(f"The message has {len(values)} {name} headers: its sender is ambiguous.")
        address, display_name = _mailbox(name, values[0])
        if name != "From":
            notes.append(f"The message has no From header; the {name} address was used.")
        # "victim@corp.com" <attacker@evil.com> is the attacker: agents must not read the
        # victim's address as the sender.
        named = {found.lower() for found in _EMBEDDED_ADDRESS.findall(display_name)}
        if named - {address}:
            notes.append(f"The display name {display_name[:120]!r} named another address; it was dropped.")
            display_name = ""
        return address, display_name
    raise Unparseable("The message names no usable sender address (From, Sender, Reply-To, Return-Path).")


def _part_text(part: Message, notes: list[str]) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: keep what is there
        notes.append("A body part had a broken transfer encoding.")
        payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
        text = payload.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        notes.append(f"Unknown charset {clean_text(charset)[:40]!r}; the text was read as UTF-8.")
        text = payload.decode("utf-8", errors="replace")
    return clean_text(text)


def sanitize_html(markup: str) -> str:
    return _html_cleaner.clean(markup)


def html_to_text(markup: str) -> str:
    text = html_lib.unescape(_text_cleaner.clean(_BLOCK_END.sub("\n", markup)))
    return "\n".join(line.strip() for line in text.splitlines()).strip()


def safe_filename(name: str | None, index: int) -> str:
    """A display name with no path, no control characters and a bounded length."""
    name = unicodedata.normalize("NFKC", clean_text(name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    if not name:
        return f"attachment-{index}"
    if len(name) > 200:
        stem, dot, extension = name.rpartition(".")
        name = f"{stem[:180]}.{extension[:16]}" if dot and len(extension) <= 16 else name[:200]
    return name


class _Walker:
    """Collects the attachments and extra inline text around the chosen body parts."""

    def __init__(self, body_parts: list[Message], max_attachment_bytes: int, notes: list[str]) -> None:
        self.body_parts = body_parts
        self.max_attachment_bytes = max_attachment_bytes
        self.notes = notes
        self.attachments: list[ParsedAttachment] = []
        self.extra_text: list[str] = []

    def walk(self, part: Message, depth: int = 0) -> None:
        if depth > MAX_NESTING:
            self.notes.append("MIME parts nested too deeply were left in the raw message.")
            return
        if any(part is body for body in self.body_parts):
            return
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            self._forwarded(part)
            return
        if part.is_multipart():
            payload = part.get_payload()
            for sub in payload if isinstance(payload, list) else []:
                if isinstance(sub, Message):
                    self.walk(sub, depth + 1)
            return
        try:
            filename = part.get_filename()
        except Exception:  # malformed RFC 2231 parameters
            filename = None
        disposition = part.get_content_disposition()
        if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = _part_text(part, self.notes)
            self.extra_text.append(html_to_text(text) if content_type == "text/html" else text)
            return
        try:
            content = part.get_payload(decode=True)
        except Exception:
            content = None
        self._add(filename, content if isinstance(content, bytes) else b"")

    def _forwarded(self, part: Message) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        try:
            content = inner.as_bytes(policy=policy.compat32) if isinstance(inner, Message) else b""
        except Exception:  # it stays in the raw message
            self.notes.append("A forwarded message could not be re-serialized.")
            return
        self._add("forwarded-message.eml", content)

    def _add(self, filename: str | None, content: bytes) -> None:
        index = len(self.attachments) + 1
        display = safe_filename(filename, index)
        if not content:
            return
        if len(self.attachments) >= MAX_ATTACHMENTS:
            self.notes.append(f"Attachments beyond {MAX_ATTACHMENTS} were left in the raw message.")
            return
        if len(content) > self.max_attachment_bytes:
            self.notes.append(
                f"Attachment {display!r} ({len(content)} bytes) is over the size limit; "
                "it is kept in the raw message only."
            )
            return
        self.attachments.append(ParsedAttachment(display, content))


def _body_part(msg: EmailMessage, kind: str, notes: list[str]) -> Message | None:
    try:
        return msg.get_body(preferencelist=(kind,))
    except Exception:
        notes.append(f"The {kind} body could not be located.")
        return None


def _defects(msg: Message) -> list[str]:
    names: set[str] = set()
    try:
        for part in msg.walk():
            names.update(type(defect).__name__ for defect in part.defects)
    except RecursionError:
        names.add("NestingTooDeep")
    return sorted(names)


def parse(raw: bytes, *, max_attachment_bytes: int) -> ParsedEmail:
    notes: list[str] = []
    try:
        msg = _parser.parsebytes(raw)
    except Exception as exc:  # the parser is lenient; this is the last resort
        raise Unparseable(f"The MIME structure could not be parsed ({type(exc).__name__}).") from None
    assert isinstance(msg, EmailMessage)  # noqa: S101  # policy.default builds EmailMessage
    from_address, from_name = _sender(msg, notes)
    subject = " ".join(clean_text(_header(msg, "Subject", notes) or "").split())
    references: list[str] = []
    for name in ("In-Reply-To", "References"):
        value = _header(msg, name, notes)
        tokens = message_id_tokens(value) if value else []
        references.extend(tokens if name == "In-Reply-To" else reversed(tokens))
    references = list(dict.fromkeys(references))[:MAX_REFERENCES]

    text_part = _body_part(msg, "plain", notes)
    html_part = _body_part(msg, "html", notes)
    text = _part_text(text_part, notes) if text_part is not None else ""
    html = sanitize_html(_part_text(html_part, notes)) if html_part is not None else ""
    walker = _Walker([p for p in (text_part, html_part) if p is not None], max_attachment_bytes, notes)
    walker.walk(msg)
    if not text and html:
        text = html_to_text(html)
    text = "\n\n".join(t for t in (text, *walker.extra_text) if t.strip())
    if len(html) > MAX_HTML_CHARS:
        notes.append("The HTML body is too large to show; the raw message has it.")
        html = ""
    if len(text) > MAX_TEXT_CHARS:
        notes.append(f"The text was cut at {MAX_TEXT_CHARS} characters; the raw message has it all.")
        text = text[:MAX_TEXT_CHARS]
    defects = _defects(msg)
    if defects:
        notes.append("MIME defects: " + ", ".join(defects))
    return ParsedEmail(
        message_id=_message_id(msg, notes),
        references=references,
        subject=subject[:300],
        from_address=from_address,
        from_name=from_name[:200],
        text=text,
        html=html,
        attachments=walker.attachments,
        notes=list(dict.fromkeys(notes))[:MAX_NOTES],
    )
