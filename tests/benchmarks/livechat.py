"""Benchmark: live chat through the ASGI server processes on the Redis channel layer.

Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/portcullis_livechat_bench
REDIS_URL=redis://127.0.0.1:6379/14 .venv/bin/python tests/benchmarks/livechat.py
[--visitors 1000 --agents 20 --rate 200 --duration 60 --layer core|pubsub --pools one|split]`
(defaults are the issue's sizes; the layer and the pools default to what ships). It
(re)creates its own database, starts uvicorn on free ports (with `--pools split`, as `make
run` with Redis: one process for pages with ASGI_SERVES=http, where the agents' replies go,
and one for the sockets with ASGI_SERVES=sockets; `one`: a single process for both), then:

- opens `--visitors` widget sockets (each says hello like the widget) and `--agents` agent
  sockets (verified sessions, all in the chat inbox's team);
- sends `--rate` visitor messages per second in total for `--duration` seconds, spread
  evenly over the visitors; every message must reach every agent socket (visitor→agent:
  from the visitor's send to the agent socket's event, which the server emits after
  storing the message);
- meanwhile agents answer `--reply-rate` times per second in total through the reply form
  (HTTP POST, as the conversation page does), measured until the visitor's socket shows
  it (agent→visitor);
- the floor: the same fan-out with raw redis-py asyncio PUBLISH→SUBSCRIBE, one
  subscriber connection per simulated socket, at the same rates.

Prints one JSON line: p50/p99 in milliseconds for both directions, lost counts, the
floor and the ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import itertools
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_livechat_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "YmVuY2htYXJrLW9ubHktZmllbGQta2V5LTAwMDAwMDA=")
os.environ.setdefault("HTTPS", "0")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
# The agents' sockets are scripted, without a browser's device key; the proof's cost has a
# benchmark of its own (device_proof.py).
os.environ.setdefault("DEVICE_BINDING", "off")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from tests.benchmarks import report  # noqa: E402

ORIGIN = "http://bench.test"
USER_AGENT = "portcullis-livechat-bench"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def summary(latencies: list[float], expected: int) -> dict[str, Any]:
    return {
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "delivered": len(latencies),
        "expected": expected,
        "lost": expected - len(latencies),
    }


@contextlib.contextmanager
def collector_paused() -> Any:
    """This process generates the load and takes the times: its own collector's full
    passes over a thousand sockets' state (~100 ms each, measured) would show as the
    server's latency. Paused while measuring; the servers run with theirs."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Setup ------------------------------------------------------------------------------


def recreate_database() -> None:
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


@dataclass
class World:
    channel_key: str
    agents: list[dict[str, str]]  # cookies (session and CSRF) per agent


