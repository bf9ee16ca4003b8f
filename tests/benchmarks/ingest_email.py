"""Benchmark: email ingestion end to end, against the floor of fetching and parsing alone.

Run: `.venv/bin/python tests/benchmarks/ingest_email.py [--messages N]` (default 10,000).
It (re)creates its own database (DATABASE_URL, default portcullis_email_bench), starts a
throwaway Dovecot holding N realistic messages (median about 25 KB, 5% with attachments,
a third of them replies in threads), then measures on the same mailbox:

- the floor: plain imaplib UID FETCH of every message in batches, plus an `email` parse
  (policy.default) and reading its text body, no database; measured before and after the
  end-to-end run, the ratio taken to their mean;
- end to end: one Celery worker process (solo pool; `--workers N` for more) polling the
  channel through the real tasks, from the first task queued until every message is in
  the database;

and prints one JSON line: messages/s of both, their ratio, and the workers' peak RSS with
its RSS sampled along the way (it must stay flat as the mailbox is worked through).
"""

from __future__ import annotations

import argparse
import base64
import imaplib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_email_bench")
# A broker database of its own: the benchmark purges its queue.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "YmVuY2htYXJrLW9ubHktZmllbGQta2V5LTAwMDAwMDA=")
os.environ.setdefault("CHANNEL_ALLOW_PRIVATE_HOSTS", "127.0.0.1/32")
# Attachments land in a throwaway media root, removed at the end.
OWN_MEDIA_ROOT = None if "MEDIA_ROOT" in os.environ else tempfile.mkdtemp(prefix="portcullis-bench-media-")
if OWN_MEDIA_ROOT:
    os.environ["MEDIA_ROOT"] = OWN_MEDIA_ROOT
os.environ.setdefault("HTTPS", "0")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from tests.benchmarks import report  # noqa: E402
from tests.channels.conftest import MAIL_UID, Dovecot, free_port  # noqa: E402

WORDS = (
    "invoice refund printer login password delivery parcel broken screen battery charger order cancel "
    "subscription upgrade plan billing address shipping tracking late damaged replace warranty return label "
    "account locked reset email phone update payment card declined discount coupon question thanks urgent "
    "please help error crash slow install setup the a to and of for on with is it that this we you our"
).split()
FETCH_BATCH = 100


def paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def realistic_message(rng: random.Random, number: int, earlier: list[tuple[str, str, str]]) -> bytes:
    """One message: headers as a real server leaves them, text and HTML alternatives,
    sometimes a reply with quoted text, sometimes an attachment."""
    # Log-normal body size around a 25 KB message (text and HTML both carry the body).
    target = int(min(400_000, max(1_500, rng.lognormvariate(9.9, 0.6))))
    if earlier and rng.random() < 0.33:
        parent_id, sender, subject = rng.choice(earlier)
        subject = subject if subject.startswith("Re:") else f"Re: {subject}"
    else:
        parent_id, sender = "", f"customer{rng.randrange(2000)}@example{rng.randrange(40)}.org"
        subject = paragraph(rng, rng.randrange(3, 9))[:70]
    message = EmailMessage()
    for hop in range(rng.randrange(2, 6)):
        message["Received"] = (
            f"from relay{hop}.example.net (relay{hop}.example.net [192.0.2.{hop}]) by mx.example.com "
            f"with ESMTPS id {rng.getrandbits(48):x}; {format_datetime(message_date(number))}"
        )
    message["DKIM-Signature"] = (
        "v=1; a=rsa-sha256; d=example.org; s=s1; b=" + base64.b64encode(rng.randbytes(180)).decode()
    )
    message["From"] = f"Customer {number % 2000} <{sender}>"
    message["To"] = "support@example.com"
    message["Subject"] = subject
    message["Date"] = format_datetime(message_date(number))
    message_id = make_msgid(idstring=str(number), domain="example.org")
    message["Message-ID"] = message_id
    if parent_id:
        message["In-Reply-To"] = parent_id
        message["References"] = parent_id
    paragraphs: list[str] = []
    while sum(len(p) for p in paragraphs) < target // 2:
        paragraphs.append(paragraph(rng, rng.randrange(20, 120)))
    if parent_id:
        paragraphs.append("\n".join(f"> {line}" for line in paragraphs[: rng.randrange(1, 4)]))
    text = "\n\n".join(paragraphs)
    message.set_content(text)
    message.add_alternative(
        "<html><body>" + "".join(f"<p style='margin:0'>{p}</p>" for p in paragraphs) + "</body></html>",
        subtype="html",
    )
    if rng.random() < 0.05:
        blob = b"%PDF-1.4\n" + rng.randbytes(rng.randrange(40_000, 300_000))
        message.add_attachment(blob, maintype="application", subtype="pdf", filename=f"document-{number}.pdf")
    earlier.append((message_id, sender, subject))
    if len(earlier) > 500:
        earlier.pop(0)
    return message.as_bytes(policy=policy.SMTP)


