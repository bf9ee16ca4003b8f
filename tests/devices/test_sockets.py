"""The agents' socket: its handshake carries a fresh proof of the session's device key, and
revoking the device closes it."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.devices import services as device_services
from accounts.models import BrowserDevice, User
from audit.models import SecurityEvent
from config.asgi import application
from tests.devices.conftest import DeviceKey, bind, stolen
from tests.livechat.conftest import _open, cookie_of, db

pytestmark = pytest.mark.django_db(transaction=True)

SOCKET_URL = "ws://testserver/ws/agent/"


async def connect(client: Client, proof: str | None) -> tuple[WebsocketCommunicator, bool]:
    path = "/ws/agent/" + (f"?device_proof={quote(proof)}" if proof else "")
    headers = [
        (b"origin", b"http://testserver"),
        (b"host", b"testserver"),
        (b"cookie", cookie_of(client).encode()),
    ]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    _open.append(communicator)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def bound(make_user: Any) -> tuple[User, Client, DeviceKey]:
    # A transactional test flushes the roles the migrations made.
    user = await db(make_user)()
    client, key = Client(), DeviceKey()
    await db(bind)(client, user, key)
    return user, client, key


async def test_a_socket_opens_only_with_a_fresh_proof_of_the_sessions_key(make_user: Any) -> None:
    user, client, key = await bound(make_user)
    assert (await connect(client, None))[1] is False
    assert (await connect(client, DeviceKey().proof("GET", SOCKET_URL)))[1] is False
    assert (await connect(client, key.proof("GET", "ws://testserver/ws/other/")))[1] is False
    proof = key.proof("GET", SOCKET_URL)
    assert (await connect(client, proof))[1] is True
    # The stolen cookie with the proof the victim's browser just used: replayed.
    assert (await connect(stolen(client), proof))[1] is False
    codes = await db(
        lambda: set(
            SecurityEvent.objects.filter(kind="device_proof_refused", user=user).values_list(
                "detail__code", flat=True
            )
        )
    )()
    assert codes == {"proof_missing", "proof_other_device", "proof_wrong_request", "proof_replayed"}


async def test_revoking_the_device_closes_its_open_socket_within_a_second(make_user: Any) -> None:
    user, client, key = await bound(make_user)
    communicator, connected = await connect(client, key.proof("GET", SOCKET_URL))
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    device = await db(BrowserDevice.objects.get)(user=user)
    started = time.monotonic()
    await db(device_services.device_revoke)(device=device, by=user)
    assert (await communicator.receive_json_from(timeout=2))["type"] == "session.ended"
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
    assert time.monotonic() - started <= 1.0


async def test_monitor_mode_opens_an_unproven_socket_and_records_it(make_user: Any, settings: Any) -> None:
    settings.DEVICE_BINDING = "monitor"
    user, client, _ = await bound(make_user)
    assert (await connect(client, None))[1] is True
    event = await db(SecurityEvent.objects.get)(kind="device_proof_refused", user=user)
    assert event.detail["mode"] == "monitor" and event.detail["surface"] == "socket"
