"""Loads a demo organisation, idempotently, and shows new sign-in details once."""

from __future__ import annotations

import io
import secrets
from base64 import b32encode
from datetime import timedelta
from pathlib import Path
from typing import Any

import segno
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.template import Context, Template
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from guardian.shortcuts import assign_perm

from accounts import roles
from accounts.models import User
from channels_app.models import EmailChannel, LiveChatChannel, Security
from inbox.models import (
    CannedResponse,
    ChannelKind,
    ContactIdentity,
    Conversation,
    Inbox,
    Invoice,
    Label,
    Module,
    Team,
)
from inbox.services import InboundMessage, inbound_message_record

DEMO_USERS: list[tuple[str, str, list[str], bool]] = [
    # username, full name, roles, staff (admin access)
    ("supervisor", "Sam Supervisor", [roles.SUPERVISOR], True),
    # A second supervisor: privilege changes one asks for, the other approves.
    ("sasha", "Sasha Supervisor", [roles.SUPERVISOR], True),
    ("alice", "Alice Support", [roles.AGENT], False),
    ("bob", "Bob Sales", [roles.AGENT], False),
    ("carol", "Carol Billing", [roles.AGENT, roles.BILLING_AGENT], False),
]

AGENT_PERMS = ("view_inbox", "reply_inbox", "assign_inbox")
SUPERVISOR_PERMS = (*AGENT_PERMS, "export_inbox", "manage_inbox")

DEMO_INBOXES = [
    ("Email support", ChannelKind.EMAIL, Module.SUPPORT),
    ("Website chat", ChannelKind.LIVECHAT, Module.SUPPORT),
    ("Sales WhatsApp", ChannelKind.WHATSAPP, Module.SALES),
    ("Billing", ChannelKind.EMAIL, Module.BILLING),
]
ALL_INBOXES = [name for name, _, _ in DEMO_INBOXES]
DEMO_TEAMS = [
    ("Support team", ["Email support", "Website chat"], AGENT_PERMS),
    ("Sales team", ["Sales WhatsApp"], AGENT_PERMS),
    ("Billing team", ["Billing"], AGENT_PERMS),
    ("Supervisors", ALL_INBOXES, SUPERVISOR_PERMS),
]
# The Supervisors team manages the agents' teams (their members and accounts).
DEMO_MANAGED_TEAMS = {"Supervisors": ["Support team", "Sales team", "Billing team"]}
DEMO_TEAMS_OF = {
    "supervisor": ["Supervisors"],
    "sasha": ["Supervisors"],
    "alice": ["Support team"],
    "bob": ["Sales team"],
    "carol": ["Billing team"],
}
# The demo website (docs/demo/index.html, rendered into var/demo-site/ with the app's
# address) embeds the widget with this key; its origins follow the port it is served on.
DEMO_WIDGET_KEY = "lc_demo-website-chat"
DEMO_SITE_TEMPLATE = Path(__file__).resolve().parents[3] / "docs" / "demo" / "index.html"
# The demo's email inboxes send through a local SMTP sink (`make run` starts one). They have
# no IMAP server: their poll interval is the longest allowed and restarts at every load,
# so no poll falls into a demo session.
DEMO_MAILBOXES = {"Email support": "support@demo.portcullis.test", "Billing": "billing@demo.portcullis.test"}
DEMO_MAIL_HOST = "127.0.0.1"
DEMO_POLL_INTERVAL_SECONDS = 86_400
DEMO_LABELS = [("vip", "#b54708"), ("bug", "#b42318"), ("refund", "#1f5fbf")]
DEMO_CONVERSATIONS = [
    (
        "Email support",
        ChannelKind.EMAIL,
        "jane@customer.example",
        "Jane Doe",
        "My printer stopped syncing. Since the update it shows error 0x45.",
        "bug",
    ),
    (
        "Email support",
        ChannelKind.EMAIL,
        "omar@customer.example",
        "Omar Haddad",
        "Password reset mail never arrives. I tried three times today.",
        "",
    ),
    (
        "Website chat",
        ChannelKind.LIVECHAT,
        "visitor-8f2c",
        "Website visitor",
        "Hi! Do you ship to Norway? Looking at the X200.",
        "",
    ),
    (
        "Sales WhatsApp",
        ChannelKind.WHATSAPP,
        "+4915550001",
        "Lena Fischer",
        "Can I get a quote for 40 seats? We are a school.",
        "vip",
    ),
    (
        "Billing",
        ChannelKind.EMAIL,
        "finance@acme.example",
        "ACME Finance",
        "Invoice INV-2026-0211 is overdue on our side. Can you resend it?",
        "refund",
    ),
]