def message_date(number: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=number)


def fill_maildir(server: Dovecot, username: str, count: int) -> list[int]:
    """Write the messages straight into the maildir: minutes of APPENDs saved."""
    rng = random.Random(25)  # reproducible test data
    cur = server.root / "mail" / username / "cur"
    for sub in ("cur", "new", "tmp"):
        (cur.parent / sub).mkdir(parents=True, exist_ok=True)
    earlier: list[tuple[str, str, str]] = []
    sizes: list[int] = []
    for number in range(count):
        raw = realistic_message(rng, number, earlier)
        sizes.append(len(raw))
        (cur / f"{1_700_000_000 + number}.M{number}P1.bench:2,").write_bytes(raw)
    subprocess.run(["chown", "-R", f"{MAIL_UID}:{MAIL_UID}", str(cur.parent)], check=True)
    # Dovecot indexes the folder once, before either measurement.
    server.doveadm("index", "-u", username, "INBOX")
    return sizes


def floor(port: int, username: str, password: str, count: int) -> float:
    """Messages a second fetched and parsed with the standard library alone."""
    parser = BytesParser(policy=policy.default)
    started = time.perf_counter()
    conn = imaplib.IMAP4("127.0.0.1", port)
    conn.login(username, password)
    conn.select("INBOX", readonly=True)
    uids = conn.uid("SEARCH", "ALL")[1][0].split()
    parsed = 0
    for start in range(0, len(uids), FETCH_BATCH):
        batch = b",".join(uids[start : start + FETCH_BATCH]).decode()
        _, data = conn.uid("FETCH", batch, "(UID BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                message = parser.parsebytes(item[1])
                body = message.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
                if body is not None:
                    body.get_content()
                parsed += 1
    conn.logout()
    seconds = time.perf_counter() - started
    if parsed != count:
        report.fail("ingest_email", f"the floor parsed {parsed} of {count} messages")
    return count / seconds


def recreate_database() -> None:
    database = settings.DATABASES["default"]
    with psycopg.connect(
        host=database["HOST"],
        port=database["PORT"] or 5432,
        user=database["USER"],
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database["NAME"]}"')
    connection.close()
    call_command("migrate", verbosity=0)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def end_to_end(server_port: int, username: str, password: str, count: int, workers: int) -> dict[str, Any]:
    from channels_app.email import tasks
    from channels_app.models import EmailChannel, InboundEmail, Security
    from config.celery import app
    from inbox.models import Inbox, Message

    # Loopback is allowed on the benchmark's own servers' ports only, as in a deployment;
    # the worker process reads it from its environment.
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = [server_port, 25]
    os.environ["CHANNEL_ALLOW_PRIVATE_PORTS"] = f"{server_port},25"
    inbox = Inbox.objects.create(name="Benchmark mail", channel_kind="email")
    channel = EmailChannel.objects.create(
        inbox=inbox,
        email_address="support@example.com",
        imap_host="127.0.0.1",
        imap_port=server_port,
        imap_security=Security.NONE,
        imap_username=username,
        imap_password=password,
        smtp_host="127.0.0.1",
        smtp_port=25,
        smtp_security=Security.NONE,
    )
    app.control.purge()
    started_workers = [
        subprocess.Popen(
            [
                str(ROOT / ".venv/bin/celery"),
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--hostname=bench{number}@%h",
            ],
            cwd=ROOT,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        )
        for number in range(workers)
    ]
    try:
        time.sleep(3)  # the workers connect to the broker and are ready
        samples: dict[str, float] = {}
        started = time.perf_counter()
        tasks.email_poll.delay(channel.pk)
        done = 0
        while done < count:
            time.sleep(0.25)
            done = InboundEmail.objects.filter(channel=channel).exclude(status="pending").count()
            for share in (25, 50, 75):
                if done >= count * share // 100 and f"{share}%" not in samples:
                    samples[f"{share}%"] = round(max(rss_mb(w.pid) for w in started_workers), 1)
            if any(w.poll() is not None for w in started_workers):
                raise RuntimeError("a worker died")
        elapsed = time.perf_counter() - started
        samples["100%"] = round(max(rss_mb(w.pid) for w in started_workers), 1)
        peak = max(rss_mb(w.pid, "VmHWM") for w in started_workers)
    finally:
        for w in started_workers:
            w.terminate()
        for w in started_workers:
            w.wait(timeout=30)
    imported = InboundEmail.objects.filter(channel=channel, status="imported").count()
    return {
        "seconds": elapsed,
        "imported": imported,
        "quarantined": count - imported,
        "messages_in_db": Message.objects.filter(inbox=inbox).count(),
        "conversations": inbox.conversations.count(),
        "rss_mb_by_progress": samples,
        "peak_rss_mb": round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    # More workers share the broker's queue; one channel is still worked by one run at a
    # time (its lease), so they help only as far as polls of it follow one another.
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    recreate_database()
    root = Path(tempfile.mkdtemp(prefix="portcullis-bench-dovecot-"))
    root.chmod(0o755)
    server = Dovecot(root=root, port=free_port())
    server.start()
    try:
        account = server.account()
        sizes = sorted(fill_maildir(server, account.username, args.messages))
        # The floor is measured on both sides of the end-to-end run and the ratio taken to
        # their mean: on this shared machine one floor alone moved ±20 % from run to run.
        floors = [floor(server.port, account.username, account.password, args.messages)]
        e2e = end_to_end(server.port, account.username, account.password, args.messages, args.workers)
        floors.append(floor(server.port, account.username, account.password, args.messages))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        if OWN_MEDIA_ROOT:
            shutil.rmtree(OWN_MEDIA_ROOT, ignore_errors=True)
    floor_rate = sum(floors) / len(floors)
    e2e_rate = args.messages / e2e["seconds"]
    figures = {
        "benchmark": "ingest_email",
        "messages": args.messages,
        "workers": args.workers,
        "median_message_kb": round(sizes[len(sizes) // 2] / 1024, 1),
        "mailbox_mb": round(sum(sizes) / 2**20, 1),
        "end_to_end_msgs_per_s": round(e2e_rate, 1),
        "imported": e2e["imported"],
        "quarantined": e2e["quarantined"],
        "messages_in_db": e2e["messages_in_db"],
        "conversations": e2e["conversations"],
        "worker_peak_rss_mb": e2e["peak_rss_mb"],
        "worker_rss_mb_by_progress": e2e["rss_mb_by_progress"],
    }
    if e2e["imported"] + e2e["quarantined"] != args.messages:
        report.fail("ingest_email", "not every message was stored", **figures)
    report.emit(
        figures,
        floor={
            "fetch_parse_msgs_per_s": round(floor_rate, 1),
            "before_and_after": [round(rate, 1) for rate in floors],
        },
        ratio=round(e2e_rate / floor_rate, 3),
    )


if __name__ == "__main__":
    main()
