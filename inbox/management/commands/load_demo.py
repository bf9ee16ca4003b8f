"""Loads a demo organisation, idempotently, and shows new sign-in details once."""

from __future__ import annotations

import io
import secrets
from base64 import b32encode
from pathlib import Path
from typing import Any

import segno
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import roles
from accounts.models import User

DEMO_USERS: list[tuple[str, str, list[str], bool]] = [
    # username, full name, roles, staff (admin access)
    ("supervisor", "Sam Supervisor", [roles.SUPERVISOR], True),
    ("alice", "Alice Support", [roles.AGENT], False),
    ("bob", "Bob Sales", [roles.AGENT], False),
    ("carol", "Carol Billing", [roles.AGENT, roles.BILLING_AGENT], False),
]


class Command(BaseCommand):
    help = "Create the demo organisation (safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        credentials_file = Path(settings.BASE_DIR) / "var" / "demo-credentials.txt"
        created: list[str] = []
        with transaction.atomic():
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
                user.groups.set(Group.objects.filter(name__in=role_names))
                device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
                created.append(self._show(user, password, device))
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
