"""A Celery worker killed (SIGKILL: no warm shutdown, nothing acknowledged) in the middle of
storing webhook deliveries: the work is finished, and every delivery ends as exactly one
message, none lost, none twice.

Only the public behaviour is used, so the test holds however processing is batched:
deliveries go in over HTTP to an app server, messages are read from the database. Tasks
are acknowledged late (CELERY_TASK_ACKS_LATE), so the killed one is still on the broker:
- the whole worker killed (a lost machine): the broker hands the task to the next worker
  once CELERY_VISIBILITY_TIMEOUT_SECONDS have passed (an hour in production; seconds here);
- only its pool process killed (the kernel's OOM killer): the worker sees it die and puts
  the task back at once (CELERY_TASK_REJECT_ON_WORKER_LOST), for its next pool process.
The broker and cache are a Redis of the test's own: a worker another test left running on
the shared one could take the work otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from channels_app.models import TelegramChannel
from inbox.models import Message
from tests.browser import serve_app
from tests.channels.webhooks.conftest import WEBHOOK_SECRET, telegram_update
from tests.scale.conftest import PrivateRedis, celery_worker_process, pool_children

pytestmark = pytest.mark.django_db(transaction=True)

DELIVERIES = 300
VISIBILITY_TIMEOUT = 2
FINISHED_WITHIN = 20.0
# A second run of work already done, had one come, would have stored more within this.
SETTLE = 0.5


async def _deliver(base: str, path: str, count: int) -> None:
    """Telegram's deliveries, a few at a time as its servers send them; each accepted."""
    limit = asyncio.Semaphore(8)
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def one(update_id: int) -> None:
            async with limit:
                response = await http.post(
                    path,
                    content=json.dumps(telegram_update(update_id, text=f"message {update_id}")),
                    headers=headers,
                )
                assert response.status_code == 200, response.text

        await asyncio.gather(*(one(update_id) for update_id in range(1, count + 1)))


def _stored(channel: TelegramChannel) -> Counter[str]:
    return Counter(Message.objects.filter(inbox=channel.inbox).values_list("text", flat=True))


def _wait_for(condition: Callable[[], bool], within: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {within} s: {log.read_text()[-3000:]}")
        time.sleep(0.02)


@pytest.mark.parametrize("killed", ["worker", "pool process"])
def test_a_worker_killed_mid_drain_loses_nothing_and_stores_nothing_twice(
    telegram_channel: Callable[..., TelegramChannel], private_redis: PrivateRedis, tmp_path: Path, killed: str
) -> None:
    channel = telegram_channel()
    env = {"REDIS_URL": private_redis.url, "CELERY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT)}
    with serve_app(tmp_path, DB_POOL_SIZE="4", **env) as base:
        # Stored and queued before any worker runs: the killed worker has a backlog to chew on.
        asyncio.run(_deliver(base, channel.webhook_path(), DELIVERIES))
    assert not _stored(channel)

    def some_stored() -> bool:
        return bool(_stored(channel))

    def all_stored() -> bool:
        return sum(_stored(channel).values()) >= DELIVERIES

    log = tmp_path / "celery.log"
    pool = "solo" if killed == "worker" else "prefork"
    with celery_worker_process(log, pool=pool, **env) as worker:
        _wait_for(some_stored, FINISHED_WITHIN, "the first worker stored nothing", log)
        if killed == "worker":
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        else:
            (child,) = pool_children(worker)
            os.kill(child, signal.SIGKILL)
        # Killed in the middle of the work, not after it.
        assert sum(_stored(channel).values()) < DELIVERIES
        if killed == "pool process":
            _wait_for(all_stored, FINISHED_WITHIN, "the worker's next pool process did not finish", log)
            time.sleep(SETTLE)
    if killed == "worker":
        # The task the dead worker held comes back once the visibility timeout has passed.
        time.sleep(VISIBILITY_TIMEOUT)
        with celery_worker_process(log, **env):
            _wait_for(all_stored, FINISHED_WITHIN, "the next worker did not finish", log)
            time.sleep(SETTLE)

    stored = _stored(channel)
    expected = Counter(f"message {update_id}" for update_id in range(1, DELIVERIES + 1))
    assert stored == expected, (
        f"lost {sorted(expected - stored)[:5]}, twice {[text for text, n in stored.items() if n > 1][:5]}"
    )
