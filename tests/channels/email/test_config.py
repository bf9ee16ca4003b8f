"""Channel configuration: secrets encrypted and write-only, hosts allowlisted, commands."""

from __future__ import annotations

import ipaddress
import mailbox
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import LazySettings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts import roles
from channels_app.common import crypto, hosts, outbound
from channels_app.email import services
from channels_app.email.imap import MailboxError
from channels_app.models import EmailChannel, InboundEmail
from inbox.models import ChannelKind, Conversation, Inbox, Message
from tests.channels.conftest import MailAccount, SmtpServer, allow_port, mail
from tests.conftest import start_session
from tests.inbox.conftest import grant_inbox

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def stored_secret(channel: EmailChannel, field: str = "imap_password") -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {field} FROM channels_app_emailchannel WHERE id = %s", [channel.pk])  # noqa: S608
        return str(cursor.fetchone()[0])


# --- Secrets at rest ----------------------------------------------------------------------


def test_secrets_are_encrypted_at_rest(mail_account: MailAccount, make_channel: Any) -> None:
    channel = make_channel(mail_account, smtp_password="smtp-secret-value")
    raw = stored_secret(channel)
    assert raw.startswith("fernet:") and mail_account.password not in raw
    assert "smtp-secret-value" not in stored_secret(channel, "smtp_password")
    assert EmailChannel.objects.get(pk=channel.pk).imap_password == mail_account.password


def test_keys_rotate_without_downtime(
    mail_account: MailAccount, make_channel: Any, settings: LazySettings
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    channel = make_channel(mail_account)
    before = stored_secret(channel)
    # The new key goes first: old tokens still read, new writes use the new key.
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert EmailChannel.objects.get(pk=channel.pk).imap_password == mail_account.password
    out = StringIO()
    call_command("rotate_field_keys", stdout=out)
    assert "1 channel(s) re-encrypted" in out.getvalue()
    assert stored_secret(channel) != before
    # With the old key gone, everything still reads.
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    assert EmailChannel.objects.get(pk=channel.pk).imap_password == mail_account.password
    # A secret no configured key can read fails loudly instead of reading as empty.
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        EmailChannel.objects.get(pk=channel.pk)


def test_debug_derives_a_key_and_production_needs_one(settings: LazySettings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.DEBUG = True
    token = crypto.encrypt("laptop secret")
    assert crypto.decrypt(token) == "laptop secret"
    settings.SECRET_KEY = "another-secret-key-" * 4
    with pytest.raises(ImproperlyConfigured):
        crypto.decrypt(token)
    settings.DEBUG = False
    with pytest.raises(ImproperlyConfigured, match="must be set"):
        crypto.encrypt("x")


# --- Host allowlisting --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.5",
        "192.168.1.10",
        "172.16.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",  # noqa: S104  # a target, not a bind address
        "224.0.0.1",
        "localhost",
        "bad host!",
        "-leading.example.com",
    ],
)
def test_internal_and_malformed_hosts_are_refused(host: str, settings: LazySettings) -> None:
    settings.CHANNEL_ALLOW_PRIVATE_HOSTS = []
    with pytest.raises(hosts.HostNotAllowed):
        hosts.resolve(host, 993)


def test_allowlisted_networks_and_public_addresses_pass(settings: LazySettings) -> None:
    settings.CHANNEL_ALLOW_PRIVATE_HOSTS = ["10.1.0.0/16"]
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = [993]
    assert hosts.resolve("10.1.2.3", 993) == [ipaddress.ip_address("10.1.2.3")]
    assert hosts.resolve("93.184.215.14", 993) == [ipaddress.ip_address("93.184.215.14")]
    with pytest.raises(hosts.HostNotAllowed):
        hosts.resolve("10.2.0.1", 993)


def test_private_hosts_are_allowed_on_listed_ports_only(settings: LazySettings) -> None:
    # As a laptop's DEBUG default: all of loopback listed, but no port named.
    settings.CHANNEL_ALLOW_PRIVATE_HOSTS = ["127.0.0.0/8", "::1/128"]
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = []
    for port in (1143, 6379, 5432):
        with pytest.raises(hosts.HostNotAllowed, match=f"on port {port}"):
            hosts.resolve("127.0.0.1", port)
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = [1143]
    assert hosts.resolve("127.0.0.1", 1143) == [ipaddress.ip_address("127.0.0.1")]
    assert hosts.resolve("::1", 1143) == [ipaddress.ip_address("::1")]
    # The mail server's network does not open its neighbours' Redis and PostgreSQL.
    for port in (6379, 5432):
        with pytest.raises(hosts.HostNotAllowed):
            hosts.resolve("127.0.0.1", port)
    # Public hosts keep every port: https on 443, IMAPS, SMTP submission.
    for port in (443, 993, 587):
        assert hosts.resolve("93.184.215.14", port) == [ipaddress.ip_address("93.184.215.14")]


