"""Telegram Bot API: updates pushed to our webhook or pulled with getUpdates; replies with
sendMessage; files through getFile.

Webhook deliveries are not signed: Telegram echoes the secret_token given to setWebhook
in X-Telegram-Bot-Api-Secret-Token, compared here in constant time.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings

from channels_app.common import provider_http
from channels_app.common.provider_http import ProviderError, Response
from channels_app.webhooks.items import (
    Delivery,
    InboundText,
    Item,
    Malformed,
    MediaRef,
    Skipped,
    dicts,
    json_object,
    obj,
    secrets_equal,
    text_of,
)
from channels_app.webhooks.providers.telegram.models import TelegramChannel

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  # a header name, not a secret
# What Telegram posts its updates as; anything else is refused before it is read.
CONTENT_TYPE = "application/json"
TEXT_LIMIT = 4096
# Updates one getUpdates returns at most (Telegram's own maximum is 100).
POLL_LIMIT = 100
MEDIA_KINDS = ("document", "audio", "voice", "video", "video_note", "animation", "sticker")


def secret_problem(header: str | None, secret: str) -> str | None:
    if not header:
        return "missing X-Telegram-Bot-Api-Secret-Token"
    if not secrets_equal(header, secret):
        return "X-Telegram-Bot-Api-Secret-Token does not match"
    return None


def update_read(body: bytes) -> Delivery:
    return update_check(json_object(body))


def update_check(update: dict[str, Any]) -> Delivery:
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise Malformed("A Telegram update has an integer update_id.")
    return Delivery(payload=update, ids=[f"update:{update_id}"])


def items(update: dict[str, Any]) -> list[Item]:
    message = update.get("message")
    if not isinstance(message, dict):
        kinds = sorted(set(update) - {"update_id"})
        return [Skipped(f"telegram {'/'.join(kinds) or 'empty'} update")]
    chat = obj(message.get("chat"))
    chat_id, message_id = chat.get("id"), message.get("message_id")
    if not isinstance(chat_id, int) or not isinstance(message_id, int):
        return [Skipped("telegram message without chat or id")]
    text = text_of(message.get("text")) or text_of(message.get("caption"))
    media: list[MediaRef] = []
    photos = dicts(message.get("photo"))
    if photos and isinstance(photos[-1].get("file_id"), str):
        # Sizes come smallest first: the last is the original.
        media.append(_media(photos[-1], "image/jpeg"))
    for kind in MEDIA_KINDS:
        part = obj(message.get(kind))
        if isinstance(part.get("file_id"), str):
            media.append(_media(part, text_of(part.get("mime_type"), 100)))
    if not text and not media:
        return [
            Skipped(f"telegram message of kind {'/'.join(sorted(set(message) & _CONTENT_KEYS)) or 'unknown'}")
        ]
    return [
        InboundText(
            # A message id is unique within its chat only.
            provider_message_id=f"{chat_id}:{message_id}",
            handle=str(chat_id),
            sender_name=_chat_name(chat, obj(message.get("from"))),
            text=text,
            media=tuple(media),
        )
    ]


_CONTENT_KEYS = {"location", "contact", "poll", "dice", "game", "venue", "story", "new_chat_members"}


def _media(part: dict[str, Any], declared_type: str) -> MediaRef:
    size = part.get("file_size")
    return MediaRef(
        ref=part["file_id"],
        declared_type=declared_type,
        filename=text_of(part.get("file_name"), 255),
        declared_size=size if isinstance(size, int) else None,
    )


def _chat_name(chat: dict[str, Any], sender: dict[str, Any]) -> str:
    if chat.get("type") != "private" and chat.get("title"):
        return text_of(chat.get("title"), 200)
    name = " ".join(
        filter(None, (text_of(sender.get("first_name"), 100), text_of(sender.get("last_name"), 100)))
    )
    username = text_of(sender.get("username"), 64)
    return name or (f"@{username}" if username else str(chat.get("id")))


# --- Bot API ----------------------------------------------------------------------------


def _base(channel: TelegramChannel) -> str:
    return (channel.api_base_url or settings.TELEGRAM_API_BASE_URL).rstrip("/")


def _call(
    channel: TelegramChannel, method: str, body: dict[str, Any], *, timeout: float | None = None
) -> Any:
    response = provider_http.request(
        "POST",
        f"{_base(channel)}/bot{channel.bot_token}/{method}",
        json_body=body,
        timeout=timeout,
        max_bytes=8 << 20,
    )
    return _result(response)


def _result(response: Response) -> Any:
    answer = obj(response.json()) if response.content else {}
    if response.status < 400 and answer.get("ok") is True:
        return answer.get("result")
    retry = obj(answer.get("parameters")).get("retry_after")
    raise ProviderError(
        f"Telegram refused (HTTP {response.status}): "
        f"{text_of(answer.get('description'), 300) or 'no reason given'}",
        transient=provider_http.status_transient(response.status),
        retry_after=float(retry) if isinstance(retry, int) else None,
    )


def text_send(channel: TelegramChannel, chat_id: str, text: str) -> str:
    result = obj(_call(channel, "sendMessage", {"chat_id": chat_id, "text": text}))
    message_id = result.get("message_id")
    if not isinstance(message_id, int):
        raise ProviderError("Telegram accepted the message but named no id", transient=False)
    return f"{chat_id}:{message_id}"


def updates_get(channel: TelegramChannel, offset: int, timeout: int) -> list[dict[str, Any]]:
    """Long-poll for updates from `offset`. Asking with a higher offset later is what
    confirms these to Telegram: until then it hands them out again."""
    result = _call(
        channel,
        "getUpdates",
        {"offset": offset, "timeout": timeout, "limit": POLL_LIMIT},
        timeout=timeout + 10,
    )
    if not isinstance(result, list):
        raise ProviderError("getUpdates answered no list", transient=True)
    return dicts(result)


def webhook_set(channel: TelegramChannel, url: str) -> None:
    _call(channel, "setWebhook", {"url": url, "secret_token": channel.webhook_secret})


def webhook_delete(channel: TelegramChannel) -> None:
    _call(channel, "deleteWebhook", {"drop_pending_updates": False})


def media_fetch(channel: TelegramChannel, media: MediaRef, max_bytes: int) -> bytes:
    if media.declared_size is not None and media.declared_size > max_bytes:
        raise provider_http.TooLarge(max_bytes)
    file = obj(_call(channel, "getFile", {"file_id": media.ref}))
    path = file.get("file_path")
    if not isinstance(path, str) or not path or ".." in path.split("/"):
        raise ProviderError("Telegram named no usable file path", transient=False)
    response = provider_http.request(
        "GET", f"{_base(channel)}/file/bot{channel.bot_token}/{quote(path)}", max_bytes=max_bytes
    )
    if response.status >= 400:
        raise ProviderError(
            f"Telegram refused the file (HTTP {response.status})",
            transient=provider_http.status_transient(response.status),
        )
    return response.content
