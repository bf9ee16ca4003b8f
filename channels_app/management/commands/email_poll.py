"""Poll one email channel now, in this process, until its mailbox has nothing new."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app.email import services
from channels_app.email.imap import MailboxError


class Command(BaseCommand):
    help = "Fetch and import new mail of one enabled email channel now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel_id", type=int)

    def handle(self, *args: Any, channel_id: int, **options: Any) -> None:
        totals = services.IngestResult()
        while True:
            try:
                result = services.email_channel_poll(channel_id=channel_id)
            except MailboxError as exc:
                raise CommandError(str(exc)) from None
            totals.add(result)
            if not result.more:
                break
        self.stdout.write(totals.summary())
