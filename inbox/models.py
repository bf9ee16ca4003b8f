"""The unified inbox: segments (inboxes), contacts, conversations and their messages.

Access is granted per object with guardian's direct foreign-key permission tables (at the
bottom), which carry an expiry and a reason. Only `inbox.policy` reads them.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    LIVECHAT = "livechat", "Live chat"
    TELEGRAM = "telegram", "Telegram"
    WHATSAPP = "whatsapp", "WhatsApp"
    MESSENGER = "messenger", "Messenger"
    INSTAGRAM = "instagram", "Instagram"
    SMS = "sms", "SMS"
    VOICE = "voice", "Phone"
    API = "api", "API"


class Module(models.TextChoices):
    SUPPORT = "support", "Support"
    SALES = "sales", "Sales"
    BILLING = "billing", "Billing"


class Inbox(models.Model):
    """A segment: one channel's conversations for one business function."""

    name = models.CharField(max_length=100, unique=True)
    channel_kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    module = models.CharField(max_length=16, choices=Module.choices, default=Module.SUPPORT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "inboxes"
        ordering = ["name"]
        permissions = [
            ("reply_inbox", "Can reply in the inbox's conversations"),
            ("assign_inbox", "Can assign the inbox's conversations"),
            ("export_inbox", "Can export the inbox's conversations"),
            ("manage_inbox", "Can manage the inbox's settings"),
        ]

    def __str__(self) -> str:
        return self.name


class Team(Group):
    """A team of agents. It is a Django group, so grants to it reach its members."""

    description = models.CharField(max_length=200, blank=True)

    class Meta:
        # Supervising a team (its members and their accounts) is delegated like an inbox.
        permissions = [("manage_team", "Can manage the team's members")]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A merged contact keeps its row (old links resolve) and points at the survivor.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )

    def __str__(self) -> str:
        return self.name or f"Contact {self.pk}"


class ContactIdentity(models.Model):
    """One handle of a contact on one channel: an address, a phone number, a chat id."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    channel_kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    handle = models.CharField(max_length=320)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "contact identities"
        constraints = [
            models.UniqueConstraint(fields=["channel_kind", "handle"], name="contactidentity_unique_handle")
        ]

    def __str__(self) -> str:
        return f"{self.channel_kind}:{self.handle}"


class Label(models.Model):
    name = models.CharField(max_length=50, unique=True)
    color = models.CharField(max_length=7, default="#64748b")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        SNOOZED = "snoozed", "Snoozed"
        RESOLVED = "resolved", "Resolved"

    class Priority(models.IntegerChoices):
        LOW = 0, "Low"
        NORMAL = 1, "Normal"
        HIGH = 2, "High"
        URGENT = 3, "Urgent"

    inbox = models.ForeignKey(Inbox, on_delete=models.PROTECT, related_name="conversations")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="conversations")
    subject = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    labels = models.ManyToManyField(Label, blank=True, related_name="conversations")
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField()

    class Meta:
        permissions = [("reply_conversation", "Can reply in the conversation")]
        indexes = [
            # The inbox list: newest activity first, per inbox, keyset on (time, id).
            models.Index(fields=["inbox", "-last_activity_at", "-id"], name="conv_inbox_activity_idx"),
            # Counters: open conversations per inbox by assignee, answered from the index.
            models.Index(fields=["inbox", "status", "assignee"], name="conv_inbox_status_assignee_idx"),
            models.Index(fields=["assignee", "-last_activity_at", "-id"], name="conv_assignee_activity_idx"),
            models.Index(fields=["-last_activity_at", "-id"], name="conv_activity_idx"),
        ]

    def __str__(self) -> str:
        return self.subject or f"Conversation {self.pk}"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", "Inbound"
        OUTBOUND = "out", "Outbound"

    class DeliveryStatus(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Denormalised from the conversation: idempotency is per inbox's channel.
    inbox = models.ForeignKey(Inbox, on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    sender_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sender_name = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True, help_text="Sanitized HTML, safe to render.")
    # NULL, not "", when absent: the unique constraint must not collide on blanks.
    provider_message_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    delivery_status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    delivery_detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["inbox", "provider_message_id"],
                condition=Q(provider_message_id__isnull=False),
                name="message_unique_provider_id_per_inbox",
            )
        ]
        indexes = [models.Index(fields=["conversation", "created_at", "id"], name="message_thread_idx")]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} message {self.pk}"


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="attachments/%Y/%m/")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, help_text="Sniffed from the bytes, not declared.")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)

    def __str__(self) -> str:
        return self.filename


class Note(models.Model):
    """An internal note: agents only, never sent to the contact."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["conversation", "created_at"], name="note_thread_idx")]

    def __str__(self) -> str:
        return f"Note {self.pk}"


class CannedResponse(models.Model):
    """A reusable reply; with no inbox it is offered everywhere."""

    inbox = models.ForeignKey(Inbox, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    shortcut = models.SlugField(max_length=50)
    text = models.TextField()

    class Meta:
        ordering = ["shortcut"]

    def __str__(self) -> str:
        return self.shortcut


class Invoice(models.Model):
    """Billing module data. Only the Billing role reaches it, never a support inbox."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        OVERDUE = "overdue", "Overdue"
        VOID = "void", "Void"

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=40, unique=True)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="EUR")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    issued_at = models.DateField()

    def __str__(self) -> str:
        return self.number


# --- Per-object grants ------------------------------------------------------------------
# guardian's direct foreign-key tables (indexed joins, rows cascade with their object),
# extended with an expiry and a reason for just-in-time access. An expired row grants
# nothing: the policy compares `expires_at` with the database clock on every query.


class GrantFields(models.Model):
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: until revoked.")
    reason = models.CharField(max_length=200, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        holder = getattr(self, "user", None) or getattr(self, "group", None)
        until = f" until {self.expires_at:%Y-%m-%d %H:%M}" if self.expires_at else ""
        return f"{holder}: {self.permission.codename} on {self.content_object}{until}"  # type: ignore[attr-defined]


class InboxUserObjectPermission(GrantFields, UserObjectPermissionBase):
    content_object = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="user_grants")

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "inbox grant to a user"
        indexes = [models.Index(fields=["user", "permission"], name="inbox_uop_user_perm_idx")]


class InboxGroupObjectPermission(GrantFields, GroupObjectPermissionBase):
    content_object = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="group_grants")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "inbox grant to a team"
        indexes = [models.Index(fields=["group", "permission"], name="inbox_gop_group_perm_idx")]


class ConversationUserObjectPermission(GrantFields, UserObjectPermissionBase):
    content_object = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="user_grants")

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "conversation grant to a user"
        indexes = [models.Index(fields=["user", "permission"], name="conv_uop_user_perm_idx")]


class ConversationGroupObjectPermission(GrantFields, GroupObjectPermissionBase):
    content_object = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="group_grants")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "conversation grant to a team"
        indexes = [models.Index(fields=["group", "permission"], name="conv_gop_group_perm_idx")]


class TeamUserObjectPermission(GrantFields, UserObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="user_grants")

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "team grant to a user"
        indexes = [models.Index(fields=["user", "permission"], name="team_uop_user_perm_idx")]


class TeamGroupObjectPermission(GrantFields, GroupObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="group_grants")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "team grant to a team"
        indexes = [models.Index(fields=["group", "permission"], name="team_gop_group_perm_idx")]
