"""The email channel's configuration and the raw store of the mail it received."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from channels_app.common import hosts
from channels_app.common.crypto import EncryptedTextField
from inbox.models import ChannelKind, Inbox, Message


class Security(models.TextChoices):
    TLS = "tls", "Implicit TLS"
    STARTTLS = "starttls", "STARTTLS"
    # Credentials in clear text are only tolerable when they never leave the machine.
    NONE = "none", "None (loopback only)"


class AfterImport(models.TextChoices):
    MARK_SEEN = "seen", "Mark as seen"
    MOVE = "move", "Move to the archive folder"


def _folder_validator(value: str) -> None:
    if not value or not value.isascii() or not value.isprintable() or '"' in value or "\\" in value:
        raise ValidationError("Use a plain ASCII folder name without quotes or backslashes.")


class EmailChannel(models.Model):
    """An inbox's mailbox: fetched over IMAP, answered over SMTP."""

    inbox = models.OneToOneField(
        Inbox,
        on_delete=models.PROTECT,
        related_name="email_channel",
        limit_choices_to={"channel_kind": ChannelKind.EMAIL},
    )
    email_address = models.EmailField(max_length=254, help_text="Replies are sent from this address.")
    enabled = models.BooleanField(default=True)
    poll_interval_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(15), MaxValueValidator(86_400)]
    )

    imap_host = models.CharField(max_length=253)
    imap_port = models.PositiveIntegerField(default=993, validators=[MaxValueValidator(65_535)])
    imap_security = models.CharField(max_length=8, choices=Security.choices, default=Security.TLS)
    imap_username = models.CharField(max_length=254)
    imap_password = EncryptedTextField(blank=True)
    imap_folder = models.CharField(max_length=200, default="INBOX", validators=[_folder_validator])
    after_import = models.CharField(max_length=8, choices=AfterImport.choices, default=AfterImport.MARK_SEEN)
    archive_folder = models.CharField(
        max_length=200, blank=True, validators=[_folder_validator], help_text="Needed to move mail."
    )

    smtp_host = models.CharField(max_length=253)
    smtp_port = models.PositiveIntegerField(default=465, validators=[MaxValueValidator(65_535)])
    smtp_security = models.CharField(max_length=8, choices=Security.choices, default=Security.TLS)
    smtp_username = models.CharField(max_length=254, blank=True, help_text="Empty: send without login.")
    smtp_password = EncryptedTextField(blank=True)

    # Where the last poll stopped. A UIDVALIDITY change voids every UID seen so far.
    uidvalidity = models.PositiveBigIntegerField(null=True, blank=True)
    last_uid = models.PositiveBigIntegerField(default=0)
    poll_enqueued_at = models.DateTimeField(null=True, blank=True)
    # The run working the mailbox, and until when: renewed at every step, so a run whose
    # worker died loses the channel within a lease, not at its next scheduled poll.
    poll_lease = models.CharField(max_length=32, blank=True)
    poll_lease_until = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["inbox__name"]

    def __str__(self) -> str:
        return self.email_address

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.inbox_id is not None and self.inbox.channel_kind != ChannelKind.EMAIL:
            errors["inbox"] = "Pick an email inbox."
        if self.after_import == AfterImport.MOVE and not self.archive_folder:
            errors["archive_folder"] = "Moving mail needs an archive folder."
        for prefix in ("imap", "smtp"):
            host, port = getattr(self, f"{prefix}_host"), getattr(self, f"{prefix}_port")
            if not host:
                continue
            try:
                addresses = hosts.resolve(host, port)
            except hosts.HostNotAllowed as exc:
                errors[f"{prefix}_host"] = str(exc)
                continue
            if getattr(self, f"{prefix}_security") == Security.NONE and not hosts.all_loopback(addresses):
                errors[f"{prefix}_security"] = "Unencrypted connections are allowed to loopback only."
        if errors:
            raise ValidationError(errors)


class InboundEmail(models.Model):
    """One received message exactly as it arrived, stored before anything reads it.

    Parsing happens afterwards; whatever it makes of the bytes, they stay here, so a
    message is never lost to a parser bug, and a quarantined one can be retried.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        IMPORTED = "imported", "Imported"
        QUARANTINED = "quarantined", "Quarantined"

    channel = models.ForeignKey(EmailChannel, on_delete=models.PROTECT, related_name="inbound_emails")
    # "sha256:<hash of the bytes>": a shared Message-ID does not make two mails one.
    dedup_key = models.CharField(max_length=300)
    uidvalidity = models.PositiveBigIntegerField(null=True, blank=True)
    uid = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty when imported from a file.")
    raw = models.BinaryField()
    size = models.PositiveBigIntegerField(help_text="The message's size on the server, in bytes.")
    # Over the size limit only the header is stored; the message stays on the server.
    truncated = models.BooleanField(default=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True, help_text="Why it was quarantined, or what parsing had to repair.")
    attempts = models.PositiveSmallIntegerField(default=0)
    from_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The mailbox is marked (or the mail moved) only once the row is final and committed.
    marked_on_server = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "dedup_key"], name="inboundemail_unique_per_channel")
        ]
        indexes = [
            models.Index(
                fields=["channel", "id"], condition=Q(status="pending"), name="inboundemail_pending_idx"
            ),
            models.Index(
                fields=["channel", "uid"],
                condition=Q(marked_on_server=False, uid__isnull=False) & ~Q(status="pending"),
                name="inboundemail_unmarked_idx",
            ),
            models.Index(fields=["status", "-received_at"], name="inboundemail_status_idx"),
            # A repeated fetch skips what its UID already stored.
            models.Index(fields=["channel", "uidvalidity", "uid"], name="inboundemail_uid_idx"),
        ]

    def __str__(self) -> str:
        return self.subject or self.dedup_key
