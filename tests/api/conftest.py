"""API fixtures: service accounts, issued tokens and clients that present them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts import tokens
from accounts.models import User
from inbox.models import Inbox
from tests.inbox.conftest import segments  # noqa: F401  # the fixture, for tests/api too


@pytest.fixture
def service_account(make_user: Callable[..., User]) -> User:
    return make_user(username="crm-integration", enrolled=False, is_service_account=True)


@pytest.fixture
def issue_token(db: Any) -> Callable[..., tokens.IssuedToken]:
    def issue(
        user: User, inboxes: list[Inbox], *, can_write: bool = False, lifetime: timedelta = timedelta(days=30)
    ) -> tokens.IssuedToken:
        return tokens.token_issue(
            name="CRM sync",
            user=user,
            inbox_ids=[inbox.pk for inbox in inboxes],
            can_write=can_write,
            expires_at=timezone.now() + lifetime,
        )

    return issue


def token_client(plaintext: str, **kwargs: Any) -> Client:
    return Client(headers={"authorization": f"Bearer {plaintext}"}, **kwargs)


def api_url(path: str) -> str:
    return f"/api/v1/{path}"
