"""Every webhook provider, by the `provider` value its channels carry. Adding a provider is
one line here (see docs/adding-a-channel.md)."""

from __future__ import annotations

from channels_app.api.provider import Api
from channels_app.webhooks.contract import WebhookProvider
from channels_app.webhooks.providers.meta.provider import Meta
from channels_app.webhooks.providers.telegram.provider import Telegram
from channels_app.webhooks.providers.twilio.provider import Twilio

PROVIDERS: dict[str, WebhookProvider] = {
    provider.name: provider
    for provider in (
        Telegram(),
        Meta(),
        Twilio(),
        Api(),
    )
}


def provider_for(name: str) -> WebhookProvider | None:
    return PROVIDERS.get(name)
