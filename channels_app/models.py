"""Django loads an app's models from its models module: each family keeps its own in a
`models.py` of its package, and they are all imported here."""

from channels_app.api.models import ApiChannel
from channels_app.email.models import AfterImport, EmailChannel, InboundEmail, Security
from channels_app.livechat.models import FieldMode, LiveChatChannel
from channels_app.webhooks.models import InboundEvent, Provider, SocialChannel, VerificationMode
from channels_app.webhooks.providers.meta.models import MetaChannel, MetaKind
from channels_app.webhooks.providers.telegram.models import TelegramChannel, TelegramMode
from channels_app.webhooks.providers.twilio.models import CallRecord, TwilioChannel

__all__ = [
    "AfterImport",
    "ApiChannel",
    "CallRecord",
    "EmailChannel",
    "FieldMode",
    "InboundEmail",
    "InboundEvent",
    "LiveChatChannel",
    "MetaChannel",
    "MetaKind",
    "Provider",
    "Security",
    "SocialChannel",
    "TelegramChannel",
    "TelegramMode",
    "TwilioChannel",
    "VerificationMode",
]
