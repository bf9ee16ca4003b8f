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

    class Meta:
        # Contacts' names and handles, and personal data in messages, unmasked (inbox.dlp.masking).
        permissions = [("view_pii", "Can see personal data unmasked")]

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


class ConversationRead(models.Model):
    """When one agent last opened a conversation. Anything newer (the conversation's
    last_activity_at) is unread for that agent: read state is per agent, not per message,
    so one colleague opening a conversation does not hide it from the others."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "conversation"], name="conversation_read_once_per_user")
        ]

    def __str__(self) -> str:
        return f"Read {self.conversation_id} by {self.user_id}"


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
        verbose_name = "inbox grant to a person"
        verbose_name_plural = "inbox grants to people"
        indexes = [models.Index(fields=["user", "permission"], name="inbox_uop_user_perm_idx")]


class InboxGroupObjectPermission(GrantFields, GroupObjectPermissionBase):
    content_object = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="group_grants")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "inbox grant to a team"
        verbose_name_plural = "inbox grants to teams"
        indexes = [models.Index(fields=["group", "permission"], name="inbox_gop_group_perm_idx")]


class ConversationUserObjectPermission(GrantFields, UserObjectPermissionBase):
    content_object = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="user_grants")

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "conversation grant to a person"
        verbose_name_plural = "conversation grants to people"
        indexes = [models.Index(fields=["user", "permission"], name="conv_uop_user_perm_idx")]


class ConversationGroupObjectPermission(GrantFields, GroupObjectPermissionBase):
    content_object = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="group_grants")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "conversation grant to a team"
        verbose_name_plural = "conversation grants to teams"
        indexes = [models.Index(fields=["group", "permission"], name="conv_gop_group_perm_idx")]


class TeamUserObjectPermission(GrantFields, UserObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="user_grants")

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "team grant to a person"
        verbose_name_plural = "team grants to people"
        indexes = [models.Index(fields=["user", "permission"], name="team_uop_user_perm_idx")]


class TeamGroupObjectPermission(GrantFields, GroupObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="group_grants")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "team grant to a team"
        verbose_name_plural = "team grants to teams"
        indexes = [models.Index(fields=["group", "permission"], name="team_gop_group_perm_idx")]


# --- Policy rules -------------------------------------------------------------------------
# Rules narrow what grants allow; they never grant anything. Each runs off, in monitor mode
# (recorded as "would have denied"), or enforced. Evaluated by `inbox.policy.rules`.


class RuleAction(models.TextChoices):
    VIEW = "view", "View"
    REPLY = "reply", "Reply, notes, status, labels"
    ASSIGN = "assign", "Assign"
    EXPORT = "export", "Export"
    MANAGE = "manage", "Manage (supervision)"
    REVEAL_PII = "reveal_pii", "Reveal personal data"
    BULK = "bulk", "Bulk actions"


class PolicyRule(models.Model):
    class Effect(models.TextChoices):
        DENY = "deny", "Deny"
        STEP_UP = "step_up", "Require a fresh second factor (step-up)"

    class Mode(models.TextChoices):
        OFF = "off", "Off"
        MONITOR = "monitor", "Monitor (record what it would do)"
        ENFORCE = "enforce", "Enforce"

    class Authenticator(models.TextChoices):
        ANY = "", "Any second factor"
        TOTP = "totp", "Authenticator app or stronger"
        PASSKEY = "passkey", "Passkey (synced or device-bound)"
        # Not synced to other devices, and used with user verification (PIN, biometrics).
        PASSKEY_BOUND = "passkey_bound", "Device-bound passkey"

    class DeviceTrust(models.TextChoices):
        ANY = "", "Any device"
        LOW = "low", "Registered device"
        MEDIUM = "medium", "Healthy device"
        HIGH = "high", "Approved device"

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower runs first.")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.MONITOR)
    effect = models.CharField(max_length=10, choices=Effect.choices, default=Effect.DENY)
    # Applies to (each empty: everyone / everything).
    groups = models.ManyToManyField(
        Group, blank=True, related_name="+", verbose_name="roles and teams", help_text="Empty: everyone."
    )
    inboxes = models.ManyToManyField(Inbox, blank=True, related_name="+", help_text="Empty: every inbox.")
    modules = models.JSONField(default=list, blank=True, help_text="Empty: every module.")
    actions = models.JSONField(default=list, blank=True, help_text="Empty: every action.")
    # Conditions: what a request must meet; a request that does not meet one of them gets
    # the effect. An unset condition is not checked; a condition on a signal the request
    # does not carry is not met.
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    weekdays = models.JSONField(default=list, blank=True, help_text="0 = Monday. Empty: every day.")
    allowed_networks = models.TextField(
        blank=True, help_text="One CIDR per line: requests must come from one."
    )
    blocked_networks = models.TextField(blank=True, help_text="One CIDR per line: requests must not.")
    max_session_age_minutes = models.PositiveIntegerField(null=True, blank=True)
    required_authenticator = models.CharField(
        max_length=16, choices=Authenticator.choices, blank=True, default=Authenticator.ANY
    )
    min_device_trust = models.CharField(max_length=10, choices=DeviceTrust.choices, blank=True, default="")
    max_risk_score = models.PositiveSmallIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name


# --- Outbound data-loss prevention (DLP) ------------------------------------------------------
# What agents write is scanned before it is stored (`inbox.dlp`). Rules are data: which
# kinds of finding, how sure the detector must be, and what happens then.


class DlpKind(models.TextChoices):
    CARD = "card", "Payment card number"
    IBAN = "iban", "IBAN"
    NATIONAL_ID = "national_id", "National identity number"
    PHONE = "phone", "Phone number"
    PERSONAL_EMAIL = "personal_email", "Personal email address"
    MESSENGER_LINK = "messenger_link", "Messenger link (wa.me, t.me, …)"
    MESSENGER_INVITE = "messenger_invite", "Invitation to a private messenger"


class DlpConfidence(models.IntegerChoices):
    # Purview's levels: a pattern alone is low or medium; supporting words nearby raise it.
    LOW = 65, "Low"
    MEDIUM = 75, "Medium"
    HIGH = 85, "High"


class DlpRule(models.Model):
    class Action(models.TextChoices):
        FLAG = "flag", "Flag (send and record)"
        JUSTIFY = "justify", "Require a justification"
        BLOCK = "block", "Block"
        # For customer messages, at ingest: the match is replaced by its masked form.
        REDACT = "redact", "Redact in customer messages (at ingest)"

    class Mode(models.TextChoices):
        OFF = "off", "Off"
        MONITOR = "monitor", "Monitor (record what it would do, let it through)"
        ENFORCE = "enforce", "Enforce"

    name = models.CharField(max_length=120, unique=True)
    kinds = models.JSONField(default=list, help_text="Kinds of finding this rule acts on.")
    min_confidence = models.PositiveSmallIntegerField(
        choices=DlpConfidence.choices, default=DlpConfidence.MEDIUM
    )
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.FLAG)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.MONITOR)
    applies_to_notes = models.BooleanField(
        default=False, help_text="Notes are internal: only rules about data that must not be kept apply."
    )
    inboxes = models.ManyToManyField(Inbox, blank=True, related_name="+", help_text="Empty: every inbox.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "DLP rule"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DlpFinding(models.Model):
    """What a rule found in an outbound text, masked: never the matched value itself."""

    class Outcome(models.TextChoices):
        FLAGGED = "flagged", "Sent, flagged"
        JUSTIFIED = "justified", "Sent with a justification"
        MONITORED = "monitored", "Sent (monitor mode: would have been held)"
        HELD = "held", "Not sent: justification required"
        BLOCKED = "blocked", "Not sent: blocked"
        REDACTED = "redacted", "Received: redacted at ingest"

    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    # Both empty when the text was refused: nothing was stored to point at.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="dlp_findings"
    )
    note = models.ForeignKey(
        Note, null=True, blank=True, on_delete=models.CASCADE, related_name="dlp_findings"
    )
    rule = models.ForeignKey(DlpRule, null=True, on_delete=models.SET_NULL, related_name="findings")
    rule_name = models.CharField(max_length=120, help_text="As it was named when it matched.")
    kind = models.CharField(max_length=20, choices=DlpKind.choices)
    masked_excerpt = models.CharField(max_length=200)
    confidence = models.PositiveSmallIntegerField(choices=DlpConfidence.choices)
    action = models.CharField(max_length=10, choices=DlpRule.Action.choices)
    mode = models.CharField(max_length=10, choices=DlpRule.Mode.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    justification = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "DLP finding"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["inbox", "created_at"], name="dlpfinding_inbox_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.masked_excerpt}"


# Models kept in their own package, loaded with the app's (they refer to the models above).
from inbox.breakglass.models import BreakGlassRequest  # noqa: E402, F401
from inbox.exports.models import ExportFreeze, ExportJob  # noqa: E402, F401
