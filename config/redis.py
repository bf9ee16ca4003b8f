"""One Redis client per process for the code that talks to Redis directly (not through
Django's cache, the channel layer or Celery, which keep their own pools).

A client built per call owns its pool and closes it when it is collected: with redis-py
8 that closed connections other threads of the same process were still reading ("Bad
file descriptor", "I/O operation on closed file", answered as HTTP 500), and every call
paid a TCP connect. The shared client's pool is thread-safe; it is rebuilt in a forked
child (Celery prefork), which must not use its parent's sockets, and when the URL changes
(tests that point at a Redis of their own).
"""

from __future__ import annotations

import os
import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_clients: dict[tuple[int, str], redis.Redis] = {}


def redis_client() -> redis.Redis:
    """The process's client for settings.REDIS_URL (which must be set)."""
    key = (os.getpid(), settings.REDIS_URL)
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
