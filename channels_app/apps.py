from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from channels_app import outbound, tasks
        from inbox.models import ChannelKind

        outbound.register_sender(ChannelKind.EMAIL, tasks.email_reply_enqueue)
        self._livechat_ready()
        # Also registers the social channels' tasks with Celery (autodiscovery finds tasks.py only).
        from channels_app import social_tasks

        for kind in (
            ChannelKind.TELEGRAM,
            ChannelKind.WHATSAPP,
            ChannelKind.MESSENGER,
            ChannelKind.INSTAGRAM,
            ChannelKind.SMS,
            ChannelKind.VOICE,
        ):
            outbound.register_sender(kind, social_tasks.social_reply_enqueue)

    @staticmethod
    def _livechat_ready() -> None:
        from django.db.models.signals import post_delete, post_save

        from channels_app import livechat, outbound
        from channels_app.models import LiveChatChannel
        from inbox.models import ChannelKind

        # A group send is all a reply needs: no task queue between the agent and the visitor.
        outbound.register_sender(ChannelKind.LIVECHAT, livechat.livechat_reply_send)
        for signal in (post_save, post_delete):
            signal.connect(livechat.channel_changed_receiver, sender=LiveChatChannel, dispatch_uid="livechat")
