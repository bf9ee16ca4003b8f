"""Break-glass requests: who asked for which conversation, why, for how long, who decided,
and who reviewed its use. Loaded by inbox/models.py."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class BreakGlassRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a supervisor"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EMERGENCY = "emergency", "Granted at once (emergency)"

    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The id the agent gave, not a foreign key: whether such a conversation exists is not
    # the requester's to learn. Supervisors see requests for conversations they manage.
    conversation_ref = models.BigIntegerField()
    reason = models.TextField()
    minutes = models.PositiveSmallIntegerField()
    emergency = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    class Meta:
        verbose_name = "break-glass request"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"], name="breakglass_status_idx")]

    def __str__(self) -> str:
        return f"Break-glass {self.pk}: conversation {self.conversation_ref} for {self.minutes} min"
