"""Live events for sockets, sent only after the database commit.

A socket never announces a row that rolled back. Consumers join one group per inbox the
policy lets them see, and re-check access per event.

Sending from synchronous code (views, Celery tasks) goes through one long-lived event loop
per process: `async_to_sync` would start a fresh loop, and with it a fresh Redis
connection, for every event — most of the cost of storing an inbound message.

The channel layer delivers at most once: a full queue or a Redis restart drops events
silently. So every event that reports a stored change carries a sequence number per
stream (its group: an inbox, a visitor's conversation), counted in Redis and shared by
every process. A socket that sees a number skipped (and not arriving late) or the count
restart catches its page up from the database, so a lost event delays a change, never
hides it. Typing and presence notices are momentary and carry none.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable

import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import transaction

from config import metrics
from config.redis import redis_client
from inbox.event_types import InboxEventName, InboxEventPayload, InboxLayerMessage, LayerMessage

logger = logging.getLogger(__name__)


def inbox_group(inbox_id: int) -> str:
    return f"inbox.{inbox_id}"


# Layer message types that report a stored change: these are numbered per group.
SEQUENCED_TYPES = frozenset({"inbox.event", "livechat.message"})
# A number skipped may still come: two processes number and publish in parallel.
GAP_GRACE_SECONDS = 0.5
# Beyond this many skipped numbers, waiting for each is pointless: catch up at once.
MAX_AWAITED_GAP = 1000
SEQUENCE_TTL_SECONDS = 2 * 24 * 3600


def _sequence_key(group: str) -> str:
    return f"portcullis:live:seq:{group}"


# Numbers for any number of streams in one command: each counter is (re)created from the
# clock in microseconds, not from 1 (after a Redis restart the numbers jump far ahead of any
# given before, which sockets read as "catch up", where a count restarting low could repeat
# numbers they already saw), counted up, and kept alive while used (idle streams are
# forgotten, a visitor's mostly; one that resumes restarts ahead). A key named twice is
# counted twice, in order.
_NUMBERING_SCRIPT = """
local numbers = {}
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1], 'NX')
    numbers[i] = redis.call('INCR', key)
    redis.call('EXPIRE', key, ARGV[2])
end
return numbers
"""
# Events the sender takes from its queue at once: numbered in one round trip.
SEND_BATCH = 200


def _numbered(sends: list[tuple[str, LayerMessage]]) -> list[LayerMessage]:
    """Each (group, message)'s message as sent: numbered in its group when it reports a
    stored change. One Redis round trip for all of them (was three commands per send)."""
    messages = [message for _, message in sends]
    counted = [i for i, message in enumerate(messages) if message.get("type") in SEQUENCED_TYPES]
    if not settings.REDIS_URL or not counted:
        return messages
    numbers = redis_client().register_script(_NUMBERING_SCRIPT)(
        keys=[_sequence_key(sends[i][0]) for i in counted],
        args=[time.time_ns() // 1000, SEQUENCE_TTL_SECONDS],
    )
    for i, number in zip(counted, numbers, strict=True):
        messages[i] = dict(messages[i], seq=int(number))
    return messages


# The counters of streams, one not numbered yet (or forgotten) started from the clock as
# numbering would start it: its first event is then the next number, not a jump that the
# socket has to read as "catch up" (every new visitor's page did, on its first message).
# A counter started so lives an hour unless an event is numbered on it (then it is kept as
# long as it is used): every widget that connects starts one, and a flood of connections
# must not fill Redis for days. One that ran out under an open page costs it a catch-up.
STARTED_SEQUENCE_TTL_SECONDS = 3600
_STARTING_SCRIPT = """
local numbers = {}
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2])
    numbers[i] = redis.call('GET', key)
