"""Live events for sockets, sent only after the database commit.

A socket never announces a row that rolled back. Consumers join one group per inbox the
policy lets them see, and re-check access per event.

Sending from synchronous code (views, Celery tasks) goes through one long-lived event loop
per process: `async_to_sync` would start a fresh loop, and with it a fresh Redis
connection, for every event — most of the cost of storing an inbound message.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from inbox.event_types import InboxEventName, InboxEventPayload, InboxLayerMessage, LayerMessage

logger = logging.getLogger(__name__)


def inbox_group(inbox_id: int) -> str:
    return f"inbox.{inbox_id}"


class _Sender:
    """A daemon thread running one event loop that sends queued events in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[list[str], LayerMessage]] | None = None
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, groups: list[str], message: LayerMessage) -> None:
        loop, queue = self._running()
        self._idle.clear()
        loop.call_soon_threadsafe(queue.put_nowait, (groups, message))

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything submitted so far was handed to the channel layer."""
        if self._loop is None or self._pid != os.getpid():
            return True
        return self._idle.wait(timeout)

    def _running(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[list[str], LayerMessage]]]:
        with self._lock:
            # A forked worker (Celery prefork) inherits the object but not the thread.
            if self._loop is None or self._pid != os.getpid():
                ready = threading.Event()
                threading.Thread(target=self._serve, args=(ready,), name="live-events", daemon=True).start()
                ready.wait()
                self._pid = os.getpid()
            assert self._loop is not None and self._queue is not None  # noqa: S101  # set by _serve
            return self._loop, self._queue

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop, self._queue = loop, asyncio.Queue()
        ready.set()
        loop.run_until_complete(self._drain(self._queue))

    async def _drain(self, queue: asyncio.Queue[tuple[list[str], LayerMessage]]) -> None:
        layer = get_channel_layer()
        while True:
            if queue.empty():
                self._idle.set()
            groups, message = await queue.get()
            for group in groups:
                try:
                    await layer.group_send(group, message)
                except Exception:
                    # A live update is a convenience; the row is committed and pages show
                    # it on their next load. Never let a broker hiccup stop the sender.
                    logger.warning(
                        "live event %s to %s not delivered", message.get("type"), group, exc_info=True
                    )


_sender = _Sender()
atexit.register(_sender.flush)


def send_to_groups(groups: Iterable[str], message: LayerMessage) -> None:
    """Send a channel-layer message to groups from synchronous code, without waiting."""
    targets = list(groups)
    layer = get_channel_layer()
    if layer is None or not targets:
        return
    if isinstance(layer, InMemoryChannelLayer):
        # The in-memory layer (laptop mode) lives in the server's own loop: deliver there.
        try:
            for group in targets:
                async_to_sync(layer.group_send)(group, message)
        except Exception:
            logger.warning("live event %s not delivered", message.get("type"), exc_info=True)
        return
    _sender.submit(targets, message)


def flush(timeout: float = 2.0) -> bool:
    """Wait for queued events to reach the channel layer (tests, short-lived commands)."""
    return _sender.flush(timeout)


def publish_after_commit(*, inbox_id: int, event: InboxEventName, payload: InboxEventPayload) -> None:
    """Tell the inbox's pages, once the transaction commits. Event and payload are entries of
    the catalogue (inbox.event_types)."""
    message: InboxLayerMessage = {"type": "inbox.event", "event": event, "inbox_id": inbox_id, **payload}
    transaction.on_commit(lambda: send_to_groups([inbox_group(inbox_id)], message))
