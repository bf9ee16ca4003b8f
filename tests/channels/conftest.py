"""Real mail servers for the email channel tests.

Dovecot (Debian's dovecot-imapd) runs from a throwaway config on a free loopback port,
with passwd-file users whose mail belongs to `nobody` (its login processes refuse root).
aiosmtpd captures what the channel sends. A Celery worker thread consumes the Redis
broker. Nothing of ours is mocked.
"""

from __future__ import annotations

import imaplib
import itertools
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.conf import LazySettings

from channels_app.models import EmailChannel, Security
from inbox.models import ChannelKind, Inbox, Module

MAIL_UID = 65534  # nobody: Dovecot will not run a mail process as root
ACCOUNTS = 200
_counter = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `predicate` returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


DOVECOT_CONF = """
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_max_userip_connections = 100
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass
class MailAccount:
    server: Dovecot
    username: str
    password: str

    def connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=10)
        conn.login(self.username, self.password)
        return conn

    def append(self, *messages: bytes, folder: str = "INBOX") -> list[int]:
        """Deliver messages into the folder; returns their UIDs."""
        uids: list[int] = []
        conn = self.connect()
        try:
            for raw in messages:
                status, data = conn.append(folder, None, None, raw)
                assert status == "OK", data
                match = re.search(rb"APPENDUID \d+ (\d+)", data[0])
                assert match is not None
                uids.append(int(match.group(1)))
        finally:
            conn.logout()
        return uids

    def flags(self, folder: str = "INBOX") -> dict[int, str]:
        conn = self.connect()
        try:
            conn.select(folder)
            _, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            found: dict[int, str] = {}
            for line in data:
                if isinstance(line, bytes) and (match := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)):
                    found[int(match.group(1))] = match.group(2).decode()
            return found
        finally:
            conn.logout()

    def create_folder(self, folder: str) -> None:
        conn = self.connect()
        try:
            conn.create(folder)
        finally:
            conn.logout()

    def uidvalidity_set(self, value: int) -> None:
        self.server.doveadm("mailbox", "update", "-u", self.username, "--uid-validity", str(value), "INBOX")


@dataclass
class Dovecot:
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    accounts: list[MailAccount] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    def start(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chown(self.root / "mail", MAIL_UID, MAIL_UID)
        self._users_write()
        self.config.write_text(DOVECOT_CONF.format(root=self.root, port=self.port))
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    return sock.recv(64).startswith(b"* OK")
            except OSError:
                return False

        wait_for(answers, timeout=15)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _users_write(self) -> None:
        # All accounts exist from the start: Dovecot notices a changed passwd-file only
        # on a later second, and a login in between would fail.
        self.accounts = [MailAccount(self, f"user{n}", secrets.token_urlsafe(12)) for n in range(ACCOUNTS)]
        (self.root / "users").write_text(
            "".join(
                f"{a.username}:{{PLAIN}}{a.password}:{MAIL_UID}:{MAIL_UID}::{self.root}/mail/{a.username}::\n"
                for a in self.accounts
            )
        )

    def account(self) -> MailAccount:
        """A mail account no other test has used."""
        return self.accounts.pop(0)

    def doveadm(self, *args: str) -> None:
        subprocess.run(["doveadm", "-c", str(self.config), *args], check=True, capture_output=True)


def allow_port(settings: LazySettings, port: int) -> None:
    """Let channels reach a loopback test server, on its port only."""
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = [*settings.CHANNEL_ALLOW_PRIVATE_PORTS, port]


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if shutil.which("dovecot") is None:
        pytest.fail("dovecot is not installed (apt-get install dovecot-imapd)")
    # Not pytest's tmp_path: its 0700 parents would lock out the unprivileged mail user.
    root = Path(tempfile.mkdtemp(prefix="portcullis-dovecot-"))
    root.chmod(0o755)
    server = Dovecot(root=root, port=free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mail_account(dovecot: Dovecot, settings: LazySettings) -> MailAccount:
    allow_port(settings, dovecot.port)
    return dovecot.account()


# --- SMTP ---------------------------------------------------------------------------------


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class CapturingHandler:
    def __init__(self) -> None:
        self.messages: list[Captured] = []
        # Replies to give instead of accepting, one per incoming message, e.g. "451 later".
        self.refusals: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        with self.lock:
            if self.refusals:
                return self.refusals.pop(0)
            self.messages.append(Captured(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: CapturingHandler


@pytest.fixture(scope="session")
def smtp_session() -> Iterator[SmtpServer]:
    handler = CapturingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server(smtp_session: SmtpServer) -> SmtpServer:
    smtp_session.handler.messages.clear()
    smtp_session.handler.refusals.clear()
    return smtp_session


# --- Celery -------------------------------------------------------------------------------


_running_worker: list[Any] = []


@pytest.fixture(scope="session")
def celery_worker() -> Iterator[Any]:
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    # Test packages outside tests/channels import this fixture, and each import is a
    # session fixture of its own: one worker per process serves them all, as two would
    # race each other for the same broker's tasks (and their retries).
    if _running_worker:
        yield _running_worker[0]
        return
    # Tasks left on this test broker by an interrupted run would act on another database.
    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as worker:
        _running_worker.append(worker)
        try:
            yield worker
        finally:
            _running_worker.clear()


# --- Channels -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def channel_settings(settings: LazySettings, tmp_path: Path) -> None:
    # The test servers live on loopback, which deployments refuse by default; each server's
    # fixture allows its own port, as a deployment lists its mail server's.
    settings.CHANNEL_ALLOW_PRIVATE_HOSTS = ["127.0.0.1/32"]
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = []
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def make_channel(smtp_session: SmtpServer, settings: LazySettings) -> Callable[..., EmailChannel]:
    allow_port(settings, smtp_session.port)

    def make(account: MailAccount, *, inbox: Inbox | None = None, **fields: Any) -> EmailChannel:
        number = next(_counter)
        inbox = inbox or Inbox.objects.create(
            name=f"Email support {number}", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT
        )
        values: dict[str, Any] = {
            "inbox": inbox,
            "email_address": f"support{number}@example.com",
            "imap_host": "127.0.0.1",
            "imap_port": account.server.port,
            "imap_security": Security.NONE,
            "imap_username": account.username,
            "imap_password": account.password,
            "smtp_host": smtp_session.host,
            "smtp_port": smtp_session.port,
            "smtp_security": Security.NONE,
        }
        values.update(fields)
        return EmailChannel.objects.create(**values)

    return make


def mail(
    *,
    sender: str = "Customer <customer@example.org>",
    to: str = "support@example.com",
    subject: str = "Printer on fire",
    body: str = "Hello, my printer is on fire.",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain, well-formed message with CRLF line ends, as a mail server stores it."""
    message_id = message_id or f"<{secrets.token_hex(8)}@example.org>"
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: {message_id}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()