def test_a_channel_on_an_unlisted_loopback_port_is_refused_at_connect(
    mail_account: MailAccount, make_channel: Callable[..., EmailChannel], settings: LazySettings
) -> None:
    mail_account.append(mail())
    channel = make_channel(mail_account)
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = [
        port for port in settings.CHANNEL_ALLOW_PRIVATE_PORTS if port != mail_account.server.port
    ]
    with pytest.raises(MailboxError, match="not allowed for channels") as refused:
        services.email_channel_poll(channel_id=channel.pk)
    assert not refused.value.transient and not InboundEmail.objects.exists()
    allow_port(settings, mail_account.server.port)
    assert services.email_channel_poll(channel_id=channel.pk).imported == 1


# --- Admin --------------------------------------------------------------------------------


@pytest.fixture
def supervisor(make_user: Any, delegate_new_inboxes: Any) -> Any:
    user = make_user(roles.SUPERVISOR, is_staff=True)
    delegate_new_inboxes(user)
    return user


@pytest.fixture
def supervisor_client(supervisor: Any, verified_client: Any) -> Client:
    client: Client = verified_client(supervisor)
    return client


@pytest.fixture(autouse=True)
def form_smtp_port(settings: LazySettings) -> None:
    # The forms name a loopback SMTP server on port 25 that is checked, never connected to.
    allow_port(settings, 25)


def channel_form(inbox: Inbox, account: MailAccount, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "inbox": inbox.pk,
        "email_address": "help@example.com",
        "enabled": "on",
        "poll_interval_seconds": 60,
        "imap_host": "127.0.0.1",
        "imap_port": account.server.port,
        "imap_security": "none",
        "imap_username": account.username,
        "imap_password": account.password,
        "imap_folder": "INBOX",
        "after_import": "seen",
        "archive_folder": "",
        "smtp_host": "127.0.0.1",
        "smtp_port": 25,
        "smtp_security": "none",
        "smtp_username": "",
        "smtp_password": "",
    }
    data.update(overrides)
    return data


def test_supervisor_configures_a_channel_and_never_sees_the_secret(
    supervisor_client: Client, mail_account: MailAccount
) -> None:
    inbox = Inbox.objects.create(name="Help desk", channel_kind=ChannelKind.EMAIL)
    response = supervisor_client.post(
        "/admin/channels_app/emailchannel/add/", channel_form(inbox, mail_account)
    )
    assert response.status_code == 302, response.content[:2000]
    channel = EmailChannel.objects.get(inbox=inbox)
    assert channel.imap_password == mail_account.password
    assert mail_account.password not in stored_secret(channel)
    page = supervisor_client.get(f"/admin/channels_app/emailchannel/{channel.pk}/change/")
    assert page.status_code == 200
    assert mail_account.password.encode() not in page.content
    assert stored_secret(channel).encode() not in page.content
    # Saving with the password left empty keeps it; typing one replaces it.
    form = channel_form(inbox, mail_account, imap_password="", poll_interval_seconds=120)
    assert (
        supervisor_client.post(f"/admin/channels_app/emailchannel/{channel.pk}/change/", form).status_code
        == 302
    )
    channel.refresh_from_db()
    assert channel.imap_password == mail_account.password and channel.poll_interval_seconds == 120
    form = channel_form(inbox, mail_account, imap_password="a new one")
    supervisor_client.post(f"/admin/channels_app/emailchannel/{channel.pk}/change/", form)
    channel.refresh_from_db()
    assert channel.imap_password == "a new one"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"imap_host": "10.0.0.5"}, b"not allowed for channels"),
        ({"smtp_host": "169.254.169.254"}, b"not allowed for channels"),
        ({"imap_host": "93.184.215.14", "imap_security": "none"}, b"allowed to loopback only"),
        ({"imap_password": ""}, b"The IMAP password is required"),
        ({"after_import": "move"}, b"Moving mail needs an archive folder"),
        ({"imap_folder": 'In"box'}, b"plain ASCII folder name"),
    ],
)
def test_channel_form_refuses_unsafe_settings(
    supervisor_client: Client, mail_account: MailAccount, overrides: dict[str, str], error: bytes
) -> None:
    inbox = Inbox.objects.create(name="Help desk", channel_kind=ChannelKind.EMAIL)
    response = supervisor_client.post(
        "/admin/channels_app/emailchannel/add/", channel_form(inbox, mail_account, **overrides)
    )
    assert response.status_code == 200 and error in response.content
    assert not EmailChannel.objects.exists()


def test_loopback_needs_the_deployment_to_allow_it(
    supervisor_client: Client, mail_account: MailAccount, settings: LazySettings
) -> None:
    settings.CHANNEL_ALLOW_PRIVATE_HOSTS = []
    inbox = Inbox.objects.create(name="Help desk", channel_kind=ChannelKind.EMAIL)
    response = supervisor_client.post(
        "/admin/channels_app/emailchannel/add/", channel_form(inbox, mail_account)
    )
    assert response.status_code == 200 and b"not allowed for channels" in response.content


