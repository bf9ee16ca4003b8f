"""An exporter with the support inbox's export grant, a verified session, and a private
directory for the files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts import roles
from accounts.models import User
from tests.channels.conftest import celery_worker  # noqa: F401  # fixture used by name
from tests.inbox.conftest import grant_inbox, segments  # noqa: F401  # fixture used by name

EXPORT_PERMS = ("view_inbox", "export_inbox")


@pytest.fixture(autouse=True)
def export_settings(settings: Any, tmp_path: Path) -> Path:
    settings.EXPORTS_ROOT = tmp_path / "exports"
    settings.EXPORT_DAILY_MAX_FILES = 3
    settings.EXPORT_DAILY_MAX_ROWS = 1_000
    return tmp_path / "exports"


@pytest.fixture
def exporter(request: pytest.FixtureRequest, make_user: Callable[..., User]) -> User:
    # By name: the module imports the `segments` fixture, which a parameter would shadow.
    support = request.getfixturevalue("segments").support
    user = make_user(roles.AGENT, username="erin")
    grant_inbox(support, user, EXPORT_PERMS)
    return user


@pytest.fixture
def erin(exporter: User, verified_client: Callable[[User], Client]) -> Client:
    return verified_client(exporter)
