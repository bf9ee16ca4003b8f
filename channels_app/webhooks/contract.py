"""The provider contract: everything in which one webhook provider differs from another.

The services in `channels_app.webhooks` do intake, processing and replies the same way for
every provider and ask the provider (found in `registry.PROVIDERS` by the channel's
`provider`) only for what is its own. Adding a provider is one package under `providers/`
with a model and a class meeting this Protocol, and one line in the registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from channels_app.webhooks.items import Delivery, FetchedMedia, Item, MediaRef
from channels_app.webhooks.models import SocialChannel
from inbox.models import Message


@dataclass(frozen=True)
class HookRequest:
    """A delivery as it reached /hooks/<provider>/<channel id>/[<hook>/]: what verification
    and reading may look at."""

    # InboundEvent.Endpoint: which of the provider's hooks was called.
    endpoint: str
    body: bytes
    headers: Mapping[str, str]
    # Path and query, as the provider requested them (Twilio signs the full URL).
    full_path: str


@dataclass(frozen=True)
class Answer:
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class SignedSample:
    """A documented sample delivery, signed as the provider signs it (replay_webhook)."""

    path: str
    headers: dict[str, str]
    body: bytes


class WebhookProvider(Protocol):
    """Each provider's methods take its own model (`model`) as `channel`; the registry holds
    them all as WebhookProvider, so the channel is `Any` here and typed in each provider."""

    # Read-only members: each provider's class sets them as class attributes.
    # The channel's `provider` value and the URL segment of its hooks.
    @property
    def name(self) -> str: ...

    @property
    def model(self) -> type[SocialChannel]: ...

    # What the provider posts its deliveries as; anything else is refused (415) unread.
    @property
    def content_type(self) -> str: ...

    # Encrypted fields of the model: re-encrypted on key rotation, write-only in the admin.
    @property
    def secret_fields(self) -> tuple[str, ...]: ...

    # The hooks it calls: the path segment after the channel id ("" for none) → the
    # InboundEvent.Endpoint it is stored under. Any other segment is a 404.
    @property
    def hooks(self) -> Mapping[str, str]: ...

    # The kinds of inbox its channels feed (and answer the replies of).
    @property
    def inbox_kinds(self) -> frozenset[str]: ...

    # HTTP methods its hooks answer; GET is Meta's subscription check.
    @property
    def methods(self) -> tuple[str, ...]: ...

    def subscription_challenge(self, channel: Any, params: Mapping[str, str]) -> str | None:
        """A GET proving we own the webhook (Meta): the challenge to echo, or None: refused."""
        ...

    def verify(self, channel: Any, request: HookRequest) -> str | None:
        """Why the delivery is not proven to come from the provider, or None when it is.
        Raises Malformed (400) when it cannot even be read far enough to check."""
        ...

    def read(self, request: HookRequest) -> Delivery:
        """The delivery, read just far enough to key it. Raises Malformed."""
        ...

    def answer(self, channel: Any, request: HookRequest, delivery: Delivery) -> Answer:
        """What the provider is answered once the delivery is stored (TwiML for Twilio)."""
        ...

    def items(self, channel: Any, endpoint: str, body: bytes) -> list[Item]:
        """A stored event's items. Raises Malformed."""
        ...

    def extra_media(self, item: Item) -> list[MediaRef]:
        """Files an item other than a message carries (Twilio's voicemail recordings)."""
        ...

    def media_fetch(self, channel: Any, media: MediaRef, max_bytes: int) -> bytes:
        """Raises ProviderError (TooLarge past max_bytes)."""
        ...

    def apply(self, channel: Any, item: Item, media: Mapping[str, FetchedMedia]) -> bool:
        """Apply an item the common pipeline does not know (Twilio's calls); False: not one."""
        ...

    def text_limit(self, channel: Any) -> int: ...

    def reply_refusal(self, channel: Any, message: Message) -> str | None:
        """The provider's own reason not to send now (WhatsApp's 24-hour window)."""
        ...

    def send(self, channel: Any, recipient: str, text: str, idempotency_key: str) -> str:
        """Send a text; returns the provider's id for it. Raises ProviderError."""
        ...

    def sample_default(self, channel: Any) -> str:
        """The sample (docs/webhook-samples/<name>.json) replay_webhook sends by default."""
        ...

    def sample_signed(
        self, channel: Any, sample: str, template: str, values: dict[str, str]
    ) -> SignedSample: ...


class SampleUnavailable(ValueError):
    """No signed sample can be made: a value is missing, or the provider has none."""


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def sample_fill(template: str, values: dict[str, str]) -> bytes:
    """A sample's {placeholders} filled in, each escaped for a JSON string (digits stay
    digits), as compact JSON."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise SampleUnavailable(f"The sample needs a value for {name}.")
        return json.dumps(values[name])[1:-1]

    return json.dumps(json.loads(_PLACEHOLDER.sub(value, template))).encode()
