"""Address blocks in the admin: administrators list and lift them (which reverses the
alert's response); a supervisor — an address is nobody's account — gets neither."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from audit.alerts import blocks
from audit.alerts.models import Alert, AlertKind, AlertResponse, AlertSeverity, BlockedAddress, ResponseKind
from tests.audit.test_alerts import people  # noqa: F401  # fixture used by name

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/audit/blockedaddress/"
SPRAYER = "203.0.113.9"


@pytest.fixture
def block() -> BlockedAddress:
    alert = Alert.objects.create(
        kind=AlertKind.PASSWORD_SPRAYING,
        severity=AlertSeverity.HIGH,
        score=90,
        ip_address=SPRAYER,
        pattern=f"spray:{SPRAYER}",
        summary="Ten names refused from one address.",
    )
    taken = AlertResponse.objects.create(alert=alert, response=ResponseKind.BLOCK_ADDRESS, mode="enforce")
    return blocks.block_create(
        response=taken,
        ip_address=SPRAYER,
        reason="spraying",
        until=timezone.now() + timedelta(hours=1),
    )


def lift(client: Client, block: BlockedAddress) -> Any:
    return client.post(CHANGELIST, {"action": "lift", "_selected_action": [block.pk]})


def test_a_supervisor_can_neither_see_nor_lift_a_block(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
    block: BlockedAddress,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = verified_client(people["sam"])
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{block.pk}/change/").status_code in (403, 404)
    with django_capture_on_commit_callbacks(execute=True):
        assert lift(client, block).status_code == 403
    block.refresh_from_db()
    assert block.lifted_at is None
    assert Client(REMOTE_ADDR=SPRAYER).get("/accounts/login/").status_code == 403


def test_an_administrator_lifts_a_block_and_the_address_is_served_again(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
    block: BlockedAddress,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sprayer = Client(REMOTE_ADDR=SPRAYER)
    assert sprayer.get("/accounts/login/").status_code == 403
    client = verified_client(people["ada"])
    assert SPRAYER in client.get(CHANGELIST).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        assert lift(client, block).status_code == 302
    block.refresh_from_db()
    assert block.lifted_by == people["ada"] and block.lifted_at is not None
    assert block.response.reversed_by == people["ada"]
    assert sprayer.get("/accounts/login/").status_code == 200