end
return numbers
"""


def _sequences_now(groups: list[str]) -> dict[str, int]:
    if not settings.REDIS_URL or not groups:
        return {}
    values = redis_client().register_script(_STARTING_SCRIPT)(
        keys=[_sequence_key(group) for group in groups],
        args=[time.time_ns() // 1000, STARTED_SEQUENCE_TTL_SECONDS],
    )
    return {group: int(value) for group, value in zip(groups, values, strict=True)}


async def sequences_now(groups: list[str]) -> dict[str, int]:
    """The last number given in each group (a new stream's started now): read before
    joining a group, so that an event sent in between shows as a gap rather than
    vanishing; and after a Redis restart the counter jumps ahead of what was seen."""
    return await sync_to_async(_sequences_now, thread_sensitive=False)(groups)


class SequenceWatch:
    """One socket's view of its streams: the highest number seen per group, and the ones
    skipped over that may still arrive out of order."""

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._awaited: dict[str, set[int]] = {}
        # The numbers last given up on: the page caught up for them, so one arriving after
        # all is late, not the sign of a counter that went back (which would catch up again).
        self._given_up: dict[str, set[int]] = {}

    def start(self, sequences: dict[str, int]) -> None:
        """Follow these groups from these numbers on."""
        for group, sequence in sequences.items():
            self._highest[group] = sequence
            self._awaited.pop(group, None)
            self._given_up.pop(group, None)

    def stop(self, groups: set[str] | frozenset[str]) -> None:
        for group in groups:
            self._highest.pop(group, None)
            self._awaited.pop(group, None)
            self._given_up.pop(group, None)

    def see(self, group: str, sequence: object) -> bool:
        """Record an event's number; True when the page must catch up now (the count
        restarted, or too many were skipped to wait for)."""
        if not isinstance(sequence, int):
            return False
        highest = self._highest.get(group)
        if highest is None or sequence == highest + 1:
            self._highest[group] = sequence
            return False
        if sequence > highest:
            self._highest[group] = sequence
            if sequence - highest > MAX_AWAITED_GAP:
                self._awaited.pop(group, None)
                return True
            self._awaited.setdefault(group, set()).update(range(highest + 1, sequence))
            return False
        awaited = self._awaited.get(group)
        if awaited is not None and sequence in awaited:
            awaited.discard(sequence)
            return False
        given_up = self._given_up.get(group)
        if given_up is not None and sequence in given_up:
            given_up.discard(sequence)
            return False
        # Lower than seen and not awaited: the counter was reset behind our back.
        self._highest[group] = sequence
        self._awaited.pop(group, None)
        return True

    def compare(self, group: str, current: int) -> bool:
        """Check against the group's counter in Redis, for a loss no later event showed:
        numbers given since are awaited (they may be on their way); True when the counter
        restarted."""
        highest = self._highest.get(group)
        if highest is None or current == highest:
            self._highest.setdefault(group, current)
            return False
        if current < highest or current - highest > MAX_AWAITED_GAP:
            self.start({group: current})
            return True
        self._awaited.setdefault(group, set()).update(
            range(highest + 1, min(current, highest + MAX_AWAITED_GAP) + 1)
        )
        self._highest[group] = current
        return False

    @property
    def waiting(self) -> bool:
        return any(self._awaited.values())

    def give_up(self) -> bool:
        """The grace has passed: True if numbers are still missing (no longer awaited; one
        that comes after all is taken as late)."""
        missing = self.waiting
        self._given_up = {group: numbers for group, numbers in self._awaited.items() if numbers}
        self._awaited.clear()
        return missing


class CatchUp:
    """A socket's numbered events: calls `catch_up` when its page must reload from the
    database (a number lost, after a grace for late arrivals, or the count restarted)."""

    def __init__(self, catch_up: Callable[[], Awaitable[None]]) -> None:
        self.watch = SequenceWatch()
        self._catch_up = catch_up
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def seen(self, group: str, sequence: object) -> None:
        await self._settle(self.watch.see(group, sequence))

    async def verify(self, groups: list[str]) -> None:
        """Compare with Redis's counters (periodically): a lost event that was the last one
        of its stream, or a Redis restart with no event since, is found here."""
        try:
            counters = await sequences_now(groups)
        except redis.RedisError:
            return  # Redis is away: the next check, or the next event, tells
        restarted = [self.watch.compare(group, current) for group, current in counters.items()]
        await self._settle(any(restarted))

    async def _settle(self, now: bool) -> None:
        if now:
            await self._catch_up()
        elif self.watch.waiting and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(GAP_GRACE_SECONDS, self._grace_over)

    def _grace_over(self) -> None:
        self._timer = None
        if self.watch.give_up():
            # Kept referenced until done: a bare task could be collected mid-flight.
            task = asyncio.ensure_future(self._catch_up())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Sender:
    """A daemon thread running one event loop that sends queued events in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Each entry: the groups, the message, and when it was handed over (for the lag).
        self._queue: asyncio.Queue[tuple[list[str], LayerMessage, float]] | None = None
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, groups: list[str], message: LayerMessage) -> None:
        loop, queue = self._running()
        self._idle.clear()
        loop.call_soon_threadsafe(queue.put_nowait, (groups, message, time.perf_counter()))

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything submitted so far was handed to the channel layer."""
        if self._loop is None or self._pid != os.getpid():
            return True
        return self._idle.wait(timeout)

    def _running(
        self,
    ) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[list[str], LayerMessage, float]]]:
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
        metrics.LIVE_SENDER_QUEUE.set_function(self._queue.qsize)
        ready.set()
        loop.run_until_complete(self._drain(self._queue))

    async def _drain(self, queue: asyncio.Queue[tuple[list[str], LayerMessage, float]]) -> None:
        while True:
            if queue.empty():
                self._idle.set()
            taken = [await queue.get()]
            while len(taken) < SEND_BATCH and not queue.empty():
                taken.append(queue.get_nowait())
            now = time.perf_counter()
            for _, _, submitted in taken:
                metrics.LIVE_SEND_LAG.observe(now - submitted)
            sends = [(group, message) for groups, message, _ in taken for group in groups]
            try:
                messages = _numbered(sends)
            except redis.RedisError:
                messages = [message for _, message in sends]  # unnumbered, still worth sending
            for (group, _), message in zip(sends, messages, strict=True):
                await layer_send(group, message)


async def layer_send(group: str, message: LayerMessage) -> bool:
    """A group send that outlives a Redis restart and never raises: False (counted and
    logged) when the event could not be sent. The row behind it is committed, and a page
    that missed it catches up at the next numbered event or check; a socket must not die
    because Redis blinked."""
    # Looked up per send (a dictionary read): a layer rebuilt since (new settings) is the
    # one used, not the one a long-lived sender started with.
    layer = get_channel_layer()
    try:
        try:
            await layer.group_send(group, message)
        except (redis.ConnectionError, ConnectionError):
            # After a restart the first command meets a dead pooled connection; the next
            # one connects afresh.
            await layer.group_send(group, message)
    except Exception:
        metrics.LIVE_EVENTS_FAILED.inc()
        logger.warning("live event %s to %s not delivered", message.get("type"), group, exc_info=True)
        return False
    metrics.LIVE_EVENTS.labels(str(message.get("type"))).inc()
    return True


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
