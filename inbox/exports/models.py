"""Governed exports: each job, who asked for it, what left and when, and the freezes that
stop a user's exports (monitoring sets one on abuse). Loaded by inbox/models.py."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from inbox.models import Inbox


class ExportJob(models.Model):
    """One export, from request to download. The row is the record of what left: it is kept
    after the file is gone (downloaded or expired)."""

    class Kind(models.TextChoices):
        CONVERSATIONS = "conversations", "Conversations"
        MESSAGES = "messages", "Messages"
        CONTACTS = "contacts", "Contacts"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSON = "json", "JSON"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Ready to download"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    inbox = models.ForeignKey(Inbox, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    format = models.CharField(max_length=4, choices=Format.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    # Counted at the request (what the quota is charged), then what was written.
    rows_total = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True, help_text="Watermarked: id, user and time.")
    file_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=300, blank=True)
    session_id = models.BigIntegerField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    link_expires_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="exportjob_user_time_idx")]

    def __str__(self) -> str:
        return f"Export {self.pk} ({self.kind}, {self.format})"


class ExportFreeze(models.Model):
    """While one is active, the user can neither request, run nor download an export."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=300)
    until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["user", "until"], name="exportfreeze_user_until_idx")]

    def __str__(self) -> str:
        return f"Exports frozen for {self.user_id} until {self.until:%Y-%m-%d %H:%M}"
