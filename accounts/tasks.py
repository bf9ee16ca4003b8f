"""Account housekeeping tasks: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task

from accounts import supervision


@shared_task(name="accounts.change_requests_expire", ignore_result=True)
def change_requests_expire() -> int:
    return supervision.change_requests_expire()
