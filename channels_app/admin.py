"""Django's admin autodiscovery imports this module: importing each family's admin
registers its pages."""

from channels_app.email import admin as email_admin
from channels_app.livechat import admin as livechat_admin
from channels_app.webhooks import admin as webhooks_admin

__all__ = ["email_admin", "livechat_admin", "webhooks_admin"]
