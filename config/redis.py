"""One Redis client per process for the code that talks to Redis directly (not through
Django's cache, the channel layer or Celery, which keep their own pools).

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

import redis
from django.conf import settings
from django.core.cache import BaseCache, caches
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


_caches: dict[int, BaseCache] = {}


def cache_shared() -> BaseCache:
    """The default cache as one handle for the whole process, for what is asked of it on
    every request. Django's `cache` is a handle per thread, each with a pool of its own:
    under Django's stock ASGI handler (a thread per request) every request connected to
    Redis anew, and the threads that serve now (HTTP_THREADS, the sockets') would still each
    hold connections. The handle's pool is thread-safe; it is rebuilt as the client above is."""
    key = os.getpid()
    handle = _caches.get(key)
    if handle is None:
        with _lock:
            handle = _caches.get(key)
            if handle is None:
                handle = _caches[key] = caches.create_connection("default")
    return handle


@receiver(setting_changed)
def _forget_handles(*, setting: str, **_: object) -> None:
    # The next call builds a handle on the new settings; one still in use elsewhere keeps
    # its own pool until it is dropped.
    if setting == "REDIS_URL":
        _clients.clear()
    elif setting == "CACHES":
        _caches.clear()