class Command(BaseCommand):
    help = "Create the demo organisation (safe to run again; addresses and ports are updated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--app-url",
            default="http://127.0.0.1:8000",
            help="Where Portcullis serves (the widget's source).",
        )
        parser.add_argument(
            "--site-port", type=int, default=8001, help="The port the demo website is served on."
        )
        parser.add_argument("--smtp-port", type=int, default=8025, help="The local SMTP sink's port.")

    def handle(self, *args: Any, **options: Any) -> None:
        var = Path(settings.BASE_DIR) / "var"
        credentials_file = var / "demo-credentials.txt"
        site_origins = [f"http://{host}:{options['site_port']}" for host in ("127.0.0.1", "localhost")]
        created: list[str] = []
        with transaction.atomic():
            self._segments()
            self._livechat(site_origins)
            self._mailboxes(options["smtp_port"])
            for username, full_name, role_names, staff in DEMO_USERS:
                if User.objects.filter(username=username).exists():
                    continue
                first, last = full_name.split(" ", 1)
                password = secrets.token_urlsafe(12)
                user = User.objects.create_user(
                    username=username,
                    password=password,
                    first_name=first,
                    last_name=last,
                    email=f"{username}@demo.portcullis.test",
                    is_staff=staff,
                )
                user.groups.set(Group.objects.filter(name__in=[*role_names, *DEMO_TEAMS_OF[username]]))
                device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
                created.append(self._show(user, password, device))
        self._website(var / "demo-site", app_url=options["app_url"].rstrip("/"), site_origin=site_origins[0])
        if created:
            credentials_file.parent.mkdir(parents=True, exist_ok=True)
            with credentials_file.open("a") as out:
                out.write("\n".join(created) + "\n")
            credentials_file.chmod(0o600)
            self.stdout.write(
                self.style.WARNING(
                    f"Demo sign-in details are shown once; a copy is in {credentials_file} (demo only)."
                )
            )
        else:
            self.stdout.write(f"Demo organisation already loaded; sign-in details are in {credentials_file}.")

    def _segments(self) -> None:
        """Inboxes, teams and their grants, and a few conversations to look at."""
        if Inbox.objects.exists():
            return
        inboxes = {
            name: Inbox.objects.create(name=name, channel_kind=kind, module=module)
            for name, kind, module in DEMO_INBOXES
        }
        teams = {}
        for team_name, inbox_names, perms in DEMO_TEAMS:
            team = teams[team_name] = Team.objects.create(name=team_name)
            for inbox_name in inbox_names:
                for perm in perms:
                    assign_perm(perm, team, inboxes[inbox_name])
        for manager_name, managed_names in DEMO_MANAGED_TEAMS.items():
            for managed_name in managed_names:
                assign_perm("manage_team", teams[manager_name], teams[managed_name])
        labels = {name: Label.objects.create(name=name, color=color) for name, color in DEMO_LABELS}
        CannedResponse.objects.create(
            shortcut="thanks", text="Thank you for reaching out! We are looking into it right away."
        )
        CannedResponse.objects.create(
            shortcut="refund-window", text="Refunds are possible within 30 days of purchase."
        )
        now = timezone.now()
        for minutes, (inbox_name, kind, handle, name, text, label) in enumerate(DEMO_CONVERSATIONS):
            result = inbound_message_record(
                InboundMessage(
                    inbox=inboxes[inbox_name],
                    channel_kind=kind,
                    handle=handle,
                    sender_name=name,
                    text=text,
                    subject=text.split(".")[0][:80],
                )
            )
            conversation = result.message.conversation
            Conversation.objects.filter(pk=conversation.pk).update(
                last_activity_at=now - timedelta(minutes=7 * minutes)
            )
            if label:
                conversation.labels.add(labels[label])
        billing_contact = ContactIdentity.objects.get(handle="finance@acme.example").contact
        for number, cents, status in (("INV-2026-0107", 129900, "paid"), ("INV-2026-0211", 45000, "overdue")):
            Invoice.objects.create(
                contact=billing_contact,
                number=number,
                amount_cents=cents,
                status=status,
                issued_at=now.date() - timedelta(days=40 if status == "paid" else 12),
            )

    def _livechat(self, site_origins: list[str]) -> None:
        """The website chat's widget, for the demo website on the given origins."""
        inbox = Inbox.objects.filter(name="Website chat", channel_kind=ChannelKind.LIVECHAT).first()
        if inbox is None:
            return
        origins = "\n".join(site_origins)
        # Only the demo's own channel follows the ports; one a supervisor added stays as it is.
        if LiveChatChannel.objects.filter(key=DEMO_WIDGET_KEY).update(allowed_origins=origins):
            return
        if not LiveChatChannel.objects.filter(inbox=inbox).exists():
            LiveChatChannel.objects.create(
                inbox=inbox,
                key=DEMO_WIDGET_KEY,
                allowed_origins=origins,
                welcome_text="Hi! This is the Portcullis demo chat. Ask us anything.",
            )

    def _mailboxes(self, smtp_port: int) -> None:
        """Email channels for the demo's email inboxes, so that replies are delivered."""
        # The IMAP side points at the sink too: loopback, on a port the demo allows.
        endpoint = {"imap_host": DEMO_MAIL_HOST, "imap_port": smtp_port, "smtp_host": DEMO_MAIL_HOST}
        endpoint |= {"smtp_port": smtp_port, "poll_enqueued_at": timezone.now()}
        for inbox_name, address in DEMO_MAILBOXES.items():
            inbox = Inbox.objects.filter(name=inbox_name, channel_kind=ChannelKind.EMAIL).first()
            if inbox is None or EmailChannel.objects.filter(email_address=address).update(**endpoint):
                continue
            if not EmailChannel.objects.filter(inbox=inbox).exists():
                EmailChannel.objects.create(
                    inbox=inbox,
                    email_address=address,
                    poll_interval_seconds=DEMO_POLL_INTERVAL_SECONDS,
                    imap_security=Security.NONE,
                    imap_username=address,
                    smtp_security=Security.NONE,
                    **endpoint,
                )

    def _website(self, directory: Path, *, app_url: str, site_origin: str) -> None:
        """The demo website, embedding the widget from wherever the app serves."""
        page = Template(DEMO_SITE_TEMPLATE.read_text()).render(
            Context({"app_url": app_url, "site_origin": site_origin, "widget_key": DEMO_WIDGET_KEY})
        )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "index.html").write_text(page)

    def _show(self, user: User, password: str, device: TOTPDevice) -> str:
        uri = device.config_url
        key = b32encode(device.bin_key).decode()
        text = f"{user.username}  password: {password}  TOTP key: {key}\n  {uri}"
        self.stdout.write(
            self.style.SUCCESS(
                f"\n== {user.get_full_name()} ({', '.join(g.name for g in user.groups.all())})"
            )
        )
        self.stdout.write(text)
        qr = io.StringIO()
        segno.make(uri, error="l").terminal(out=qr, compact=True)
        self.stdout.write(qr.getvalue(), ending="")
        return text