def build_world(n_agents: int) -> World:
    """The chat inbox, its channel, and agents with verified sessions (as after sign-in)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice
    from guardian.shortcuts import assign_perm

    from accounts.models import User, UserSession
    from accounts.services import OTP_VERIFIED_AT_KEY, SESSION_LAST_SEEN_KEY, SESSION_STARTED_KEY
    from audit.services import SESSION_ID_KEY
    from channels_app.models import LiveChatChannel
    from inbox.models import ChannelKind, Inbox, Team

    inbox = Inbox.objects.create(name="Website chat", channel_kind=ChannelKind.LIVECHAT)
    team = Team.objects.create(name="Chat team")
    for perm in ("view_inbox", "reply_inbox"):
        assign_perm(perm, team, inbox)
    channel = LiveChatChannel.objects.create(inbox=inbox, allowed_origins=ORIGIN, prechat_name="off")
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    agents = []
    for number in range(n_agents):
        user = User.objects.create_user(username=f"agent{number}", first_name=f"Agent{number}")
        user.groups.add(team)
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        record = UserSession.objects.create(
            user=user, user_agent_hash=hashlib.sha256(USER_AGENT.encode()).hexdigest()
        )
        now = time.time()
        session = store()
        session.update(
            {
                SESSION_KEY: str(user.pk),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: user.get_session_auth_hash(),
                SESSION_ID_KEY: record.pk,
                SESSION_STARTED_KEY: now,
                SESSION_LAST_SEEN_KEY: now,
                DEVICE_ID_SESSION_KEY: device.persistent_id,
                OTP_VERIFIED_AT_KEY: now,
            }
        )
        session.create()
        agents.append({settings.SESSION_COOKIE_NAME: session.session_key})
    return World(channel_key=channel.key, agents=agents)


def ws_deflate() -> str:
    """Off, as deployed (`--ws-per-message-deflate false`): compressing a visitor's text
    beside the secrets on the same socket is a compression oracle (CRIME/BREACH). The
    clients offer it, as browsers do; LIVECHAT_BENCH_WS_DEFLATE=true measures the server
    with it."""
    return os.environ.get("LIVECHAT_BENCH_WS_DEFLATE", "false")


def db_pool_size(serves: str) -> int:
    """Connections from a pool: one per HTTP request thread (config.handler); sockets need
    one per socket database thread and one for the agents' gate (accounts.sockets), so none
    of them waits for a connection."""
    pages, sockets = settings.HTTP_THREADS, settings.SOCKET_DB_THREADS + 1
    return {"http": pages, "sockets": sockets, "all": pages + sockets}[serves]


def start_server(port: int, layer: str, serves: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ASGI_SERVES": serves,
        "REDIS_CHANNEL_LAYER": layer,
        # Every simulated visitor shares 127.0.0.1: the per-address limits would throttle them.
        "LIVECHAT_IP_MESSAGES_PER_WINDOW": "100000000",
        "LIVECHAT_IP_CONNECTS_PER_WINDOW": "100000000",
        "DB_POOL_SIZE": os.environ.get("DB_POOL_SIZE", str(db_pool_size(serves))),
        "LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--ws-per-message-deflate",
        ws_deflate(),
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env)


async def wait_up(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(150):
            if process.poll() is not None:
                raise SystemExit("the ASGI server exited")
            try:
                if (await client.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the ASGI server did not come up")


# --- The run through the application ------------------------------------------------------


@dataclass
class Tally:
    sent_at: dict[str, float] = field(default_factory=dict)  # client id -> send time
    message_of: dict[str, int] = field(default_factory=dict)  # client id -> stored message id
    agent_seen: dict[int, list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )  # message id -> times
    conversation_of: dict[int, int] = field(default_factory=dict)  # inbound message id -> conversation
    visitor_of_conversation: dict[int, int] = field(default_factory=dict)
    visitor_of_client: dict[str, int] = field(default_factory=dict)
    reply_sent_at: dict[str, float] = field(default_factory=dict)  # reply tag -> POST time
    reply_seen_at: dict[str, float] = field(default_factory=dict)
    send_errors: int = 0
    busy: int = 0  # "busy" answers, each followed by a resend as the widget does
    resyncs: int = 0  # agent sockets told to catch up after a lost event
    unsent: int = 0
    dropped_sockets: int = 0  # closed by the server (an overloaded one times out its pings)
    reply_errors: int = 0
    lag: list[float] = field(default_factory=list)
    resends: list[asyncio.TimerHandle] = field(default_factory=list)
    busy_tries: dict[str, int] = field(default_factory=dict)


async def visitor_loop(index: int, ws: ClientConnection, tally: Tally) -> None:
    with contextlib.suppress(ConnectionClosed):
        await _visitor_frames(ws, tally)
    if ws.close_code not in (None, 1000):
        tally.dropped_sockets += 1


async def _visitor_frames(ws: ClientConnection, tally: Tally) -> None:
    async for raw in ws:
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "error" and frame.get("code") == "busy":
            tally.busy += 1
            tries = tally.busy_tries[frame["id"]] = tally.busy_tries.get(frame["id"], 0) + 1
            resend = asyncio.get_running_loop().call_later(
                min(frame.get("retry_after_ms", 500) * 2 ** (tries - 1), 15000)
                / 1000
                * (0.5 + random.random() / 2),
                lambda client_id=frame["id"]: asyncio.ensure_future(_resend(ws, client_id)),
            )
            tally.resends.append(resend)
        elif kind == "ack":
            tally.message_of[frame["id"]] = frame["message"]["id"]
        elif kind == "message" and frame["message"]["direction"] == "out":
            text = frame["message"]["text"]
            if text.startswith("reply "):
                tally.reply_seen_at.setdefault(text.split(" ", 2)[1], time.perf_counter())
        elif kind == "error":
            tally.send_errors += 1


async def _resend(ws: ClientConnection, client_id: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "message", "id": client_id, "text": f"bench {client_id}"}))


async def agent_loop(ws: ClientConnection, tally: Tally) -> None:
    with contextlib.suppress(ConnectionClosed):
        await _agent_frames(ws, tally)
    if ws.close_code not in (None, 1000):
        tally.dropped_sockets += 1


async def _agent_frames(ws: ClientConnection, tally: Tally) -> None:
    async for raw in ws:
        now = time.perf_counter()
        frame = json.loads(raw)
        if frame.get("type") == "event" and frame.get("event") in ("message.created", "conversation.created"):
            tally.agent_seen[frame["message_id"]].append(now)
            tally.conversation_of[frame["message_id"]] = frame["conversation_id"]
        elif frame.get("type") == "resync":
            tally.resyncs += 1


async def open_visitor(base_ws: str, key: str) -> ClientConnection:
    ws = await connect(
        f"{base_ws}/ws/widget/{key}/",
        origin=ORIGIN,  # type: ignore[arg-type]
        compression="deflate",  # as browsers do: the server decides
        proxy=None,
        user_agent_header=USER_AGENT,
        ping_interval=None,
        open_timeout=60,
        close_timeout=2,
    )
    await ws.send(json.dumps({"type": "hello"}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


async def open_agent(
    base: str, base_ws: str, cookies: dict[str, str]
) -> tuple[ClientConnection, httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url=base, cookies=cookies, headers={"User-Agent": USER_AGENT}, timeout=30)
    # A page view sets the CSRF cookie the reply form needs.
    page = await client.get("/")
    assert page.status_code == 200, (page.status_code, page.headers.get("location"))
    client.headers["X-CSRFToken"] = client.cookies[settings.CSRF_COOKIE_NAME]
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    ws = await connect(
        f"{base_ws}/ws/agent/",
        # The agents' socket takes only its own origin; in deployment the proxy puts the
        # pages and the sockets behind one, here each pool has a port of its own.
        origin=base_ws.replace("ws", "http", 1),  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        compression="deflate",  # as browsers do: the server decides
        proxy=None,
        user_agent_header=USER_AGENT,
        ping_interval=None,
        open_timeout=60,
        close_timeout=2,
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello", hello
    return ws, client


async def application_run(
    args: argparse.Namespace, world: World, base: str, sockets_base: str
) -> dict[str, Any]:
    base_ws = sockets_base.replace("http", "ws", 1)
    tally = Tally()
    agents = [await open_agent(base, base_ws, cookies) for cookies in world.agents]
    visitors: list[ClientConnection] = []
    opening = asyncio.Semaphore(50)

    async def opened() -> ClientConnection:
        async with opening:
            return await open_visitor(base_ws, world.channel_key)

    started = time.perf_counter()
    visitors = list(await asyncio.gather(*(opened() for _ in range(args.visitors))))
    connect_seconds = time.perf_counter() - started
    tasks = [asyncio.create_task(visitor_loop(i, ws, tally)) for i, ws in enumerate(visitors)]
    tasks += [asyncio.create_task(agent_loop(ws, tally)) for ws, _ in agents]

    async def send_messages() -> None:
        order = list(range(len(visitors)))
        random.shuffle(order)
        cycle = itertools.cycle(order)
        total = int(args.rate * args.duration)
        t0 = time.perf_counter()
        for n in range(total):
            due = t0 + n / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                tally.lag.append(-delay)
            if -delay > args.duration:  # the server stopped reading: what is left is not sent
                tally.unsent = total - n
                return
            index = next(cycle)
            client_id = secrets.token_hex(8)
            tally.sent_at[client_id] = time.perf_counter()
            tally.visitor_of_client[client_id] = index
            with contextlib.suppress(ConnectionClosed):
                await visitors[index].send(
                    json.dumps({"type": "message", "id": client_id, "text": f"bench {client_id}"})
                )

    async def send_replies() -> None:
        if args.reply_rate <= 0:
            return
        total = int(args.reply_rate * args.duration)
        t0 = time.perf_counter() + 1  # let conversations exist first
        posts = []

        async def post(client: httpx.AsyncClient, conversation_id: int, tag: str) -> None:
            tally.reply_sent_at[tag] = time.perf_counter()
            try:
                response = await client.post(
                    f"/conversations/{conversation_id}/reply/", data={"reply": f"reply {tag} ok"}
                )
                if response.status_code != 302:
                    tally.reply_errors += 1
                    tally.reply_sent_at.pop(tag)
            except httpx.HTTPError:
                tally.reply_errors += 1
                tally.reply_sent_at.pop(tag, None)

        for n in range(total):
            delay = t0 + n / args.reply_rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            known = list(tally.conversation_of.values())
            if not known:
                continue
            _, client = agents[n % len(agents)]
            posts.append(asyncio.create_task(post(client, random.choice(known[-500:]), secrets.token_hex(6))))
        await asyncio.gather(*posts)

    with collector_paused():
        await asyncio.gather(send_messages(), send_replies())
        await asyncio.sleep(args.drain)
    for task in tasks:
        task.cancel()
    # Whatever has not arrived by now counts as lost; an overloaded server may be slow to
    # even acknowledge the close, so the sockets are closed together, briefly.
    closing = [ws.close() for ws in visitors] + [ws.close() for ws, _ in agents]
    closing += [client.aclose() for _, client in agents]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=15)

    v2a: list[float] = []
    # By when the message was sent, in 10-second steps: a backlog early on (every visitor's
    # first message takes the longer path that creates its conversation) shows as such.
    by_ten_seconds: defaultdict[int, list[float]] = defaultdict(list)
    first_sent = min(tally.sent_at.values(), default=0.0)
    for client_id, sent in tally.sent_at.items():
        message_id = tally.message_of.get(client_id)
        if message_id is not None:
            seen = [at - sent for at in tally.agent_seen.get(message_id, [])]
            v2a.extend(seen)
            by_ten_seconds[int((sent - first_sent) // 10)].extend(seen)
    a2v = [
        tally.reply_seen_at[tag] - sent
        for tag, sent in tally.reply_sent_at.items()
        if tag in tally.reply_seen_at
    ]
    return {
        "connect_s": round(connect_seconds, 1),
        "visitor_to_agent": summary(v2a, len(tally.sent_at) * len(agents)),
        **{
            f"visitor_to_agent_p{round(q * 100)}_ms_by_10_s": [
                percentile(by_ten_seconds[step], q) for step in sorted(by_ten_seconds)
            ]
            for q in (0.50, 0.99)
        },
        "agent_to_visitor": summary(a2v, len(tally.reply_sent_at)),
        "unacknowledged": len(tally.sent_at) - len(tally.message_of),
        "unsent": tally.unsent,
        "dropped_sockets": tally.dropped_sockets,
        "visitor_errors": tally.send_errors,
        "busy_answers": tally.busy,
        "agent_resyncs": tally.resyncs,
        "reply_errors": tally.reply_errors,
        "sender_lag_p99_ms": percentile(tally.lag, 0.99) or 0.0,
    }


# --- The floor: raw Redis pub/sub ---------------------------------------------------------


async def floor_run(args: argparse.Namespace) -> dict[str, Any]:
    """PUBLISH→SUBSCRIBE with redis-py asyncio, one subscriber connection per simulated socket:
    visitor messages fan out to every agent, replies go to one visitor."""
    url = os.environ["REDIS_URL"]
    prefix = f"floor:{secrets.token_hex(4)}:"
    publisher = aioredis.Redis.from_url(url)
    v2a: list[float] = []
    a2v: list[float] = []
    subscribers: list[Any] = []

    async def listen(pubsub: Any, into: list[float]) -> None:
        async for item in pubsub.listen():
            if item["type"] == "message":
                into.append(time.perf_counter() - float(item["data"]))

    tasks = []
    for index in range(args.agents + args.visitors):
        client = aioredis.Redis.from_url(url)
        pubsub = client.pubsub()
        is_agent = index < args.agents
        await pubsub.subscribe(prefix + ("inbox" if is_agent else f"visitor:{index}"))
        subscribers.append((client, pubsub))
        tasks.append(asyncio.create_task(listen(pubsub, v2a if is_agent else a2v)))

    duration = args.floor_duration
    total, replies = int(args.rate * duration), int(args.reply_rate * duration)
    events = sorted(
        [(n / args.rate, "inbox") for n in range(total)]
        + [(n / args.reply_rate, f"visitor:{args.agents + n % args.visitors}") for n in range(replies)]
    )
    with collector_paused():
        t0 = time.perf_counter()
        for at, channel in events:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await publisher.publish(prefix + channel, repr(time.perf_counter()))
        await asyncio.sleep(2)
    for task in tasks:
        task.cancel()
    for client, pubsub in subscribers:
        await pubsub.aclose()
        await client.aclose()
    await publisher.aclose()
    return {
        "duration_s": duration,
        "visitor_to_agent": summary(v2a, total * args.agents),
        "agent_to_visitor": summary(a2v, replies),
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    return round(value / floor, 1) if value is not None and floor else None


# What each server process takes, by --pools: "one" process for pages and sockets alike,
# or "split" as `make run` deploys with Redis: the agents' reply POSTs in a pages' process,
# the sockets in a process of their own (settings.ASGI_SERVES).
POOLS = {"one": {"http": "all"}, "split": {"http": "http", "sockets": "sockets"}}


async def run(args: argparse.Namespace, world: World) -> dict[str, Any]:
    ports = {role: free_port() for role in POOLS[args.pools]}
    servers = {role: start_server(port, args.layer, POOLS[args.pools][role]) for role, port in ports.items()}
    bases = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
    try:
        for role, server in servers.items():
            await wait_up(bases[role], server)
        # Same host on both ports: the agents' cookies go to either.
        app = await application_run(args, world, bases["http"], bases.get("sockets", bases["http"]))
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    floor = await floor_run(args)
    return {
        "benchmark": "livechat",
        "layer": args.layer,
        "pools": args.pools,
        "ws_per_message_deflate": ws_deflate(),
        "visitors": args.visitors,
        "agents": args.agents,
        "rate_per_s": args.rate,
        "reply_rate_per_s": args.reply_rate,
        "duration_s": args.duration,
        **app,
        "floor": floor,
        "ratio_to_floor_p99": {
            direction: ratio(app[direction]["p99_ms"], floor[direction]["p99_ms"])
            for direction in ("visitor_to_agent", "agent_to_visitor")
        },
        # The target at 100 msg/s; at 200 msg/s only the losses count.
        "target_met": (args.rate > 100 or (app["visitor_to_agent"]["p99_ms"] or 1e9) <= 100)
        and app["visitor_to_agent"]["lost"] == 0
        and app["agent_to_visitor"]["lost"] == 0
        and app["unacknowledged"] == 0
        and app["dropped_sockets"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visitors", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200, help="visitor messages per second, in total")
    parser.add_argument("--reply-rate", type=float, default=20, help="agent replies per second, in total")
    parser.add_argument("--duration", type=float, default=60, help="seconds of sending")
    parser.add_argument("--floor-duration", type=float, default=None, help="seconds (default: --duration)")
    parser.add_argument("--drain", type=float, default=5, help="seconds to wait for stragglers")
    parser.add_argument(
        "--layer", choices=sorted(settings.REDIS_CHANNEL_LAYERS), default=settings.REDIS_CHANNEL_LAYER_DEFAULT
    )
    parser.add_argument(
        "--pools",
        choices=sorted(POOLS),
        default="split",
        help="one server process for pages and sockets, or one of each (as deployed with Redis)",
    )
    args = parser.parse_args()
    args.floor_duration = args.floor_duration or args.duration
    recreate_database()
    call_command("migrate", verbosity=0)
    world = build_world(args.agents)
    # Stale channel-layer and rate-limit keys of an earlier run must not count.
    from django.core.cache import cache

    cache.clear()
    figures = asyncio.run(run(args, world))
    floor = figures.pop("floor")
    if floor["visitor_to_agent"]["delivered"] == 0:
        report.fail("livechat", "the pub/sub floor delivered nothing", **figures)
    report.emit(figures, floor=floor, ratio=figures.pop("ratio_to_floor_p99"))


if __name__ == "__main__":
    main()