def test_only_verified_supervisors_reach_channel_config(make_user: Any, verified_client: Any) -> None:
    agent_client = verified_client(make_user(roles.AGENT))
    response = agent_client.get("/admin/channels_app/emailchannel/")
    assert response.status_code == 302 and agent_client.get(response["Location"]).status_code == 403
    password_only = Client()
    start_session(password_only, make_user(roles.SUPERVISOR, is_staff=True), verified=False)
    assert password_only.get("/admin/channels_app/emailchannel/")["Location"].startswith("/accounts/verify/")
    assert Client().get("/admin/channels_app/emailchannel/")["Location"].startswith("/accounts/login/")


def test_admin_lists_take_a_fixed_number_of_queries(
    supervisor: Any,
    supervisor_client: Client,
    mail_account: MailAccount,
    make_channel: Callable[..., EmailChannel],
) -> None:
    channel = make_channel(mail_account)
    grant_inbox(channel.inbox, supervisor, perms=("view_inbox",))

    def add_rows(count: int) -> None:
        for _ in range(count):
            raw = mail()
            InboundEmail.objects.create(
                channel=channel, dedup_key=f"sha256:{hash(raw)}", raw=raw, size=len(raw), status="quarantined"
            )

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = supervisor_client.get(url)
            assert response.status_code == 200
        if url.endswith("/inboundemail/"):
            assert response.context["cl"].result_count == InboundEmail.objects.count()
        return len(captured)

    add_rows(1)
    queries("/admin/channels_app/inboundemail/")  # warm: the policy caches permission ids per process
    few = [queries("/admin/channels_app/inboundemail/"), queries("/admin/channels_app/emailchannel/")]
    add_rows(10)
    make_channel(mail_account)
    many = [queries("/admin/channels_app/inboundemail/"), queries("/admin/channels_app/emailchannel/")]
    assert few == many


# --- Management commands ------------------------------------------------------------------


def test_poll_command(mail_account: MailAccount, make_channel: Callable[..., EmailChannel]) -> None:
    channel = make_channel(mail_account)
    mail_account.append(mail(), mail(subject="Another"))
    out = StringIO()
    call_command("email_poll", str(channel.pk), stdout=out)
    assert "stored 2, imported 2, quarantined 0" in out.getvalue()
    EmailChannel.objects.filter(pk=channel.pk).update(imap_password="wrong")
    with pytest.raises(CommandError, match="AUTHENTICATIONFAILED"):
        call_command("email_poll", str(channel.pk))
    channel.refresh_from_db()
    assert "AUTHENTICATIONFAILED" in channel.last_error and "wrong" not in channel.last_error


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_import_command_is_idempotent(
    kind: str, tmp_path: Path, mail_account: MailAccount, make_channel: Callable[..., EmailChannel]
) -> None:
    channel = make_channel(mail_account)
    path = tmp_path / kind
    box: Any = mailbox.mbox(path) if kind == "mbox" else mailbox.Maildir(path)
    box.add(mail(subject="Archived one", message_id="<a1@x>"))
    box.add(mail(subject="Re: Archived one", message_id="<a2@x>", headers={"In-Reply-To": "<a1@x>"}))
    box.add(b"Subject: no sender\n\nbody with a NUL \x00 byte\n")
    box.flush()
    out = StringIO()
    call_command("email_import", str(channel.pk), str(path), stdout=out)
    assert "stored 3, imported 2, quarantined 1" in out.getvalue()
    call_command("email_import", str(channel.pk), str(path), stdout=out)
    assert "stored 0, imported 0, quarantined 0, already stored 3" in out.getvalue()
    assert Conversation.objects.filter(inbox=channel.inbox).count() == 1
    assert Message.objects.filter(inbox=channel.inbox).count() == 2
    with pytest.raises(CommandError):
        call_command("email_import", str(channel.pk), str(tmp_path / "missing"))


# --- Tasks --------------------------------------------------------------------------------


def test_tasks_take_json_only_and_are_acknowledged_late() -> None:
    from config.celery import app

    assert list(app.conf.accept_content) == ["json"] and app.conf.task_serializer == "json"
    for name in ("channels_app.email_poll_due", "channels_app.email_poll", "channels_app.reply_send"):
        assert app.tasks[name].acks_late, name


def test_a_reply_goes_to_its_own_inbox_channel_only(
    mail_account: MailAccount,
    make_channel: Callable[..., EmailChannel],
    make_user: Any,
    smtp_server: SmtpServer,
) -> None:
    """One pipeline sends every channel's replies: a live chat reply in a site with an email
    channel is the live chat channel's to refuse, never mailed."""
    from tests.inbox.conftest import make_conversation

    make_channel(mail_account)
    chat = Inbox.objects.create(name="Chat", channel_kind=ChannelKind.LIVECHAT)
    conversation = make_conversation(chat, handle="visitor-1")
    agent = make_user(roles.AGENT)
    grant_inbox(chat, agent)
    message = Message.objects.create(
        conversation=conversation,
        inbox=chat,
        direction=Message.Direction.OUTBOUND,
        sender_user=agent,
        text="not for email",
        delivery_status=Message.DeliveryStatus.QUEUED,
    )
    outbound.reply_deliver(message.pk)
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert message.delivery_detail == "The inbox's live chat channel is missing or disabled."
    assert not smtp_server.handler.messages
