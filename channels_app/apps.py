from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from channels_app.common import outbound
        from channels_app.email.services import EmailReplies
        from channels_app.livechat import services as livechat
        from channels_app.livechat.models import LiveChatChannel
        from channels_app.webhooks.registry import PROVIDERS
        from channels_app.webhooks.services import WebhookReplies
        from inbox import services as inbox_services
        from inbox.models import ChannelKind

        # Which family answers each kind of inbox; every one goes through outbound.reply_deliver.
        webhook_replies = WebhookReplies()
        for provider in PROVIDERS.values():
            for kind in provider.inbox_kinds:
                outbound.reply_channel_register(kind, webhook_replies)
        outbound.reply_channel_register(ChannelKind.EMAIL, EmailReplies())
        outbound.reply_channel_register(ChannelKind.LIVECHAT, livechat.LiveChatReplies())
        inbox_services.outbound_dispatcher_set(outbound.reply_dispatch)
        for signal in (post_save, post_delete):
            signal.connect(livechat.channel_changed_receiver, sender=LiveChatChannel, dispatch_uid="livechat")
