"""The IMAP side of an email channel: one folder, read by UID, marked only when told.

Bodies are fetched with BODY.PEEK so reading never sets \\Seen: the mailbox changes only
when the caller says the messages are safely stored. Connections go to the addresses
`hosts` vetted, never to whatever the name resolves to a moment later.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from channels_app.common import hosts
from channels_app.email.models import AfterImport, EmailChannel, Security

TIMEOUT_SECONDS = 60.0
SEARCH_WINDOW = 10_000
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The mailbox could not be read. `transient` errors are worth retrying soon."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class SizeInfo:
    uid: int
    size: int


class _PinnedIMAP4(imaplib.IMAP4):
    def __init__(self, host: str, port: int, addresses: list[hosts.IPAddress], timeout: float) -> None:
        self._addresses = addresses
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return hosts.connect(self._addresses, self.port, timeout or TIMEOUT_SECONDS)


class _PinnedIMAP4_SSL(imaplib.IMAP4_SSL):  # named after the class it extends
    def __init__(
        self, host: str, port: int, addresses: list[hosts.IPAddress], timeout: float, context: ssl.SSLContext
    ) -> None:
        self._addresses = addresses
        super().__init__(host, port, ssl_context=context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = hosts.connect(self._addresses, self.port, timeout or TIMEOUT_SECONDS)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def uid_set(uids: Iterable[int]) -> str:
    """`1:3,7,9:10`: runs compressed, so a batch stays a short command line."""
    ordered = sorted(set(uids))
    runs: list[str] = []
    start = previous = None
    for uid in ordered:
        if previous is not None and uid == previous + 1:
            previous = uid
            continue
        if start is not None:
            runs.append(f"{start}:{previous}" if start != previous else str(start))
        start = previous = uid
    if start is not None:
        runs.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(runs)


def _quoted(folder: str) -> str:
    # The model's validator has already refused quotes and backslashes.
    return f'"{folder}"'


def _fetch_items(data: list[Any]) -> list[tuple[bytes, bytes]]:
    """(response metadata, literal) per message; the UID may follow the literal."""
    items: list[tuple[bytes, bytes]] = []
    for entry in data:
        if isinstance(entry, tuple) and len(entry) == 2:
            items.append((bytes(entry[0]), bytes(entry[1])))
        elif isinstance(entry, bytes) and items and not _UID.search(items[-1][0]):
            meta, literal = items[-1]
            items[-1] = (meta + b" " + entry, literal)
    return items


class Mailbox:
    """An open, selected IMAP folder of one channel. Use as a context manager."""

    def __init__(
        self, channel: EmailChannel, *, timeout: float = TIMEOUT_SECONDS, search_window: int = SEARCH_WINDOW
    ) -> None:
        self.channel = channel
        self.timeout = timeout
        self.search_window = search_window
        self.uidvalidity = 0
        self.uidnext = 0
        self._conn: imaplib.IMAP4 | None = None

    def __enter__(self) -> Mailbox:
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    @property
    def conn(self) -> imaplib.IMAP4:
        assert self._conn is not None  # noqa: S101  # only used inside the context
        return self._conn

    def _open(self) -> None:
        channel = self.channel
        try:
            addresses = hosts.resolve(channel.imap_host, channel.imap_port)
        except hosts.HostNotAllowed as exc:
            raise MailboxError(str(exc), transient=False) from None
        if channel.imap_security == Security.NONE and not hosts.all_loopback(addresses):
            raise MailboxError("Unencrypted IMAP is allowed to loopback only.", transient=False)
        with _translated("connect"):
            if channel.imap_security == Security.TLS:
                self._conn = _PinnedIMAP4_SSL(
                    channel.imap_host,
                    channel.imap_port,
                    addresses,
                    self.timeout,
                    ssl.create_default_context(),
                )
            else:
                self._conn = _PinnedIMAP4(channel.imap_host, channel.imap_port, addresses, self.timeout)
                if channel.imap_security == Security.STARTTLS:
                    self._conn.starttls(ssl.create_default_context())
        with _translated("login", transient=False):
            self.conn.login(channel.imap_username, channel.imap_password)
        with _translated("select", transient=False):
            _ok(self.conn.select(_quoted(channel.imap_folder)), "SELECT")
            _, data = self.conn.response("UIDVALIDITY")
            self.uidvalidity = int(data[0]) if data and data[0] else 0
            _, data = self.conn.response("UIDNEXT")
            self.uidnext = int(data[0]) if data and data[0] else 0
        if not self.uidvalidity:
            raise MailboxError("The server reported no UIDVALIDITY for the folder.", transient=False)

    def _close(self) -> None:
        if self._conn is None:
            return
        # Going away anyway; a dropped connection has nothing left to close.
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self._conn.logout()
        self._conn = None

    def uids_after(self, last_uid: int, limit: int) -> tuple[list[int], bool]:
        """Up to `limit` UIDs above `last_uid`, oldest first, and whether more remain.

        Searched in windows of UIDs, so no response line grows with the mailbox (imaplib
        refuses lines over 1 MB, about 150,000 UIDs).
        """
        if not self.uidnext:
            # A server that did not announce UIDNEXT: one search to the end.
            found = self._search(f"{last_uid + 1}:*", last_uid)
            return found[:limit], len(found) > limit
        found = []
        start = last_uid + 1
        while start < self.uidnext and len(found) <= limit:
            end = min(start + self.search_window, self.uidnext) - 1
            found += self._search(f"{start}:{end}", last_uid)
            start = end + 1
        return found[:limit], len(found) > limit or start < self.uidnext

    def _search(self, uid_range: str, last_uid: int) -> list[int]:
        with _translated("search"):
            data = _ok(self.conn.uid("SEARCH", f"UID {uid_range}"), "UID SEARCH")
        # `n:*` always matches the highest UID, even when it is below n.
        return sorted(uid for uid in (int(x) for x in b" ".join(data or []).split()) if uid > last_uid)

    def sizes(self, uids: list[int]) -> list[SizeInfo]:
        """Each message's size, to batch the body fetches and leave oversized mail be."""
        with _translated("fetch"):
            data = _ok(self.conn.uid("FETCH", uid_set(uids), "(UID RFC822.SIZE)"), "UID FETCH")
        found: list[SizeInfo] = []
        # No literal in this answer: each entry is one line of metadata.
        for entry in data:
            if not isinstance(entry, bytes):
                continue
            uid, size = _UID.search(entry), _SIZE.search(entry)
            if uid is not None and size is not None:
                found.append(SizeInfo(int(uid.group(1)), int(size.group(1))))
        return found

    def bodies(self, uids: list[int], *, header_only: bool = False) -> dict[int, bytes]:
        section = "BODY.PEEK[HEADER]" if header_only else "BODY.PEEK[]"
        with _translated("fetch"):
            data = _ok(self.conn.uid("FETCH", uid_set(uids), f"(UID {section})"), "UID FETCH")
        bodies: dict[int, bytes] = {}
        for meta, literal in _fetch_items(data):
            uid = _UID.search(meta)
            if uid is not None:
                bodies[int(uid.group(1))] = literal
        return bodies

    def mark_done(self, uids: list[int]) -> None:
        """Mark (or move) messages whose import is committed."""
        if not uids:
            return
        uids_text = uid_set(uids)
        with _translated("mark"):
            if self.channel.after_import == AfterImport.MOVE:
                target = _quoted(self.channel.archive_folder)
                if b"MOVE" in b" ".join(self._capabilities()):
                    _ok(self.conn.uid("MOVE", uids_text, target), "UID MOVE")
                    return
                _ok(self.conn.uid("COPY", uids_text, target), "UID COPY")
                _ok(self.conn.uid("STORE", uids_text, "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE")
                _ok(self.conn.expunge(), "EXPUNGE")
            else:
                _ok(self.conn.uid("STORE", uids_text, "+FLAGS.SILENT", r"(\Seen)"), "UID STORE")

    def _capabilities(self) -> list[bytes]:
        _, data = self.conn.capability()
        return [item for item in data if isinstance(item, bytes)]


def _ok(response: tuple[str, list[Any]], command: str) -> list[Any]:
    status, data = response
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii", "replace")[:200]
        raise imaplib.IMAP4.error(f"{command} failed: {detail}")
    return data


@contextlib.contextmanager
def _translated(step: str, *, transient: bool = True) -> Iterator[None]:
    """Turns imaplib and socket failures into MailboxError with a message safe to show."""
    try:
        yield
    except MailboxError:
        raise
    except (imaplib.IMAP4.abort, OSError, EOFError) as exc:
        raise MailboxError(f"IMAP {step}: connection failed ({exc})"[:480], transient=True) from exc
    except (imaplib.IMAP4.error, UnicodeError, ValueError) as exc:
        raise MailboxError(f"IMAP {step}: {exc}"[:480], transient=transient) from exc
