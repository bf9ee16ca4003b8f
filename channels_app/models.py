"""Channel configuration and the raw store of what each channel received."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from channels_app import hosts
from channels_app.crypto import EncryptedTextField
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


# --- Social and phone channels: webhooks in, provider HTTP APIs out ----------------------


class Provider(models.TextChoices):
    TELEGRAM = "telegram", "Telegram"
    META = "meta", "Meta (WhatsApp, Messenger, Instagram)"
    TWILIO = "twilio", "Twilio (SMS and voice)"


class VerificationMode(models.TextChoices):
    ENFORCE = "enforce", "Enforce: refuse what fails verification"
    # Only for rolling out a secret rotation step by step: what would have been refused is
    # accepted, marked unverified and raised as a security event.
    MONITOR = "monitor", "Monitor: accept unverified deliveries and record them"


def _public_url_validator(value: str) -> None:
    parsed = urlsplit(value)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ValidationError("Use an absolute http(s) URL.")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValidationError("Use a URL without credentials, query or fragment.")


class SocialChannel(models.Model):
    """What every webhook channel shares. Each provider's configuration extends it (a table
    of its own), and the raw inbound events point here."""

    provider = models.CharField(max_length=10, choices=Provider.choices, editable=False)
    inbox = models.OneToOneField(Inbox, on_delete=models.PROTECT, related_name="social_channel")
    enabled = models.BooleanField(default=True)
    verification_mode = models.CharField(
        max_length=8,
        choices=VerificationMode.choices,
        default=VerificationMode.ENFORCE,
        help_text="Monitor only while rotating a secret: unverified deliveries are then accepted.",
    )
    public_base_url = models.URLField(
        blank=True,
        validators=[_public_url_validator],
        help_text="This server as the provider reaches it, e.g. https://inbox.example.com (behind a "
        "TLS-terminating proxy: the proxy's address). Twilio signs it; webhooks are registered at it.",
    )
    api_base_url = models.URLField(
        blank=True,
        validators=[_public_url_validator],
        help_text="Empty: the provider's public API. Set only for a proxy or a test server.",
    )
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["inbox__name"]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} → {self.inbox}"

    def allowed_inbox_kinds(self) -> set[str]:
        raise NotImplementedError

    def webhook_path(self) -> str:
        return f"/hooks/{self.provider}/{self.pk}/"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.inbox_id is not None and self.inbox.channel_kind not in self.allowed_inbox_kinds():
            kinds = ", ".join(sorted(ChannelKind(kind).label for kind in self.allowed_inbox_kinds()))
            errors["inbox"] = f"Pick an inbox of kind {kinds}."
        for name in ("public_base_url", "api_base_url"):
            value = getattr(self, name)
            if not value:
                continue
            parsed = urlsplit(value)
            host = parsed.hostname or ""
            try:
                addresses = hosts.resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
            except hosts.HostNotAllowed as exc:
                if name == "api_base_url":  # where our secrets go: never into the internal network
                    errors[name] = str(exc)
                continue
            if parsed.scheme != "https" and not hosts.all_loopback(addresses):
                errors[name] = "Plain http is allowed to loopback only."
        if errors:
            raise ValidationError(errors)


class TelegramMode(models.TextChoices):
    PUSH = "push", "Push: Telegram calls our webhook"
    PULL = "pull", "Pull: long-poll getUpdates (no public URL needed)"


class TelegramChannel(SocialChannel):
    bot_token = EncryptedTextField(help_text="From @BotFather.")
    # Telegram sends it back in X-Telegram-Bot-Api-Secret-Token; generated when empty.
    webhook_secret = EncryptedTextField(blank=True)
    mode = models.CharField(max_length=4, choices=TelegramMode.choices, default=TelegramMode.PUSH)
    # getUpdates offset: one more than the last update stored. Committed with the updates.
    update_offset = models.BigIntegerField(default=0)
    # The poll chain that owns this channel, and until when; a dead chain's lease runs out.
    poll_lease = models.CharField(max_length=32, blank=True)
    poll_lease_until = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    webhook_registered_at = models.DateTimeField(null=True, blank=True)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = Provider.TELEGRAM
        if not self.webhook_secret:
            self.webhook_secret = secrets.token_urlsafe(48)
        super().save(*args, **kwargs)

    def allowed_inbox_kinds(self) -> set[str]:
        return {ChannelKind.TELEGRAM}

    def clean(self) -> None:
        super().clean()
        if self.webhook_secret and not _TELEGRAM_SECRET.match(self.webhook_secret):
            raise ValidationError({"webhook_secret": "1-256 characters: A-Z, a-z, 0-9, _ and - only."})


_TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class MetaKind(models.TextChoices):
    WHATSAPP = ChannelKind.WHATSAPP.value, "WhatsApp Cloud API"
    MESSENGER = ChannelKind.MESSENGER.value, "Facebook Messenger"
    INSTAGRAM = ChannelKind.INSTAGRAM.value, "Instagram"


class MetaChannel(SocialChannel):
    kind = models.CharField(max_length=10, choices=MetaKind.choices)
    account_id = models.CharField(
        max_length=64,
        validators=[RegexValidator(r"^[0-9]{1,64}$", "Meta ids are digits.")],
        help_text="WhatsApp: the phone number id. Messenger: the page id. Instagram: the account id.",
    )
    app_secret = EncryptedTextField(help_text="Signs every delivery (X-Hub-Signature-256).")
    verify_token = EncryptedTextField(help_text="Your choice; typed into Meta's webhook settings too.")
    access_token = EncryptedTextField(help_text="Sends replies and fetches media.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "account_id"], name="metachannel_unique_account")
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = Provider.META
        super().save(*args, **kwargs)

    def allowed_inbox_kinds(self) -> set[str]:
        return {self.kind}


class TwilioChannel(SocialChannel):
    account_sid = models.CharField(
        max_length=34,
        validators=[RegexValidator(r"^AC[0-9a-fA-F]{32}$", "An account SID is AC + 32 hex digits.")],
    )
    auth_token = EncryptedTextField(help_text="Signs every request (X-Twilio-Signature).")
    phone_number = models.CharField(
        max_length=16, validators=[RegexValidator(r"^\+[1-9][0-9]{6,14}$", "E.164, e.g. +14155550100.")]
    )
    forward_to = models.CharField(
        max_length=16,
        blank=True,
        validators=[RegexValidator(r"^\+[1-9][0-9]{6,14}$", "E.164, e.g. +14155550100.")],
        help_text="Calls ring this number first; empty: straight to voicemail.",
    )
    voicemail_greeting = models.CharField(
        max_length=300, default="Sorry, nobody can take your call. Please leave a message after the tone."
    )
    voicemail_max_seconds = models.PositiveSmallIntegerField(
        default=120, validators=[MinValueValidator(5), MaxValueValidator(600)]
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["phone_number"], name="twiliochannel_unique_number")]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = Provider.TWILIO
        super().save(*args, **kwargs)

    def allowed_inbox_kinds(self) -> set[str]:
        return {ChannelKind.SMS, ChannelKind.VOICE}

    def clean(self) -> None:
        super().clean()
        if not self.public_base_url:
            raise ValidationError({"public_base_url": "Twilio signs the public URL: it is required."})


class InboundEvent(models.Model):
    """One verified delivery exactly as it arrived, stored before anything reads it.

    The webhook answers as soon as this row is committed; a task turns it into messages.
    Its key is the provider's own id (message, update, call), so a replayed delivery is
    stored once.
    """

    class Endpoint(models.TextChoices):
        META = "meta", "Meta webhook"
        TELEGRAM = "telegram", "Telegram webhook"
        TELEGRAM_POLL = "telegram-poll", "Telegram getUpdates"
        TWILIO_SMS = "twilio-sms", "Twilio SMS"
        TWILIO_SMS_STATUS = "twilio-sms-status", "Twilio SMS status"
        TWILIO_VOICE = "twilio-voice", "Twilio incoming call"
        TWILIO_DIAL = "twilio-dial", "Twilio forwarded call result"
        TWILIO_RECORDING = "twilio-recording", "Twilio voicemail"
        TWILIO_TRANSCRIPTION = "twilio-transcription", "Twilio transcription"
        TWILIO_CALL_STATUS = "twilio-call-status", "Twilio call status"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        # Kept, never processed: a kind of event this version does not handle.
        IGNORED = "ignored", "Ignored (unknown kind)"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(SocialChannel, on_delete=models.PROTECT, related_name="inbound_events")
    endpoint = models.CharField(max_length=24, choices=Endpoint.choices)
    event_key = models.CharField(max_length=200)
    body = models.BinaryField()
    # False only in monitor mode, for a delivery that enforce mode would have refused.
    verified = models.BooleanField(default=True)
    verification_note = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    reason = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Set when the event must wait (its media provider is down, say): not tried before then.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "event_key"], name="inboundevent_unique_per_channel")
        ]
        indexes = [
            models.Index(
                fields=["channel", "id"], condition=Q(status="received"), name="inboundevent_pending_idx"
            ),
            models.Index(fields=["status", "-received_at"], name="inboundevent_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_endpoint_display()} {self.event_key}"


class CallRecord(models.Model):
    """A phone call as the conversation shows it: who, how long, answered or missed, and the
    voicemail. Twilio reports a call in several requests; each fills in what it knows."""

    channel = models.ForeignKey(TwilioChannel, on_delete=models.PROTECT, related_name="calls")
    call_sid = models.CharField(max_length=64)
    caller = models.CharField(max_length=32)
    call_status = models.CharField(max_length=16, blank=True)
    # None while ringing; True once a person picked up a forwarded call.
    answered = models.BooleanField(null=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    recording_url = models.URLField(max_length=500, blank=True)
    recording_seconds = models.PositiveIntegerField(null=True, blank=True)
    transcription = models.TextField(blank=True)
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="call"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "call_sid"], name="callrecord_unique_per_channel")
        ]

    def __str__(self) -> str:
        return f"Call {self.call_sid} from {self.caller}"


# --- Live chat: the website widget ---------------------------------------------------------


def livechat_key_default() -> str:
    # Public (it sits in the customer's page source), but unguessable: knowing it only lets
    # a page on an allowed origin open the chat.
    return "lc_" + secrets.token_urlsafe(18)


def livechat_secret_default() -> str:
    return secrets.token_urlsafe(32)


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_normalize(value: str) -> str:
    """An origin exactly as a browser sends it in its Origin header: lowercase scheme and
    host, the port only when it is not the scheme's default. Refuses anything else."""
    parsed = urlsplit(value.strip())
    try:
        port = parsed.port
    except ValueError:
        raise ValidationError(f"{value!r} has an invalid port.") from None
    host = parsed.hostname or ""
    if parsed.scheme not in DEFAULT_PORTS or not host:
        raise ValidationError(f"{value!r} is not an http(s) origin such as https://www.example.com.")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValidationError(f"{value!r} must be an origin only: no path, query or credentials.")
    if not host.isascii() or "*" in host:
        raise ValidationError(f"{value!r}: write the exact host, in its ASCII (punycode) form, no wildcard.")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[parsed.scheme]:
        netloc += f":{port}"
    return f"{parsed.scheme}://{netloc}"


