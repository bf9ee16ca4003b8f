"""The API channel uses the webhook channels' stand-ins: the integration's callback server is
the same local HTTP server the providers' APIs are."""

from tests.channels.webhooks.conftest import api_channel, social_settings

__all__ = ["api_channel", "social_settings"]
