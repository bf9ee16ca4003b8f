"""Files from the widget: token-authenticated, origin-checked, size- and type-limited."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from channels_app.livechat import services as livechat
from channels_app.models import LiveChatChannel
from inbox.models import Attachment, ChannelKind, Inbox, Message
from tests.livechat.conftest import SHOP

pytestmark = pytest.mark.django_db

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def channel(settings: Any, tmp_path: Any) -> LiveChatChannel:
    settings.MEDIA_ROOT = str(tmp_path)
    inbox = Inbox.objects.create(name="Chat", channel_kind=ChannelKind.LIVECHAT)
    return LiveChatChannel.objects.create(inbox=inbox, allowed_origins=SHOP, prechat_name="off")


def _token(channel: LiveChatChannel) -> str:
    visitor = livechat.Visitor(channel_id=channel.pk, inbox_id=channel.inbox_id, handle=f"{channel.pk}:v:abc")
    return livechat.token_issue(visitor)


def _upload(
    channel: LiveChatChannel,
    *,
    origin: str | None = SHOP,
    token: str | None = None,
    content: bytes = PNG,
    name: str = "../../etc/screen shot.png",
) -> Any:
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    data: dict[str, Any] = {"id": "upload-0001", "file": SimpleUploadedFile(name, content, "image/png")}
    if token is not None:
        data["token"] = token
    return Client().post(f"/livechat/{channel.key}/upload/", data, **headers)


def test_upload_is_stored_as_a_message_with_an_attachment(channel: LiveChatChannel) -> None:
    response = _upload(channel, token=_token(channel))
    assert response.status_code == 201, response.content
    assert response["Access-Control-Allow-Origin"] == SHOP
    body = response.json()["message"]
    assert body["attachments"] == [{"name": "screen shot.png", "size": len(PNG), "type": "image/png"}]
    message = Message.objects.get(pk=body["id"])
    assert message.inbox_id == channel.inbox_id and message.direction == Message.Direction.INBOUND
    attachment = Attachment.objects.get(message=message)
    assert attachment.file.read() == PNG
    assert "etc" not in attachment.file.name
    # The same upload retried is stored once.
    again = _upload(channel, token=_token(channel))
    assert again.json()["message"]["id"] == body["id"]
    assert Attachment.objects.count() == 1


def test_foreign_or_missing_origin_is_refused_without_cors(channel: LiveChatChannel) -> None:
    for origin in ("http://evil.test", None):
        response = _upload(channel, origin=origin, token=_token(channel))
        assert response.status_code == 403
        assert "Access-Control-Allow-Origin" not in response
    assert not Message.objects.exists()


def test_missing_forged_or_foreign_token_is_401(channel: LiveChatChannel) -> None:
    other = LiveChatChannel.objects.create(
        inbox=Inbox.objects.create(name="Other", channel_kind=ChannelKind.LIVECHAT), allowed_origins=SHOP
    )
    for token in (None, "forged:token", _token(other)):
        assert _upload(channel, token=token).status_code == 401
    assert not Message.objects.exists()


def test_type_and_size_limits(channel: LiveChatChannel, settings: Any) -> None:
    token = _token(channel)
    executable = _upload(channel, token=token, content=b"MZ\x90\x00" + b"\x00" * 200, name="invoice.png")
    assert executable.status_code == 415
    settings.LIVECHAT_MAX_UPLOAD_BYTES = 1024
    big = _upload(channel, token=token, content=PNG + b"\x00" * 2048)
    assert big.status_code == 413
    assert not Message.objects.exists()


def test_get_is_refused(channel: LiveChatChannel) -> None:
    assert Client().get(f"/livechat/{channel.key}/upload/", HTTP_ORIGIN=SHOP).status_code == 405
    assert Client().get(f"/livechat/{channel.key}/upload/").status_code == 403
