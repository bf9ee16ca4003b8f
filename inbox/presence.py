"""Agents' presence (online / away), kept in the cache with a time to live.

An agent's open page refreshes it with heartbeats over its socket; a closed laptop simply
lets it lapse. Nothing here grants access: presence only tells visitors whether someone
is there, and colleagues who is.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache


class Presence(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


def _key(user_id: int) -> str:
    return f"presence:{user_id}"


def presence_set(*, user_id: int, presence: Presence) -> Presence:
    """Record the agent's presence; returns what it was before."""
    key = _key(user_id)
    previous = cache.get(key)
    if presence is Presence.OFFLINE:
        cache.delete(key)
    else:
        cache.set(key, presence.value, timeout=settings.AGENT_PRESENCE_TTL_SECONDS)
    return Presence(previous) if previous else Presence.OFFLINE


def presences(user_ids: Iterable[int]) -> dict[int, Presence]:
    """Each agent's presence; the absent are offline. One cache round trip."""
    ids = list(user_ids)
    found = cache.get_many([_key(user_id) for user_id in ids])
    return {user_id: Presence(found.get(_key(user_id), Presence.OFFLINE)) for user_id in ids}
