"""The agents' socket, /ws/agent/: live events of the inboxes the policy lets them see.

It reaches here only through the verified-session gate (config/asgi.py), and trusts
nothing it was told on connect for long:

- every inbound frame re-verifies the session and the account, and asks the policy about
  the conversation it names;
- the set of inboxes it follows (its channel-layer groups) comes from the policy and is
  recomputed the moment access may have changed: a signal on the user's group
  (accounts.live), a timer at the next known deadline (a grant's expiry, the session's idle
  or absolute timeout), and a periodic sweep for changes made behind the application's back;
- a session that is no longer valid closes the socket; narrowed access drops the groups.

Events carry ids and states, not content: pages fetch what changed over HTTP, through the
same gate and policy as any page view.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404

from accounts.devices.sockets import socket_device_trust
from accounts.live import EVERY_SOCKET_GROUP, user_group
from accounts.models import User
from accounts.services import SESSION_LAST_SEEN_KEY, SESSION_STARTED_KEY
from accounts.sockets import (
    FrameBudget,
    PooledDatabaseConsumer,
    scope_client_ip,
    scope_header,
    socket_db,
    socket_is_verified,
)
from audit.detectors.sockets import socket_inboxes_joined
from audit.services import SESSION_ID_KEY, access_events_batched
from inbox import policy, presence, services
from inbox.event_types import InboxLayerMessage
from inbox.events import CatchUp, inbox_group, layer_send, sequences_now
from inbox.models import ChannelKind, Conversation
from inbox.policy import AccessContext, Action, LiveScope

logger = logging.getLogger(__name__)

MAX_FRAME_CHARS = 4096
# Typing notices and heartbeats are a few a minute; this only stops a runaway page.
FRAME_BURST, FRAMES_PER_SECOND = 30, 3.0
# A timer that would fire before the database clock agrees the grant expired just runs again.
MIN_RECHECK_DELAY = 0.2
SESSION_ENDED = 4401


def _session_store(session_key: str) -> SessionBase:
    store: type[SessionBase] = import_module(settings.SESSION_ENGINE).SessionStore
    return store(session_key=session_key)


@dataclass(frozen=True)
class AgentAccess:
    ctx: AccessContext
    # When the session's idle or absolute timeout falls, as a Unix time.
    session_deadline: float


def agent_access(scope: dict[str, Any]) -> AgentAccess | None:
    """The socket's session and account, verified now against the session store and the
    database (not the copies the socket was opened with); None when they are not valid."""
    user, session = scope.get("user"), scope.get("session")
    session_key = getattr(session, "session_key", None)
    if not isinstance(user, User) or not session_key:
        return None
    current = _session_store(session_key)
    # A logged-out session is gone from the store; a new login has a new key.
    if current.get(SESSION_KEY) != str(user.pk):
        return None
    # Read before the check, which treats the check itself as activity: a socket merely
    # being open must not keep an idle session alive.
    started = float(current.get(SESSION_STARTED_KEY, 0))
    last_seen = float(current.get(SESSION_LAST_SEEN_KEY, 0))
    try:
        verified = socket_is_verified({**scope, "session": current})
    except ObjectDoesNotExist:  # the account was deleted
        return None
    if not verified:
        return None
    deadline = min(
        started + settings.SESSION_ABSOLUTE_TIMEOUT.total_seconds(),
        last_seen + settings.SESSION_IDLE_TIMEOUT.total_seconds(),
    )
    # The session's second factor, so a rule requiring a (device-bound) passkey binds the
    # socket as it binds pages: without it, such a rule would fail every socket closed.
    authenticator, passkey_flags = AccessContext.session_factor(current.get)
    ctx = AccessContext(
        user=user,
        session_id=current.get(SESSION_ID_KEY),
        ip_address=scope_client_ip(scope),
        surface="socket",
        authenticator=authenticator,
        passkey_flags=passkey_flags,
        device_trust=socket_device_trust(scope),
    )
    return AgentAccess(ctx=ctx, session_deadline=deadline)


@dataclass(frozen=True)
class AgentState:
    access: AgentAccess
    live: LiveScope

    @property
    def next_check(self) -> float:
        candidates = [self.access.session_deadline, time.time() + settings.LIVE_ACCESS_RECHECK_SECONDS]
        if self.live.expires_at is not None:
            candidates.append(self.live.expires_at.timestamp())
        return min(candidates)


def agent_state(scope: dict[str, Any]) -> AgentState | None:
    access = agent_access(scope)
    if access is None:
        return None
    return AgentState(access=access, live=policy.live_scope(access.ctx))


class FrameRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _conversation_id(content: dict[str, Any]) -> int:
    value = content.get("conversation_id")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise FrameRefused("invalid", "conversation_id must be a conversation's id.")
    return value


def _conversation(ctx: AccessContext, content: dict[str, Any], action: Action) -> Conversation:
    try:
        return policy.access_conversation(ctx, _conversation_id(content), action)
    except Http404:
        raise FrameRefused("not_found", "No such conversation.") from None
    except policy.StepUpRequired as error:
        raise FrameRefused("step_up_required", str(error)) from None
    except policy.Denied as error:
        raise FrameRefused("forbidden", str(error)) from None


def _agent_name(user: User) -> str:
    return user.first_name or user.get_username()


def typing_frame(ctx: AccessContext, content: dict[str, Any]) -> dict[str, Any]:
    """The agent is typing a reply: colleagues see it, and so does a live chat visitor."""
    with access_events_batched():
        conversation = _conversation(ctx, content, Action.REPLY)
    if conversation.inbox.channel_kind == ChannelKind.LIVECHAT:
        # channels_app builds on inbox: imported where it is needed, not at load time.
        from channels_app import livechat

        livechat.agent_typing_relay(conversation=conversation, agent_name=ctx.user.first_name)
    return {
        "event": "typing",
        "inbox_id": conversation.inbox_id,
        "conversation_id": conversation.pk,
        "user_id": ctx.user.pk,
        "name": _agent_name(ctx.user),
    }


def read_frame(ctx: AccessContext, content: dict[str, Any]) -> None:
    """The agent has seen the contact's messages up to `message_id`."""
    message_id = content.get("message_id")
    if not isinstance(message_id, int) or isinstance(message_id, bool) or not 0 < message_id < 2**63:
        raise FrameRefused("invalid", "message_id must be a message's id.")
    with access_events_batched():
        conversation = _conversation(ctx, content, Action.VIEW)
        count = services.conversation_read_mark(
            ctx=ctx, conversation=conversation, up_to_message_id=message_id
        )
    if count and conversation.inbox.channel_kind == ChannelKind.LIVECHAT:
        from channels_app import livechat

        livechat.agent_read_relay(conversation=conversation, up_to_message_id=message_id)


