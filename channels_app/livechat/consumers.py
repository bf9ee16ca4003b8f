"""The website visitor's socket, /ws/widget/<key>/.

Visitors are on the customer's site, a foreign origin, so this socket does not pass the
agents' gate. It has its own: the page's Origin must be on the channel's allowlist (a
missing Origin is refused), the first frame must prove who the visitor is (a signed
token, and the site's HMAC when the channel demands one), and frames are bounded in size
and rate. A flood closes only the flooding socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from accounts.sockets import FrameBudget, PooledDatabaseConsumer, scope_client_ip, scope_header, socket_db
from channels_app.livechat import selectors
from channels_app.livechat import services as livechat
from channels_app.livechat.models import FieldMode, LiveChatChannel
from channels_app.livechat.services import (
    Close,
    Held,
    Received,
    StoreBusy,
    Visitor,
    VisitorInputError,
    VisitorRefused,
)
from config import metrics
from inbox.event_types import LiveChatMessage
from inbox.events import CatchUp, inbox_group, layer_send, sequences_now
from inbox.services import KnownThread

HELLO_TIMEOUT_SECONDS = 10
# Frames of any kind a socket may send: a burst, then a steady trickle. Messages are
# limited separately (per visitor and per address, across servers) by livechat.
FRAME_BURST, FRAMES_PER_SECOND = 20, 2.0
# Frames refused for rate before the socket is closed as a flood.
FLOOD_STRIKES = 10
TYPING_INTERVAL_SECONDS = 2.0
# How long a socket trusts its last look at the channel (enabled, the page's origin still
# listed) before a message reads it again. A change sends `livechat.channel_changed`, read
# at once; this bounds the wait when that event was lost (the layer delivers at most once)
# or the change sent none (a queryset update()).
CHANNEL_RECHECK_SECONDS = 30.0


class StoreSlots:
    """Visitors' messages being stored by this process now. Past the limit a message is
    answered "busy" at once (the widget keeps it and sends it again after a pause) rather
    than queued behind the others: a queue that only grows turns seconds of delay into
    dropped sockets. One event loop per process, so a plain count needs no lock."""

    def __init__(self) -> None:
        self.taken = 0
        metrics.LIVECHAT_STORES_IN_FLIGHT.set_function(lambda: self.taken)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self.taken >= settings.LIVECHAT_STORES_IN_FLIGHT:
            metrics.LIVECHAT_BUSY.inc()
            raise StoreBusy(retry_after_ms=settings.LIVECHAT_BUSY_RETRY_MS)
        self.taken += 1
        try:
            yield
        finally:
            self.taken -= 1


store_slots = StoreSlots()


def _frame_too_big(text: str) -> bool:
    """The limit is in bytes, as the frame crossed the wire in UTF-8: a frame of multi-byte
    characters can be under it in characters and several times over it in bytes."""
    limit = settings.LIVECHAT_MAX_FRAME_BYTES
    # Each character is at least a byte: a frame over in characters is not encoded at all.
    # A lone surrogate cannot come off the wire, but must not make the count raise.
    return len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit


class VisitorConsumer(PooledDatabaseConsumer):
    channel: LiveChatChannel | None = None
    visitor: Visitor | None = None
    conversation_id: int | None = None
    # Where this visitor's next message goes (their last one's, or the open conversation
    # they returned to), and until when (monotonic) the channel is known to allow the
    # page: a follow-up message then reads neither again.
    thread: KnownThread | None = None
    channel_allowed_until = 0.0

    async def connect(self) -> None:
        self.origin = scope_header(self.scope, b"origin")
        self.ip_address = scope_client_ip(self.scope)
        key = str(self.scope["url_route"]["kwargs"].get("key", ""))
        channel = await socket_db(selectors.channel_for_visitor)(key=key, origin=self.origin)
        # Refused before the handshake completes: the browser sees a failed connection.
        if channel is None or not await socket_db(livechat.connect_allowed)(self.ip_address):
            await self.close()
            return
        self.channel = channel
        self.budget = FrameBudget(burst=FRAME_BURST, per_second=FRAMES_PER_SECOND)
        self.strikes = 0
        self.typing_at = 0.0
        self.catch_up = CatchUp(self._catch_up_history)
        await self.accept()
        await self.channel_layer.group_add(selectors.channel_group(channel.pk), self.channel_name)
        # Just read, and a change from now on is heard: the first message need not read it
        # again (one sent in the moment before the join waits for the recheck's bound).
        self._channel_allowed_now()
        self.hello_timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT_SECONDS, self._hello_overdue)

    async def disconnect(self, code: int) -> None:
        if self.channel is None:
            return
        self.hello_timer.cancel()
        self.catch_up.cancel()
        await self.channel_layer.group_discard(selectors.channel_group(self.channel.pk), self.channel_name)
        if self.visitor is not None:
            await self.channel_layer.group_discard(self.visitor.group, self.channel_name)
        self.channel = None

    def _hello_overdue(self) -> None:
        if self.channel is not None and self.visitor is None:
            # Kept referenced until done: a bare task could be collected mid-flight.
            self.closing = asyncio.ensure_future(self.close(code=4408))

    async def _send(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content))

    async def _refuse(self, refused: VisitorRefused) -> None:
        await self._send({"type": "closed", "code": refused.code, "message": refused.reason})
        await self.close(code=refused.code)
        await self.disconnect(refused.code)

    # --- Frames in -----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.channel is None:
            return
        if text_data is None:
            await self.close(code=1003)  # unsupported data
            return
        if _frame_too_big(text_data):
            await self.close(code=1009)  # too big
            return
        if not self.budget.take():
            self.strikes += 1
            if self.strikes > FLOOD_STRIKES:
                await self._refuse(VisitorRefused(Close.TOO_MANY, "Too many messages. Reload the page."))
            else:
                await self._send({"type": "error", "code": "rate_limited", "message": "Slow down a little."})
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self._send({"type": "error", "code": "invalid", "message": "Frames are JSON objects."})
            return
        try:
            await self._frame(content)
        except VisitorRefused as refused:
            await self._refuse(refused)
        except VisitorInputError as error:
            frame = {"type": "error", "code": error.code, "message": str(error), "id": content.get("id")}
            if error.retry_after_ms is not None:
                frame["retry_after_ms"] = error.retry_after_ms
            await self._send(frame)

    async def _frame(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        if self.visitor is None:
            if kind != "hello":
                raise VisitorInputError("hello_first", "Say hello first.")
            await self._hello(content)
            return
        if time.time() > self.visitor_until:
            raise VisitorRefused(Close.TOKEN_INVALID, "Your chat session has expired.")
        if kind == "message":
            await self._message(content)
        elif kind == "offline":
            await self._offline(content)
        elif kind == "prechat":
            await self._prechat(content)
        elif kind == "typing":
            await self._typing()
        elif kind == "read":
            visitor = self.visitor
            await socket_db(livechat.visitor_read_mark)(
                visitor=visitor, up_to_message_id=content.get("up_to")
            )
        elif kind == "ping":
            await self._send({"type": "pong"})
            # The widget pings every 30 s: a lost last reply, or a Redis restart, shows here.
            await self.catch_up.verify([self.visitor.group])
        else:
            raise VisitorInputError("invalid", "Unknown frame type.")

    async def _hello(self, content: dict[str, Any]) -> None:
        assert self.channel is not None  # noqa: S101  # receive() returns early otherwise
        token = content.get("token")
        welcome = await socket_db(livechat.visitor_welcome)(
            channel=self.channel,
            token=token if token else None,
            site_user_id=content.get("user_id"),
            user_hash=content.get("user_hash"),
        )
        self.hello_timer.cancel()
        self.visitor = welcome.visitor
        self.visitor_until = time.time() + settings.LIVECHAT_VISITOR_TOKEN_MAX_AGE
        self.conversation_id = welcome.conversation_id
        self.thread = welcome.thread
        # Read before joining: a reply sent in between then shows as a gap.
        self.catch_up.watch.start(await sequences_now([welcome.visitor.group]))
        await self.channel_layer.group_add(welcome.visitor.group, self.channel_name)
        channel = self.channel
        await self._send(
            {
                "type": "welcome",
                "token": welcome.token,
                "history": welcome.history,
                "online": welcome.agents_online,
                "welcome_text": channel.welcome_text,
                "offline_form": channel.offline_form,
                "offline_text": channel.offline_text,
                "prechat": {
                    "name": channel.prechat_name,
                    "email": channel.prechat_email,
                    "needed": self._prechat_pending(),
                },
                "limits": {
                    "text": settings.LIVECHAT_MAX_TEXT_LENGTH,
                    "upload": settings.LIVECHAT_MAX_UPLOAD_BYTES,
                },
            }
        )

    def _prechat_pending(self) -> bool:
        """Whether to show the pre-chat form: the channel asks for something and this visitor
        has neither answered it nor chatted before (or a required answer is missing)."""
        assert self.channel is not None and self.visitor is not None  # noqa: S101
        asked = self.channel.prechat_name != FieldMode.OFF or self.channel.prechat_email != FieldMode.OFF
        fresh = not self.visitor.prechat_done and self.conversation_id is None
        return (asked and fresh) or livechat.prechat_missing(self.channel, self.visitor)

    async def _prechat(self, content: dict[str, Any]) -> None:
        assert self.channel is not None and self.visitor is not None  # noqa: S101
        self.visitor = livechat.visitor_prechat(
            channel=self.channel, visitor=self.visitor, name=content.get("name"), email=content.get("email")
        )
        await self._send(
            {"type": "token", "token": livechat.token_issue(self.visitor), "prechat_needed": False}
        )

    async def _message(self, content: dict[str, Any]) -> None:
        assert self.channel is not None and self.visitor is not None  # noqa: S101
        if livechat.prechat_missing(self.channel, self.visitor):
            raise VisitorInputError("prechat_required", "Fill in the form first.")
        channel_allowed = time.monotonic() < self.channel_allowed_until
        with store_slots.slot():
            received = await socket_db(livechat.visitor_message_receive)(
                visitor=self.visitor,
                origin=self.origin,
                ip_address=self.ip_address,
                client_id=content.get("id"),
                text=content.get("text"),
                held=Held(channel_allowed=channel_allowed, thread=self.thread),
            )
        if not channel_allowed:  # it was read for this message, and allowed it
            self._channel_allowed_now()
        await self._delivered(content, received)

    async def _offline(self, content: dict[str, Any]) -> None:
        assert self.visitor is not None  # noqa: S101
        with store_slots.slot():
            received = await socket_db(livechat.visitor_offline_message)(
                visitor=self.visitor,
                origin=self.origin,
                ip_address=self.ip_address,
                client_id=content.get("id"),
                email=content.get("email"),
                text=content.get("text"),
            )
        await self._delivered(content, received)

    async def _delivered(self, content: dict[str, Any], received: Received) -> None:
        """The message is stored: acknowledge it, and show it in the visitor's other tabs."""
        assert self.visitor is not None  # noqa: S101
        self.conversation_id = received.conversation_id
        if received.thread is not None:
            self.thread = received.thread
        metrics.LIVECHAT_MESSAGES.inc()
        await self._send({"type": "ack", "id": content.get("id"), "message": received.shown})
        frame: LiveChatMessage = {"type": "livechat.message", "message": received.shown}
        await layer_send(self.visitor.group, frame)

    async def _typing(self) -> None:
        assert self.visitor is not None  # noqa: S101
        now = time.monotonic()
        if self.conversation_id is None or now - self.typing_at < TYPING_INTERVAL_SECONDS:
            return
        self.typing_at = now
        await layer_send(
            inbox_group(self.visitor.inbox_id),
            {
                "type": "inbox.event",
                "event": "typing",
                "inbox_id": self.visitor.inbox_id,
                "conversation_id": self.conversation_id,
                "visitor": True,
            },
        )

    # --- Events out ----------------------------------------------------------------------

    async def livechat_message(self, event: dict[str, Any]) -> None:
        if self.visitor is None:
            return
        if "seq" in event:
            await self.catch_up.seen(self.visitor.group, event["seq"])
        await self._send({"type": "message", "message": event["message"]})

    async def _catch_up_history(self) -> None:
        """A reply to this visitor was lost on the way: send the history as stored."""
        visitor = self.visitor
        if visitor is None:
            return
        history = await socket_db(selectors.visitor_history_now)(
            inbox_id=visitor.inbox_id, handle=visitor.handle
        )
        await self._send({"type": "sync", "history": history})

    async def livechat_typing(self, event: dict[str, Any]) -> None:
        if self.visitor is not None:
            await self._send({"type": "typing", "name": event.get("name") or "Support"})

    async def livechat_read(self, event: dict[str, Any]) -> None:
        if self.visitor is not None:
            await self._send({"type": "read", "up_to": event["up_to"]})

    def _channel_allowed_now(self) -> None:
        self.channel_allowed_until = time.monotonic() + CHANNEL_RECHECK_SECONDS

    async def livechat_channel_changed(self, event: dict[str, Any]) -> None:
        """A supervisor changed the channel: this page may no longer be allowed (the
        socket's frames wait meanwhile: a consumer handles one message at a time)."""
        if self.channel is None:
            return
        if not await socket_db(selectors.channel_still_allows)(
            channel_id=self.channel.pk, origin=self.origin
        ):
            await self._refuse(VisitorRefused(Close.CHANNEL_CLOSED, "This chat is closed."))
            return
        self._channel_allowed_now()
