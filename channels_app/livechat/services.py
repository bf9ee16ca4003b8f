"""Live chat writes: visitors' sessions, messages and uploads, and agents' replies to them.

Who a visitor is comes from a signed, expiring token the widget keeps (and, when the site
signs its user in for us, from an HMAC of that user's id). Everything a visitor sends is
stored through `inbox.services.inbound_message_record` before anyone is told about it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import EmailValidator
from django.db import transaction

from channels_app.common.inbound import sniff
from channels_app.common.outbound import ReadyReply
from channels_app.livechat import selectors
from channels_app.livechat.models import FieldMode, LiveChatChannel, livechat_secret_default
from config.redis import redis_client
from inbox import events
from inbox.event_types import (
    LiveChatChannelChanged,
    LiveChatMessage,
    LiveChatRead,
    LiveChatTyping,
    WidgetMessage,
)
from inbox.models import Attachment, ChannelKind, Conversation, Inbox, Message
from inbox.services import (
    InboundMessage,
    InboundResult,
    KnownThread,
    attachment_file_store,
    inbound_message_record,
)

TOKEN_SALT = "portcullis.livechat.visitor"  # noqa: S105  # a namespace, not a secret
MAX_TOKEN_LENGTH = 2048
# What a site may use as its user id: printable ASCII, no spaces (ids, emails, UUIDs).
SITE_USER_ID = re.compile(r"[\x21-\x7e]{1,128}")
CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_NAME_LENGTH = 100
MAX_FILENAME_LENGTH = 200


class Close:
    """Websocket close codes the widget understands (4000-4999 are the application's)."""

    TOKEN_INVALID = 4401  # forged, expired or another channel's: start afresh
    IDENTITY_REFUSED = 4403  # missing or wrong HMAC of the site's user id
    CHANNEL_CLOSED = 4404  # disabled, deleted, or this origin no longer allowed
    TOO_MANY = 4429  # flooding


class VisitorRefused(Exception):
    """The socket must close with this code; the reason is safe to show the visitor."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class VisitorInputError(ValueError):
    """A frame or upload the visitor can correct: answered with an error, the socket stays."""

    def __init__(self, code: str, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        # Set when the same frame will be taken later: the widget sends it again then.
        self.retry_after_ms = retry_after_ms


class RateLimited(VisitorInputError):
    def __init__(self) -> None:
        super().__init__("rate_limited", "You are sending messages too fast. Wait a moment.")


class StoreBusy(VisitorInputError):
    """The server is storing as many messages as it can: this one is not taken now."""

    def __init__(self, *, retry_after_ms: int) -> None:
        super().__init__(
            "busy", "Many messages at once: yours is sent in a moment.", retry_after_ms=retry_after_ms
        )


@dataclass(frozen=True)
class Visitor:
    channel_id: int
    inbox_id: int
    handle: str
    identified: bool = False
    name: str = ""
    email: str = ""
    prechat_done: bool = False

    @property
    def group(self) -> str:
        return selectors.visitor_group(self.handle)

    @property
    def sender_name(self) -> str:
        name = self.name or "Website visitor"
        # Said by the visitor, so marked as such wherever agents see it.
        return f"{name} ({self.email}, unverified)" if self.email else name


@dataclass(frozen=True)
class Received:
    """A visitor's message as stored: its conversation, the message as the widget shows it,
    and where it went for the socket to hold (None for a resend)."""

    conversation_id: int
    shown: WidgetMessage
    thread: KnownThread | None


@dataclass(frozen=True)
class Held:
    """What a visitor's socket learnt from its earlier messages, so the next one does not
    read it again: that the channel still allowed the page, and the thread the last
    message joined. Both are the socket's own, never taken from a frame."""

    channel_allowed: bool = False
    thread: KnownThread | None = None


@dataclass(frozen=True)
class Welcome:
    visitor: Visitor
    token: str
    conversation_id: int | None
    history: list[WidgetMessage]
    agents_online: bool
    # The conversation a returning visitor's next message continues, while it is open.
    thread: KnownThread | None


# --- Identity and tokens ----------------------------------------------------------------


def identity_hash(secret: str, site_user_id: str) -> str:
    """What the site's backend computes: hex HMAC-SHA256 of its user id under the secret."""
    return hmac.new(secret.encode(), site_user_id.encode(), hashlib.sha256).hexdigest()


def _identity_check(channel: LiveChatChannel, site_user_id: str | None, user_hash: str | None) -> str | None:
    """The verified site user id, None for an anonymous visitor; refuses a bad claim."""
    if site_user_id is None and user_hash is None:
        if channel.identity_required:
            raise VisitorRefused(Close.IDENTITY_REFUSED, "Sign in on the website to chat with us.")
        return None
    if (
        not isinstance(site_user_id, str)
        or not isinstance(user_hash, str)
        or not SITE_USER_ID.fullmatch(site_user_id)
        # Constant time: the comparison must not reveal how much of a guess was right.
        or not hmac.compare_digest(identity_hash(channel.identity_secret, site_user_id), user_hash.lower())
    ):
        raise VisitorRefused(Close.IDENTITY_REFUSED, "The website's sign-in could not be verified.")
    return site_user_id


def token_issue(visitor: Visitor) -> str:
    claims = {
        "c": visitor.channel_id,
        "h": visitor.handle,
        "n": visitor.name,
        "e": visitor.email,
        "p": visitor.prechat_done,
    }
    return signing.TimestampSigner(salt=TOKEN_SALT).sign_object(claims)


def _token_read(channel: LiveChatChannel, token: str) -> dict[str, Any]:
    refused = VisitorRefused(Close.TOKEN_INVALID, "Your chat session has expired.")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise refused
    try:
        claims = signing.TimestampSigner(salt=TOKEN_SALT).unsign_object(
            token, max_age=settings.LIVECHAT_VISITOR_TOKEN_MAX_AGE
        )
    except (signing.BadSignature, ValueError):  # SignatureExpired is a BadSignature
        raise refused from None
    if (
        not isinstance(claims, dict)
        or claims.get("c") != channel.pk
        or not isinstance(claims.get("h"), str)
        or not claims["h"].startswith(f"{channel.pk}:")
    ):
        raise refused
    return claims


def _visitor_from(
    channel: LiveChatChannel, claims: dict[str, Any] | None, site_user_id: str | None
) -> Visitor:
    """Resume the token's visitor, or begin a new one.

    A token bound to a site user resumes only with that same user verified again: on a
    shared computer, the next person (signed out, or someone else) starts afresh.
    """
    if site_user_id is not None:
        handle, identified = f"{channel.pk}:u:{site_user_id}", True
    elif claims is not None and claims["h"].startswith(f"{channel.pk}:v:"):
        handle, identified = claims["h"], False
    else:
        handle, identified = f"{channel.pk}:v:{secrets.token_urlsafe(16)}", False
    visitor = Visitor(channel_id=channel.pk, inbox_id=channel.inbox_id, handle=handle, identified=identified)
    if claims is not None and claims["h"] == handle:
        visitor = replace(
            visitor,
            name=str(claims.get("n") or ""),
            email=str(claims.get("e") or ""),
            prechat_done=bool(claims.get("p")),
        )
    return visitor


def visitor_for_token(*, channel: LiveChatChannel, token: object) -> Visitor:
    """The visitor a token names, for requests other than the socket's hello (uploads).

    The site's HMAC was checked when the token was issued; the token carries that on."""
    if not isinstance(token, str) or not token:
        raise VisitorRefused(Close.TOKEN_INVALID, "Your chat session has expired.")
    claims = _token_read(channel, token)
    handle: str = claims["h"]
    return Visitor(
        channel_id=channel.pk,
        inbox_id=channel.inbox_id,
        handle=handle,
        identified=handle.startswith(f"{channel.pk}:u:"),
        name=str(claims.get("n") or ""),
        email=str(claims.get("e") or ""),
        prechat_done=bool(claims.get("p")),
    )


def visitor_welcome(
    *, channel: LiveChatChannel, token: str | None, site_user_id: str | None, user_hash: str | None
) -> Welcome:
    """Open a visitor's session: who they are, their history, whether anyone is online."""
    site_user = _identity_check(channel, site_user_id, user_hash)
    claims = _token_read(channel, token) if token is not None else None
    visitor = _visitor_from(channel, claims, site_user)
    conversation = selectors.visitor_conversation(inbox_id=channel.inbox_id, handle=visitor.handle)
    # Their latest conversation, when not resolved, is the one the full path would continue
    # (the latest of those not resolved): held, a page's first message need not look it up.
    thread = None
    if conversation is not None and conversation.status != Conversation.Status.RESOLVED:
        thread = KnownThread(conversation.contact_id, conversation.pk)
    return Welcome(
        visitor=visitor,
        token=token_issue(visitor),
        conversation_id=conversation.pk if conversation else None,
        history=selectors.visitor_history(conversation),
        agents_online=selectors.agents_available(channel.inbox),
        thread=thread,
    )


def _clean_line(value: object, *, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    value = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C")
    return " ".join(value.split())[:limit]


def _email_clean(value: object) -> str:
    email = value.strip() if isinstance(value, str) else ""
    if not email:
        return ""
    try:
        EmailValidator()(email)
    except ValidationError:
        raise VisitorInputError("invalid_email", "Enter a valid email address.") from None
    return email


def visitor_prechat(*, channel: LiveChatChannel, visitor: Visitor, name: object, email: object) -> Visitor:
    """The pre-chat form: the fields the channel asks for, checked; returns the visitor."""
    clean_name = _clean_line(name, limit=MAX_NAME_LENGTH) if channel.prechat_name != FieldMode.OFF else ""
    clean_email = _email_clean(email) if channel.prechat_email != FieldMode.OFF else ""
    if channel.prechat_name == FieldMode.REQUIRED and not clean_name:
        raise VisitorInputError("name_required", "Enter your name.")
    if channel.prechat_email == FieldMode.REQUIRED and not clean_email:
        raise VisitorInputError("email_required", "Enter your email address.")
    return replace(visitor, name=clean_name, email=clean_email, prechat_done=True)


def prechat_missing(channel: LiveChatChannel, visitor: Visitor) -> bool:
    return (channel.prechat_name == FieldMode.REQUIRED and not visitor.name) or (
        channel.prechat_email == FieldMode.REQUIRED and not visitor.email
    )


# --- Limits -----------------------------------------------------------------------------


def _hits(counters: list[str]) -> list[int]:
    """Count one more for each counter in the current fixed window, shared by every server
    (Redis), and return the counts. One round trip: this runs for every message."""
    window = settings.LIVECHAT_RATE_WINDOW_SECONDS
    keys = [f"portcullis:livechat:rate:{counter}:{int(time.time() // window)}" for counter in counters]
    if not settings.REDIS_URL:  # `make run` without Redis: one process, its own cache
        counts = []
        for key in keys:
            cache.add(key, 0, timeout=window * 2)
            counts.append(cache.incr(key))
        return counts
    pipe = redis_client().pipeline(transaction=False)
    for key in keys:
        pipe.incr(key)
        pipe.expire(key, window * 2, nx=True)
    return [int(count) for count in pipe.execute()[::2]]


def connect_allowed(ip_address: str | None) -> bool:
    [count] = _hits([f"connect:{ip_address}"])
    return count <= settings.LIVECHAT_IP_CONNECTS_PER_WINDOW


def _message_allowed(visitor: Visitor, ip_address: str | None) -> None:
    # Refused attempts count too: a flood must not cost nothing.
    by_visitor, by_address = _hits([f"visitor:{visitor.group}", f"ip:{ip_address}"])
    if (
        by_visitor > settings.LIVECHAT_VISITOR_MESSAGES_PER_WINDOW
        or by_address > settings.LIVECHAT_IP_MESSAGES_PER_WINDOW
    ):
        raise RateLimited


# --- Visitors' messages -----------------------------------------------------------------


def _text_clean(text: object) -> str:
    if not isinstance(text, str):
        raise VisitorInputError("invalid", "The message has no text.")
    text = text.replace("\x00", "").strip()
    if not text:
        raise VisitorInputError("empty", "The message is empty.")
    if len(text) > settings.LIVECHAT_MAX_TEXT_LENGTH:
        raise VisitorInputError(
            "too_long", f"Keep messages under {settings.LIVECHAT_MAX_TEXT_LENGTH} characters."
        )
    return text


def _provider_id(visitor: Visitor, client_id: object) -> str:
    if not isinstance(client_id, str) or not CLIENT_MESSAGE_ID.fullmatch(client_id):
        raise VisitorInputError("invalid", "The message has no valid id.")
    # Scoped to the visitor: one visitor cannot collide with (or replay) another's ids.
    return f"livechat:{visitor.group.rsplit('.', 1)[1]}:{client_id}"


def _channel_inbox(visitor: Visitor, origin: str, *, known_allowed: bool) -> Inbox:
    """The channel's inbox, re-checked for each message unless the socket knows it still
    allows the page: a channel disabled (or an origin dropped from its allowlist) a moment
    ago takes no more messages."""
    if not known_allowed and not selectors.channel_still_allows(channel_id=visitor.channel_id, origin=origin):
        raise VisitorRefused(Close.CHANNEL_CLOSED, "This chat is closed.")
    # The inbox row itself is not needed: the message only refers to it.
    return Inbox(pk=visitor.inbox_id, channel_kind=ChannelKind.LIVECHAT)


def _store(visitor: Visitor, origin: str, text: str, provider_id: str, held: Held) -> InboundResult:
    inbox = _channel_inbox(visitor, origin, known_allowed=held.channel_allowed)
    return inbound_message_record(
        InboundMessage(
            inbox=inbox,
            channel_kind=ChannelKind.LIVECHAT,
            handle=visitor.handle,
            sender_name=visitor.sender_name,
            text=text,
            provider_message_id=provider_id,
            subject=text.splitlines()[0][:100],
            known_thread=held.thread,
        )
    )


def _received(recorded: InboundResult, attachments: list[Attachment]) -> Received:
    message = recorded.message
    return Received(
        message.conversation_id, selectors.message_payload(message, attachments=attachments), recorded.thread
    )


def visitor_message_receive(
    *,
    visitor: Visitor,
    origin: str,
    ip_address: str | None,
    client_id: object,
    text: object,
    held: Held = Held(),
) -> Received:
    """Store a visitor's message (once per client id, so a resend after a reconnect is
    harmless) and return it as the widget shows it. Agents hear of it after the commit.

    With what the socket holds, a follow-up costs two statements (the inbox's redaction
    rules, and one that stores the message and wakes its conversation)."""
    clean = _text_clean(text)
    provider_id = _provider_id(visitor, client_id)
    _message_allowed(visitor, ip_address)
    return _received(_store(visitor, origin, clean, provider_id, held), attachments=[])


def visitor_offline_message(
    *, visitor: Visitor, origin: str, ip_address: str | None, client_id: object, email: object, text: object
) -> Received:
    """The offline form: a message with an address to answer by email."""
    address = _email_clean(email)
    if not address:
        raise VisitorInputError("email_required", "Enter your email address so we can write back.")
    clean = _text_clean(text)
    provider_id = _provider_id(visitor, client_id)
    _message_allowed(visitor, ip_address)
    body = f"Offline message. Reply to {address} (given by the visitor, not verified).\n\n{clean}"
    recorded = _store(replace(visitor, email=visitor.email or address), origin, body, provider_id, Held())
    return _received(recorded, attachments=[])


def visitor_read_mark(*, visitor: Visitor, up_to_message_id: object) -> None:
    """The visitor has seen the agents' replies up to this one."""
    if not isinstance(up_to_message_id, int) or not 0 < up_to_message_id < 2**63:
        raise VisitorInputError("invalid", "Unknown message.")
    contact = selectors.visitor_contact(visitor.handle)
    if contact is None:
        return
    with transaction.atomic():
        read = Message.objects.filter(
            inbox_id=visitor.inbox_id,
            conversation__contact=contact,
            direction=Message.Direction.OUTBOUND,
            delivery_status__in=[Message.DeliveryStatus.SENT, Message.DeliveryStatus.DELIVERED],
            pk__lte=up_to_message_id,
        )
        conversation_ids = set(read.values_list("conversation_id", flat=True))
        if read.update(delivery_status=Message.DeliveryStatus.READ):
            for conversation_id in conversation_ids:
                events.publish_after_commit(
                    inbox_id=visitor.inbox_id,
                    event="message.delivery",
                    payload={
                        "conversation_id": conversation_id,
                        "message_id": up_to_message_id,
                        "status": Message.DeliveryStatus.READ,
                    },
                )


def _filename_clean(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _clean_line(name, limit=MAX_FILENAME_LENGTH).lstrip(".")
    return name or "upload"


def visitor_upload_receive(
    *,
    visitor: Visitor,
    origin: str,
    ip_address: str | None,
    upload: UploadedFile,
    caption: object,
    client_id: object,
) -> Received:
    """A file sent from the widget, stored as a message with one attachment.

    The type is read from the bytes; the name the browser gave is kept for display only.
    """
    if upload.size is None or upload.size > settings.LIVECHAT_MAX_UPLOAD_BYTES:
        limit_mb = settings.LIVECHAT_MAX_UPLOAD_BYTES // (1024 * 1024)
        raise VisitorInputError("too_large", f"Files up to {limit_mb} MB can be sent.")
    content = upload.read(settings.LIVECHAT_MAX_UPLOAD_BYTES + 1)
    if len(content) > settings.LIVECHAT_MAX_UPLOAD_BYTES:
        raise VisitorInputError("too_large", "The file is too large.")
    content_type, extension = sniff(content)
    if content_type not in settings.LIVECHAT_UPLOAD_TYPES:
        raise VisitorInputError(
            "type_refused", "Send images (PNG, JPEG, GIF, WebP), PDF or plain text files."
        )
    filename = _filename_clean(upload.name or "")
    text = _clean_line(caption, limit=settings.LIVECHAT_MAX_TEXT_LENGTH) or f"Sent a file: {filename}"
    provider_id = _provider_id(visitor, client_id)
    _message_allowed(visitor, ip_address)
    path, digest = attachment_file_store(content=content, extension=extension)
    with transaction.atomic():
        recorded = _store(visitor, origin, text, provider_id, Held())
        message = recorded.message
        # A resend of the same client id finds its message, and the file, already stored.
        attachments = list(message.attachments.all())
        if not attachments:
            attachments = [
                Attachment.objects.create(
                    message=message,
                    file=path,
                    filename=filename,
                    content_type=content_type,
                    size=len(content),
                    sha256=digest,
                )
            ]
    return _received(recorded, attachments=attachments)


# --- Agents' replies --------------------------------------------------------------------


class LiveChatReplies:
    """The live chat channel in the outbound pipeline (channels_app.common.outbound): a reply
    reaches the visitor's open sockets with a group send after the commit (their history
    has it anyway), so it is delivered at once, with no task queue in between."""

    inline = True

    def reply_prepare(self, message: Message) -> ReadyReply | str:
        channel = selectors.channel_for_inbox(message.inbox_id)
        if channel is None or not channel.enabled:
            return "The inbox's live chat channel is missing or disabled."
        groups = selectors.visitor_groups_of(message.conversation)

        def send(idempotency_key: str) -> str:
            # The widget knows a message by its id: a repeated frame replaces, never adds.
            frame: LiveChatMessage = {
                "type": "livechat.message",
                "message": {**selectors.message_payload(message), "status": Message.DeliveryStatus.SENT},
            }
            transaction.on_commit(lambda: events.send_to_groups(groups, frame))
            # No provider names it: the key is unique per message, as the provider id must
            # be within an inbox (an empty one collided from the second reply on).
            return idempotency_key

        return ReadyReply(recipient=", ".join(groups), text_limit=None, send=send)


def agent_typing_relay(*, conversation: Conversation, agent_name: str) -> None:
    """Show the visitor that an agent is typing (the caller has checked the agent may reply)."""
    frame: LiveChatTyping = {"type": "livechat.typing", "name": agent_name}
    events.send_to_groups(selectors.visitor_groups_of(conversation), frame)


def agent_read_relay(*, conversation: Conversation, up_to_message_id: int) -> None:
    """Tell the visitor their messages were read (the caller has checked the agent's access)."""
    frame: LiveChatRead = {"type": "livechat.read", "up_to": up_to_message_id}
    events.send_to_groups(selectors.visitor_groups_of(conversation), frame)


def channel_changed(*, channel_id: int) -> None:
    """After the commit, make the channel's open visitor sockets check their page's origin
    against the new configuration (a disabled or deleted channel closes them all)."""
    group = selectors.channel_group(channel_id)
    frame: LiveChatChannelChanged = {"type": "livechat.channel_changed"}
    transaction.on_commit(lambda: events.send_to_groups([group], frame))


def channel_changed_receiver(sender: type[LiveChatChannel], instance: LiveChatChannel, **kwargs: Any) -> None:
    channel_changed(channel_id=instance.pk)


def identity_secret_rotate(*, channel: LiveChatChannel) -> str:
    """Issue a new identity secret; the old one stops verifying at once. Returns it to be
    shown once: the site's server needs it, nobody else does."""
    channel.identity_secret = livechat_secret_default()
    channel.save(update_fields=["identity_secret"])
    return channel.identity_secret
