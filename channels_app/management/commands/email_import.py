"""Import an mbox file or a maildir directory into an email channel's inbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app.email import services
from channels_app.models import EmailChannel


class Command(BaseCommand):
    help = "Import an mbox file or maildir directory; running it again imports nothing twice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel_id", type=int)
        parser.add_argument("path", type=Path, help="An mbox file or a maildir (with cur/ new/ tmp/).")

    def handle(self, *args: Any, channel_id: int, path: Path, **options: Any) -> None:
        channel = EmailChannel.objects.select_related("inbox").filter(pk=channel_id).first()
        if channel is None:
            raise CommandError(f"No email channel {channel_id}.")
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        if path.is_dir() and not (path / "cur").is_dir():
            raise CommandError(f"{path} is a directory but not a maildir (no cur/).")
        result = services.email_file_import(channel=channel, path=path)
        self.stdout.write(result.summary())