class FieldMode(models.TextChoices):
    OFF = "off", "Not asked"
    OPTIONAL = "optional", "Optional"
    REQUIRED = "required", "Required"


class LiveChatChannel(models.Model):
    """A website chat widget feeding one inbox.

    The widget key is public; what protects the chat is the Origin allowlist (checked on
    every socket and upload), the signed visitor token (a visitor resumes only their own
    conversation) and, optionally, the site's HMAC of its signed-in user's id.
    """

    inbox = models.OneToOneField(
        Inbox,
        on_delete=models.PROTECT,
        related_name="livechat_channel",
        limit_choices_to={"channel_kind": ChannelKind.LIVECHAT},
    )
    key = models.CharField(max_length=40, unique=True, default=livechat_key_default, editable=False)
    enabled = models.BooleanField(default=True)
    allowed_origins = models.TextField(
        help_text="One origin per line, exactly as the site is served: scheme, host and port, e.g. "
        "https://www.example.com. Pages anywhere else cannot open the chat."
    )
    # The site's backend signs its user's id with this (HMAC-SHA256); stored encrypted.
    identity_secret = EncryptedTextField(default=livechat_secret_default, editable=False)
    identity_required = models.BooleanField(
        default=False,
        help_text="Only visitors the site has signed in (user id with a valid HMAC) may chat.",
    )
    prechat_name = models.CharField(
        "ask for the name", max_length=8, choices=FieldMode.choices, default=FieldMode.OPTIONAL
    )
    prechat_email = models.CharField(
        "ask for the email address", max_length=8, choices=FieldMode.choices, default=FieldMode.OFF
    )
    welcome_text = models.CharField(max_length=300, default="Hi! How can we help you today?")
    offline_form = models.BooleanField(
        default=True, help_text="When no agent is online, collect an email address and a message."
    )
    offline_text = models.CharField(
        max_length=300,
        default="We are offline right now. Leave your email and a message; we will write back.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "live chat channel"
        ordering = ["inbox__name"]

    def __str__(self) -> str:
        return f"Live chat → {self.inbox}"

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(line.strip() for line in self.allowed_origins.splitlines() if line.strip())

    def origin_allowed(self, origin: str) -> bool:
        # Stored origins are normalised the way browsers serialise the header, so an exact
        # comparison is the whole check: no suffix or pattern matching to get wrong.
        return bool(origin) and origin in self.origins

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.inbox_id is not None and self.inbox.channel_kind != ChannelKind.LIVECHAT:
            errors["inbox"] = "Pick a live chat inbox."
        normalised: list[str] = []
        problems: list[str] = []
        for line in self.allowed_origins.splitlines():
            if not line.strip():
                continue
            try:
                normalised.append(origin_normalize(line))
            except ValidationError as exc:
                problems.extend(exc.messages)
        if problems:
            errors["allowed_origins"] = problems
        elif not normalised:
            errors["allowed_origins"] = "List at least one origin."
        else:
            self.allowed_origins = "\n".join(dict.fromkeys(normalised))
        if errors:
            raise ValidationError(errors)
