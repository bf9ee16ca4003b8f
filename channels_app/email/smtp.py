"""The SMTP side of an email channel: one message out, to vetted addresses only."""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage

from channels_app.common import hosts
from channels_app.common.retry import DeliveryError
from channels_app.email.models import EmailChannel, Security

TIMEOUT_SECONDS = 30.0


class SendError(DeliveryError):
    """The message was not sent. A `transient` failure is worth another try later."""


class _PinnedSMTP(smtplib.SMTP):
    def __init__(self, addresses: list[hosts.IPAddress], local_hostname: str) -> None:
        self._addresses = addresses
        super().__init__(local_hostname=local_hostname, timeout=TIMEOUT_SECONDS)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return hosts.connect(self._addresses, port, timeout)


class _PinnedSMTP_SSL(smtplib.SMTP_SSL):  # named after the class it extends
    def __init__(
        self, addresses: list[hosts.IPAddress], local_hostname: str, context: ssl.SSLContext
    ) -> None:
        self._addresses = addresses
        super().__init__(local_hostname=local_hostname, timeout=TIMEOUT_SECONDS, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = hosts.connect(self._addresses, port, timeout)
        return self.context.wrap_socket(sock, server_hostname=host)


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


def send(channel: EmailChannel, message: EmailMessage, recipient: str) -> None:
    """Deliver `message` to `recipient` through the channel's SMTP server, or raise SendError."""
    try:
        addresses = hosts.resolve(channel.smtp_host, channel.smtp_port)
    except hosts.HostNotAllowed as exc:
        raise SendError(str(exc), transient=False) from None
    if channel.smtp_security == Security.NONE and not hosts.all_loopback(addresses):
        raise SendError("Unencrypted SMTP is allowed to loopback only.", transient=False)
    local_hostname = channel.email_address.rpartition("@")[2] or "localhost"
    client: smtplib.SMTP = (
        _PinnedSMTP_SSL(addresses, local_hostname, ssl.create_default_context())
        if channel.smtp_security == Security.TLS
        else _PinnedSMTP(addresses, local_hostname)
    )
    try:
        client.connect(channel.smtp_host, channel.smtp_port)
        if channel.smtp_security == Security.STARTTLS:
            client.starttls(context=ssl.create_default_context())
        if channel.smtp_username:
            client.login(channel.smtp_username, channel.smtp_password)
        refused = client.send_message(message, from_addr=channel.email_address, to_addrs=[recipient])
        if refused:
            code, reply = next(iter(refused.values()))
            raise SendError(
                f"SMTP refused the recipient: {code} {_text(reply)}", transient=not _is_permanent(code)
            )
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (550, b""))
        raise SendError(
            f"SMTP refused the recipient: {code} {_text(reply)}", transient=not _is_permanent(code)
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise SendError(f"SMTP login refused: {exc.smtp_code}", transient=False) from None
    except smtplib.SMTPResponseException as exc:
        raise SendError(
            f"SMTP error {exc.smtp_code}: {_text(exc.smtp_error)}", transient=not _is_permanent(exc.smtp_code)
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise SendError(f"SMTP server does not support a required feature: {exc}", transient=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP connection failed: {exc}"[:300], transient=True) from None
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:200]
