"""Redis under concurrency: the live chat rate limiter, the sign-in throttle (Django's
cache) and the channel layer, all at once from many threads, as in a socket server whose
thread pool runs the visitors' frames while the event sender publishes.

A client (and pool) built per call broke here with redis-py 8: a collected client closed
the connections other threads were reading (visitor connects answered HTTP 500). The
server's own count of connections received tells whether clients are shared.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from channels.layers import get_channel_layer

from accounts import throttle
from channels_app.livechat import services as livechat
from config.redis import redis_client
from inbox import events
from tests.asgi import asgi_get
from tests.scale.conftest import PrivateRedis

THREADS, ROUNDS = 24, 40
GROUP = "scale.events"


def _work(worker: int) -> list[BaseException]:
    address = f"198.51.100.{worker}"
    errors: list[BaseException] = []
    for number in range(ROUNDS):
        try:
            assert livechat.connect_allowed(address) in (True, False)
            throttle.login_failure_record(username=f"agent{worker}", address=address)
            throttle.login_retry_after(username=f"agent{worker}", address=address)
            events.send_to_groups([GROUP], {"type": "scale.ping", "worker": worker, "number": number})
        except Exception as error:  # every failure is reported, not just the first
            errors.append(error)
    return errors


async def test_limiter_throttle_and_channel_layer_share_clients_under_concurrency(
    on_private_redis: PrivateRedis,
) -> None:
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(GROUP, listener)
    opened_before = on_private_redis.info("stats")["total_connections_received"]

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(THREADS) as pool:
        workers = [loop.run_in_executor(pool, _work, worker) for worker in range(THREADS)]
        heard: set[tuple[int, int]] = set()
        while len(heard) < THREADS * ROUNDS:
            message: dict[str, Any] = await asyncio.wait_for(layer.receive(listener), timeout=10)
            heard.add((message["worker"], message["number"]))
        errors = [error for found in await asyncio.gather(*workers) for error in found]
    await layer.group_discard(GROUP, listener)

    assert errors == []
    # Each thread holds at most one limiter and one cache connection; the layer a few.
    opened = on_private_redis.info("stats")["total_connections_received"] - opened_before
    assert opened <= 2 * THREADS + 10, opened
    # No increment lost: each address's connects add up to its rounds (over however many
    # fixed windows the run spanned).
    with redis.Redis.from_url(on_private_redis.url) as server:
        for worker in range(THREADS):
            keys = server.keys(f"portcullis:livechat:rate:connect:198.51.100.{worker}:*")
            assert sum(int(server.get(key) or 0) for key in keys) == ROUNDS
    # The names that failed ROUNDS times are throttled: the counts were shared too.
    assert throttle.login_retry_after(username="agent0", address="198.51.100.0") is not None


def test_one_client_per_process_and_url(on_private_redis: PrivateRedis, settings: Any) -> None:
    with ThreadPoolExecutor(8) as pool:
        clients = set(pool.map(lambda _: id(redis_client()), range(32)))
    assert len(clients) == 1
    first = redis_client()
    settings.REDIS_URL = on_private_redis.url.replace("/0", "/1")
    assert redis_client() is not first
    assert redis_client().connection_pool.connection_kwargs["db"] == 1


@pytest.mark.django_db(transaction=True)
async def test_requests_share_the_cache_pool_instead_of_connecting_each(
    on_private_redis: PrivateRedis,
) -> None:
    # Every request asks the cache (the blocked-address check), each from a context, and so
    # a cache handle, of its own: their pools must be one.
    opened_before = on_private_redis.info("stats")["total_connections_received"]
    for _ in range(30):
        assert (await asgi_get("/healthz"))[0] == 200
    opened = on_private_redis.info("stats")["total_connections_received"] - opened_before
    # At most one per thread that served them at once (one after another here: one).
    assert opened <= 2, opened
