"""Benchmark: signed Meta (WhatsApp) webhook deliveries against one ASGI server process.

Run: `.venv/bin/python tests/benchmarks/webhooks.py [--deliveries N] [--clients C]
[--servers S]` (default 10,000 deliveries; S uvicorn processes on the one port, default 1).
It (re)creates its own database (DATABASE_URL, default
portcullis_webhooks_bench), starts one uvicorn process on a free loopback port serving
the product plus, for the floor, a benchmark-only ASGI route answering an empty 200 (in
this file, not in the product), and one Celery worker process (prefork, concurrency 1).
Then, on that one server:

1. floor: the same N bodies and headers POSTed to the empty-200 route, one after another
   on a keep-alive connection;
2. verified-and-stored: N signed deliveries (each a new WhatsApp text from one of 1,000
   customers) POSTed the same way to /hooks/meta/<id>/ with the worker stopped; response
   time = signature verified, raw event stored and committed, 200 sent;
3. the worker started: its rate draining that backlog into messages (first to last);
4. end to end under load: N more deliveries from C client connections (default 4) while
   the worker drains, from the first delivery until every one is a message: each
   connection sends its next as soon as it is answered, so this is the server's most;
   with the CPU a delivery took in the server, the worker, PostgreSQL and the clients;
5. the issue's load: N more, offered at --rate a second (default 500) from C connections
   while the worker drains, each timed from when it was due (a late one's wait counts);
6. 1,000 replays of delivered messages (answered 200, stored once).

The server and worker use a connection pool (DB_POOL_SIZE, default 8 here: one per HTTP
request thread), as deployed behind ASGI. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_webhooks_bench")
# A broker database of its own: the benchmark purges its queue.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "YmVuY2htYXJrLW9ubHktZmllbGQta2V5LTAwMDAwMDA=")
os.environ.setdefault("HTTPS", "0")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# A connection pool per process (config/settings.py: DB_POOL_SIZE), as deployed behind ASGI.
os.environ.setdefault("DB_POOL_SIZE", "8")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from tests.benchmarks import report  # noqa: E402

FLOOR_PATH = "/bench-floor/"
APP_SECRET = "benchmark-app-secret"
PHONE_NUMBER_ID = "106540352242922"
CUSTOMERS = 1000

_product: Any = None


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """What the benchmark's uvicorn serves: the floor route, else the product unchanged."""
    global _product
    if scope["type"] == "http" and scope["path"] == FLOOR_PATH:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if _product is None:
        from config.asgi import application as product

        _product = product
    await _product(scope, receive, send)


