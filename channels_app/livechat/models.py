"""The website chat widget's configuration."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from channels_app.common.crypto import EncryptedTextField
from inbox.models import ChannelKind, Inbox


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
