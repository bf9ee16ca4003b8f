"""One Redis client per process for the code that talks to Redis directly, and one pool per
process for Django's cache (the channel layer and Celery keep their own pools).

A client built per call owns its pool and closes it when it is collected: with redis-py
8 that closed connections other threads of the same process were still reading ("Bad
file descriptor", "I/O operation on closed file", answered as HTTP 500), and every call
paid a TCP connect. The shared client's pool is thread-safe; it is rebuilt in a forked
child (Celery prefork), which must not use its parent's sockets, and when the settings
change (tests that point at a Redis of their own), which `setting_changed` reports.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

_lock = threading.Lock()
# Keyed by process id: a forked child must not use its parent's sockets.
_clients: dict[int, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """The process's client for settings.REDIS_URL (which must be set)."""
    key = os.getpid()
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                # Redis(connection_pool=...) does not own the pool, so dropping a client
                # never closes connections in use elsewhere.
                pool = redis.ConnectionPool.from_url(settings.REDIS_URL)
                client = _clients[key] = redis.Redis(connection_pool=pool)
    return client


class ProcessConnectionPool(redis.ConnectionPool):
    """The connection pool of Django's Redis cache (CACHES' `pool_class`): one per process
    and server, whatever handle asks.

    Django keeps a cache handle per context (asgiref's Local), each building its own pool:
    under ASGI every request and every socket's database call is a context of its own, so
    each one that used the cache connected to Redis anew, under load the largest part of a
    small request's time and most of a visitor's first message. A forked child (Celery
    prefork) builds its own, and must not use its parent's sockets."""

    _shared: dict[tuple[int, str, str], redis.ConnectionPool] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> redis.ConnectionPool:  # type: ignore[override]
        key = (os.getpid(), url, repr(sorted(kwargs.items())))
        pool = cls._shared.get(key)
        if pool is None:
            with _lock:
                pool = cls._shared.setdefault(key, redis.ConnectionPool.from_url(url, **kwargs))
        return pool


@receiver(setting_changed)
def _forget_handles(*, setting: str, **_: object) -> None:
    # The next call builds a handle on the new settings; one still in use elsewhere keeps
    # its own pool until it is dropped.
    if setting == "REDIS_URL":
        _clients.clear()