def presence_frame(ctx: AccessContext, content: dict[str, Any]) -> presence.Presence | None:
    """Record the agent's presence; returns it when it changed (colleagues are then told)."""
    status = content.get("status")
    if status not in (presence.Presence.ONLINE, presence.Presence.AWAY):
        raise FrameRefused("invalid", "status must be online or away.")
    now = presence.Presence(status)
    before = presence.presence_set(user_id=ctx.user.pk, presence=now)
    return now if before is not now else None


class AgentConsumer(PooledDatabaseConsumer):
    live: LiveScope | None = None
    joined: frozenset[str] = frozenset()

    async def connect(self) -> None:
        self.lock = asyncio.Lock()
        self.timer: asyncio.TimerHandle | None = None
        self.pending: set[asyncio.Task[None]] = set()
        self.catch_up = CatchUp(self._resync)
        self.budget = FrameBudget(burst=FRAME_BURST, per_second=FRAMES_PER_SECOND)
        # Same origin only: a page on a sibling host or another port of this host is
        # same-site, so the browser would send the session cookie along.
        scheme = "https" if self.scope.get("scheme") == "wss" else "http"
        host = scope_header(self.scope, b"host")
        if not host or scope_header(self.scope, b"origin") != f"{scheme}://{host}":
            await self.close()
            return
        state = await socket_db(agent_state)(self.scope)
        if state is None:
            await self.close()
            return
        self.user_id = state.access.ctx.user.pk
        await self.accept()
        for group in (user_group(self.user_id), EVERY_SOCKET_GROUP):
            await self.channel_layer.group_add(group, self.channel_name)
        await self._apply(state)
        await self._send({"type": "hello", "user_id": self.user_id})

    async def disconnect(self, code: int) -> None:
        self.live = None
        if self.timer is not None:
            self.timer.cancel()
        if not hasattr(self, "user_id"):  # refused on connect: nothing was joined
            return
        self.catch_up.cancel()
        for group in {*self.joined, user_group(self.user_id), EVERY_SOCKET_GROUP}:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = frozenset()

    async def _send(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content))

    # --- Continuous verification -------------------------------------------------------

    async def _apply(self, state: AgentState) -> None:
        """Follow exactly the inboxes the policy allows now; tell the page when that narrowed."""
        previous = self.live
        # Narrow the filter first: an event already in flight for a dropped inbox is
        # refused by it even before the group is left.
        self.live = state.live
        inbox_ids = {*state.live.inbox_ids, *state.live.conversation_inboxes.values()}
        wanted = frozenset(inbox_group(inbox_id) for inbox_id in inbox_ids)
        added = wanted - self.joined
        if added:
            # Judged on Celery against the inboxes this user's sockets usually follow.
            await socket_db(socket_inboxes_joined)(
                user_id=self.user_id,
                inbox_ids=[inbox_id for inbox_id in inbox_ids if inbox_group(inbox_id) in added],
            )
        # Read before joining: an event sent in between then shows as a gap.
        self.catch_up.watch.start(await sequences_now(sorted(added)))
        for group in added:
            await self.channel_layer.group_add(group, self.channel_name)
        for group in self.joined - wanted:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.catch_up.watch.stop(self.joined - wanted)
        self.joined = wanted
        if previous is not None and (
            previous.inbox_ids != state.live.inbox_ids
            or previous.conversation_inboxes != state.live.conversation_inboxes
        ):
            await self._send({"type": "access.changed"})
        self._schedule(state.next_check)

    def _schedule(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        delay = max(MIN_RECHECK_DELAY, at - time.time())
        self.timer = asyncio.get_running_loop().call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        task = asyncio.ensure_future(self._recheck())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _recheck(self) -> None:
        async with self.lock:
            if self.live is None:
                return
            state = await socket_db(agent_state)(self.scope)
            if self.live is None:  # closed while the check ran
                return
            if state is None:
                await self._end()
            else:
                await self._apply(state)
                await self.catch_up.verify(sorted(self.joined))

    async def _end(self) -> None:
        """The session or account is no longer valid: stop everything, then close."""
        self.live = None
        if self.timer is not None:
            self.timer.cancel()
        self.catch_up.cancel()
        for group in {*self.joined, user_group(self.user_id), EVERY_SOCKET_GROUP}:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = frozenset()
        await socket_db(presence.presence_set)(user_id=self.user_id, presence=presence.Presence.OFFLINE)
        await self._send({"type": "session.ended"})
        await self.close(code=SESSION_ENDED)

    async def access_recheck(self, event: dict[str, Any]) -> None:
        await self._recheck()

    async def _resync(self) -> None:
        """An event of a followed inbox was lost: the page reloads what it shows."""
        if self.live is not None:
            await self._send({"type": "resync"})

    # --- Events out ----------------------------------------------------------------------

    async def inbox_event(self, event: dict[str, Any]) -> None:
        inbox_id = event.get("inbox_id")
        if self.live is not None and isinstance(inbox_id, int) and "seq" in event:
            # Counted before the filter: an event this agent may not see is no gap.
            await self.catch_up.seen(inbox_group(inbox_id), event["seq"])
        live = self.live
        if live is None or not live.allows(inbox_id, event.get("conversation_id")):
            return
        await self._send({**{k: v for k, v in event.items() if k != "type"}, "type": "event"})

    async def security_alert(self, event: dict[str, Any]) -> None:
        # Sent only to the user groups of supervisors who manage the alert's subject.
        if self.live is not None:
            await self._send({**event, "type": "security.alert"})

    # --- Frames in -----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.live is None:
            return
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self.close(code=1009 if text_data else 1003)
            return
        if not self.budget.take():
            await self._send({"type": "error", "code": "rate_limited"})
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self._send({"type": "error", "code": "invalid"})
            return
        async with self.lock:
            await self._frame(content)

    async def _frame(self, content: dict[str, Any]) -> None:
        access = await socket_db(agent_access)(self.scope)
        if access is None:
            await self._end()
            return
        kind = content.get("type")
        try:
            if kind == "typing":
                event = await socket_db(typing_frame)(access.ctx, content)
                typing: InboxLayerMessage = {"type": "inbox.event", **event}
                await layer_send(inbox_group(event["inbox_id"]), typing)
            elif kind == "read":
                await socket_db(read_frame)(access.ctx, content)
            elif kind == "presence":
                changed = await socket_db(presence_frame)(access.ctx, content)
                if changed is not None and self.live is not None:
                    await self._presence_announce(access.ctx.user, changed)
            elif kind == "ping":
                await self._send({"type": "pong"})
            else:
                raise FrameRefused("invalid", "Unknown frame type.")
        except FrameRefused as refused:
            await self._send({"type": "error", "code": refused.code, "message": str(refused)})

    async def _presence_announce(self, user: User, status: presence.Presence) -> None:
        assert self.live is not None  # noqa: S101  # checked by the caller
        for inbox_id in self.live.inbox_ids:
            await layer_send(
                inbox_group(inbox_id),
                {
                    "type": "inbox.event",
                    "event": "presence",
                    "inbox_id": inbox_id,
                    "user_id": user.pk,
                    "name": _agent_name(user),
                    "status": status.value,
                },
            )
