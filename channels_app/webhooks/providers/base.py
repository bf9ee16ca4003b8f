"""What most providers do the same way; each provider's class overrides the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels_app.common.provider_http import ProviderError
from channels_app.webhooks.contract import Answer, HookRequest
from channels_app.webhooks.items import Delivery, FetchedMedia, Item, MediaRef
from inbox.models import Message

OK = Answer("OK")


class BaseProvider:
    """POST only, answered "OK"; every item is a message or a status; no provider-side refusals."""

    methods: tuple[str, ...] = ("POST",)

    def subscription_challenge(self, channel: Any, params: Mapping[str, str]) -> str | None:
        return None

    def answer(self, channel: Any, request: HookRequest, delivery: Delivery) -> Answer:
        return OK

    def extra_media(self, item: Item) -> list[MediaRef]:
        return []

    def apply(self, channel: Any, item: Item, media: Mapping[str, FetchedMedia]) -> bool:
        return False

    def reply_refusal(self, channel: Any, message: Message) -> str | None:
        return None

    def media_fetch(self, channel: Any, media: MediaRef, max_bytes: int) -> bytes:
        raise ProviderError("this provider carries no media", transient=False)
