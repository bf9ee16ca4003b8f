"""The sockets' database work runs on a thread pool of its own (accounts.sockets), sized by
SOCKET_DB_THREADS, not on the loop's default executor (6 threads on two cores): a socket
process with more stores in flight than that made them wait for a thread."""

from __future__ import annotations

import asyncio
import threading

from django.conf import settings

from accounts.sockets import socket_db, socket_db_executor


def test_socket_database_work_runs_side_by_side_on_the_sockets_own_threads() -> None:
    # Every call waits for all the others: with fewer threads than calls, the barrier
    # breaks instead of filling.
    calls = settings.SOCKET_DB_THREADS
    everyone = threading.Barrier(calls, timeout=5)

    def store() -> str:
        everyone.wait()
        return threading.current_thread().name

    async def sockets() -> list[str]:
        return await asyncio.gather(*(socket_db(store)() for _ in range(calls)))

    names = asyncio.run(sockets())

    assert len(set(names)) == calls
    assert all(name.startswith("socket-db") for name in names)
    assert socket_db_executor()._max_workers == settings.SOCKET_DB_THREADS