def recreate_database() -> None:
    import psycopg
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    admin = {k: settings.DATABASES["default"][k] for k in ("HOST", "PORT", "USER")}
    with psycopg.connect(
        host=admin["HOST"], port=admin["PORT"] or 5432, user=admin["USER"], dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def delivery(index: int, tag: str) -> bytes:
    sender = f"1555{index % CUSTOMERS:07d}"
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "contacts": [
                                {"profile": {"name": f"Customer {index % CUSTOMERS}"}, "wa_id": sender}
                            ],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": f"wamid.{tag}-{index:08d}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": f"Hello, this is message {index} about my order."},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


def post_all(
    port: int, path: str, bodies: list[bytes], latencies: list[float], due: list[float] | None = None
) -> None:
    """POST each body in turn on one keep-alive connection, recording response times: from
    the send, or, given when each is due (`perf_counter` times), from that moment — a late
    one (the connection still waiting on the server) counts its wait, as a provider's would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for index, body in enumerate(bodies):
        headers = signed_headers(body)
        started = time.perf_counter()
        if due is not None:
            if due[index] > started:
                time.sleep(due[index] - started)
            started = due[index]
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}")
    conn.close()


def post_concurrently(
    port: int, path: str, bodies: list[bytes], clients: int, rate: float | None = None
) -> list[float]:
    """POST the bodies from `clients` connections, each sending its share: as fast as the
    server answers, or, with `rate`, on a schedule of `rate` a second in all (an offered
    load: the n-th body is due n / rate seconds after the start)."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    start = time.perf_counter() + 0.1
    due = [start + index / rate for index in range(len(bodies))] if rate else None

    def client(share: slice) -> None:
        # A failure in a thread would end only that thread: the figures would be of a part.
        try:
            post_all(port, path, bodies[share], latencies, due[share] if due else None)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=client, args=(slice(i, None, clients),)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        report.fail("webhooks", f"{len(failures)} of {clients} clients failed: {failures[0]}")
    return latencies


def cpu_seconds(root_pids: list[int]) -> float:
    """User + system CPU of these processes and every descendant alive now, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # After the parenthesised command name: state, ppid, … utime, stime, and the same of
            # its children waited for (14th to 17th): an exited one counts once, in its parent.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(value) for value in fields[11:15]) / tick
    wanted = set(root_pids)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in wanted} - wanted
        grew = bool(children)
        wanted |= children
    return sum(times.get(pid, 0.0) for pid in wanted)


def cpu_snapshot(processes: dict[str, list[int]]) -> dict[str, float]:
    return {name: cpu_seconds(pids) for name, pids in processes.items()}


def cpu_ms_each(processes: dict[str, list[int]], before: dict[str, float], items: int) -> dict[str, float]:
    """Milliseconds of CPU each group of processes spent an item since `before`."""
    return {
        name: round((cpu_seconds(pids) - before[name]) * 1000 / items, 3) for name, pids in processes.items()
    }


def postgres_pid() -> int:
    """The postmaster: every backend, the benchmark's and the worker's, is its child."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])
    stat = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
    return int(stat[1])


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def message_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM inbox_message")
        return int(cursor.fetchone()[0])


def message_span(tag: str) -> float:
    """Seconds from the first to the last message stored for this run's deliveries."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM inbox_message "
            "WHERE provider_message_id LIKE %s",
            [f"wamid.{tag}-%"],
        )
        return float(cursor.fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--servers", type=int, default=1, help="uvicorn worker processes on the one port")
    parser.add_argument("--rate", type=float, default=500, help="deliveries a second offered in step 5")
    args = parser.parse_args()
    n = args.deliveries

    import django

    django.setup()
    recreate_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from channels_app.models import MetaChannel
    from channels_app.webhooks.tasks import social_events_drain
    from config.celery import app as celery_app
    from inbox.models import ChannelKind, Inbox

    inbox = Inbox.objects.create(name="WhatsApp benchmark", channel_kind=ChannelKind.WHATSAPP)
    channel = MetaChannel.objects.create(
        inbox=inbox,
        kind=ChannelKind.WHATSAPP,
        account_id=PHONE_NUMBER_ID,
        app_secret=APP_SECRET,
        verify_token="benchmark",
        access_token="benchmark",
    )
    hook = channel.webhook_path()
    celery_app.control.purge()

    env = {
        **os.environ,
        "DEBUG": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.benchmarks.webhooks:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
            "--workers",
            str(args.servers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )

    def start_worker() -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--concurrency",
                "1",
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
        )
        wait_until(lambda: bool(celery_app.control.ping(timeout=0.5)), 60, "the worker")
        return worker

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

    def answers() -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    worker = None
    try:
        wait_until(answers, 30, "the server")
        worker = start_worker()
        # Warm up both routes and the worker (imports, connections, caches).
        warm = [delivery(i, "warm") for i in range(300)]
        post_all(port, FLOOR_PATH, warm, [])
        post_all(port, hook, warm, [])
        wait_until(lambda: message_count() >= len(warm), 120, "the warm-up messages")
        stop(worker)
        worker = None

        # 1. The floor, then 2. verified-and-stored on the same server with the worker
        # stopped: what a provider waits for, nothing else competing for the cores.
        bodies = [delivery(i, "seq") for i in range(n)]
        floor: list[float] = []
        started = time.perf_counter()
        post_all(port, FLOOR_PATH, bodies, floor)
        floor_seconds = time.perf_counter() - started
        stored: list[float] = []
        postgresql = [postgres_pid()]
        intake = {"server": [server.pid], "postgresql": postgresql}
        cpu_before = cpu_snapshot(intake)
        started = time.perf_counter()
        post_all(port, hook, bodies, stored)
        stored_seconds = time.perf_counter() - started
        stored_cpu_ms = cpu_ms_each(intake, cpu_before, n)

        # 3. One worker drains that backlog into messages: the rate from first to last. The
        # drain is queued only once the worker is up and its CPU counted: a worker starting
        # on a queued drain took a small backlog before the count began.
        base = message_count()
        celery_app.control.purge()
        worker = start_worker()
        draining = {"worker": [worker.pid], "postgresql": postgresql}
        cpu_before = cpu_snapshot(draining)
        social_events_drain.delay(channel.pk)
        wait_until(lambda: message_count() >= base + n, 1800, "the backlog")
        drain_rate = (n - 1) / message_span("seq")
        drain_cpu_ms = cpu_ms_each(draining, cpu_before, n)

        # 4. End to end under load: C client connections deliver while the worker drains,
        # from the first delivery until every one is a message.
        concurrent_bodies = [delivery(i, "conc") for i in range(n)]
        base = message_count()
        # Where a delivery's CPU goes, across every process on the two cores.
        processes = {"server": [server.pid], "worker": [worker.pid], "postgresql": postgresql}
        cpu_before = cpu_snapshot(processes)
        clients_before = time.process_time()
        started = time.perf_counter()
        concurrent = post_concurrently(port, hook, concurrent_bodies, args.clients)
        concurrent_seconds = time.perf_counter() - started
        wait_until(lambda: message_count() >= base + n, 1800, "the messages")
        concurrent_e2e = time.perf_counter() - started
        cpu_ms = cpu_ms_each(processes, cpu_before, n)
        cpu_ms["benchmark_clients"] = round((time.process_time() - clients_before) * 1000 / n, 3)

        # 5. The load, offered: deliveries due at --rate a second from C connections
        # while the worker drains; intake times from when each was due.
        paced_bodies = [delivery(i, "paced") for i in range(n)]
        base = message_count()
        started = time.perf_counter()
        paced = post_concurrently(port, hook, paced_bodies, args.clients, rate=args.rate)
        wait_until(lambda: message_count() >= base + n, 1800, "the paced messages")
        paced_e2e = time.perf_counter() - started

        # 6. Replays of delivered messages: answered 200, stored once.
        replayed: list[float] = []
        post_all(port, hook, bodies[:1000], replayed)
        time.sleep(2)
        duplicates = message_count() - (base + n)
    finally:
        for process in (server, worker):
            if process is not None:
                stop(process)

    result = {
        "benchmark": "webhooks",
        "deliveries": n,
        "server": f"uvicorn, {args.servers} process(es), DB pool {os.environ['DB_POOL_SIZE']} each",
        "worker": "celery prefork, concurrency 1",
        "verified_stored_p50_ms": round(statistics.median(stored), 3),
        "verified_stored_p99_ms": round(percentile(stored, 99), 3),
        "verified_stored_requests_per_s": round(n / stored_seconds),
        "verified_stored_cpu_ms_per_delivery": stored_cpu_ms,
        "worker_drain_events_per_s": round(drain_rate),
        "worker_drain_cpu_ms_per_event": drain_cpu_ms,
        "concurrent_clients": args.clients,
        "under_load_p50_ms": round(statistics.median(concurrent), 3),
        "under_load_p99_ms": round(percentile(concurrent, 99), 3),
        "under_load_requests_per_s": round(n / concurrent_seconds),
        "end_to_end_events_per_s": round(n / concurrent_e2e),
        "under_load_cpu_ms_per_delivery": cpu_ms,
        "paced_rate_per_s": args.rate,
        "paced_p50_ms": round(statistics.median(paced), 3),
        "paced_p99_ms": round(percentile(paced, 99), 3),
        "paced_end_to_end_events_per_s": round(n / paced_e2e),
        "replay_p50_ms": round(statistics.median(replayed), 3),
        "replayed_messages_stored": duplicates,
    }
    report.emit(
        result,
        floor={
            "empty_200_p50_ms": round(statistics.median(floor), 3),
            "empty_200_p99_ms": round(percentile(floor, 99), 3),
            "empty_200_requests_per_s": round(n / floor_seconds),
        },
        ratio={
            "intake_p99_to_empty_200_p99": round(percentile(stored, 99) / percentile(floor, 99), 1),
            "intake_rate_to_empty_200_rate": round(floor_seconds / stored_seconds, 3),
        },
    )


if __name__ == "__main__":
    main()
