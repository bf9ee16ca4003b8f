"""Separate pools behind the proxy, as `make run` starts them with Redis: nginx with
config/proxy.py's configuration, one uvicorn taking only pages (ASGI_SERVES=http) and one
taking only sockets (ASGI_SERVES=sockets). Each pool refuses what belongs to the other, so
a socket that opens through the proxy went to the socket pool, and a page that loads to
the HTTP pool."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from config.proxy import nginx_conf
from tests.browser import free_port, serve_app
from tests.livechat.conftest import SHOP, Chat
from tests.scale.test_cross_process import _agent, _agent_session, _visitor

pytestmark = pytest.mark.django_db(transaction=True)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BEHIND_PROXY = ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")


@contextmanager
def proxy(root: Path, http_pool: str, socket_pool: str) -> Iterator[str]:
    port = free_port()
    root.mkdir()
    conf = root / "nginx.conf"
    conf.write_text(
        nginx_conf(
            listen=f"127.0.0.1:{port}",
            http_pool=[http_pool.removeprefix("http://")],
            socket_pool=[socket_pool.removeprefix("http://")],
            prefix=root,
        )
    )
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (root / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not come up"
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_pages_and_sockets_in_separate_pools_behind_the_proxy(chat: Chat, tmp_path: Path) -> None:
    client = _agent_session(chat.agent)

    async def scenario(front: str, http_pool: str, socket_pool: str) -> None:
        # Through the proxy, both kinds of socket open on the socket pool (the HTTP pool
        # would refuse them) and say hello; messages between two processes are
        # test_cross_process.py's.
        agent = await _agent(front, client)
        visitor = await _visitor(front, chat.channel.key)
        await visitor.close()
        await agent.close()

        # Each pool refuses the other's work.
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{http_pool.replace('http', 'ws', 1)}/ws/widget/{chat.channel.key}/", origin=SHOP)
        assert refused.value.response.status_code == 403
        async with httpx.AsyncClient() as http:
            misrouted = await http.get(f"{socket_pool}/accounts/login/")
            assert misrouted.status_code == 421 and "websockets only" in misrouted.text
            assert (await http.get(f"{socket_pool}/healthz")).status_code == 200
            assert (await http.get(f"{front}/accounts/login/")).status_code == 200

    (tmp_path / "http").mkdir()
    (tmp_path / "sockets").mkdir()
    with (
        serve_app(tmp_path / "http", *BEHIND_PROXY, ASGI_SERVES="http") as http_pool,
        serve_app(tmp_path / "sockets", *BEHIND_PROXY, ASGI_SERVES="sockets") as socket_pool,
        proxy(tmp_path / "proxy", http_pool, socket_pool) as front,
    ):
        asyncio.run(scenario(front, http_pool, socket_pool))
