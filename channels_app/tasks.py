"""Celery's autodiscovery imports this module: importing each family's tasks registers
their (stable) names, e.g. "channels_app.email_poll_due" in the beat schedule."""

from channels_app.common import tasks as outbound_tasks
from channels_app.email import tasks as email_tasks
from channels_app.webhooks import tasks as webhooks_tasks
from channels_app.webhooks.providers.telegram import tasks as telegram_tasks

__all__ = ["email_tasks", "outbound_tasks", "telegram_tasks", "webhooks_tasks"]
