"""Meta webhooks (WhatsApp Cloud API, Messenger, Instagram) and the Graph API.

Deliveries are signed: X-Hub-Signature-256 is "sha256=" + the hex HMAC-SHA256 of the raw
body under the app secret. Subscribing the webhook is proved by echoing hub.challenge
when hub.verify_token matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from typing import Any

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
    StatusChange,
    dicts,
    json_object,
    obj,
    secrets_equal,
    text_of,
)
from channels_app.webhooks.providers.meta.models import MetaChannel, MetaKind
from inbox.models import Message

SIGNATURE_HEADER = "X-Hub-Signature-256"
# What Meta posts its deliveries as; anything else is refused before it is read.
CONTENT_TYPE = "application/json"
OBJECTS = {
    "whatsapp_business_account": MetaKind.WHATSAPP,
    "page": MetaKind.MESSENGER,
    "instagram": MetaKind.INSTAGRAM,
}
# Longer replies are refused with this reason rather than cut.
TEXT_LIMITS = {MetaKind.WHATSAPP: 4096, MetaKind.MESSENGER: 2000, MetaKind.INSTAGRAM: 1000}
WHATSAPP_MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
STATUSES = {
    "sent": Message.DeliveryStatus.SENT,
    "delivered": Message.DeliveryStatus.DELIVERED,
    "read": Message.DeliveryStatus.READ,
    "failed": Message.DeliveryStatus.FAILED,
}
# Graph API error codes that mean "slow down" or "try again", whatever the HTTP status.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80007, 130429, 131000, 131016, 131048, 131056})


def signature(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signature_problem(body: bytes, header: str | None, app_secret: str) -> str | None:
    """Why the delivery is not proven to come from Meta, or None when it is."""
    if not header:
        return "missing X-Hub-Signature-256"
    if not header.startswith("sha256="):
        return "X-Hub-Signature-256 is not sha256"
    if not secrets_equal(header.strip().lower(), signature(body, app_secret)):
        return "X-Hub-Signature-256 does not match the body"
    return None


def subscription_challenge(params: dict[str, str], verify_token: str) -> str | None:
    """The challenge to echo when Meta's subscription request carries our verify token."""
    challenge = params.get("hub.challenge", "")
    if params.get("hub.mode") != "subscribe" or not secrets_equal(
        params.get("hub.verify_token", ""), verify_token
    ):
        return None
    # Echoed back verbatim: keep it to what Meta sends (digits), never markup.
    if not challenge or len(challenge) > 100 or not challenge.isalnum():
        return None
    return challenge


# --- Reading deliveries -----------------------------------------------------------------


def delivery_read(body: bytes) -> Delivery:
    payload = json_object(body)
    if not isinstance(payload.get("object"), str) or not isinstance(payload.get("entry"), list):
        raise Malformed("A Meta delivery has an object and a list of entries.")
    ids: list[str] = []
    for entry in dicts(payload["entry"]):
        for change in dicts(entry.get("changes")):
            value = obj(change.get("value"))
            ids += [f"wamid:{m['id']}" for m in dicts(value.get("messages")) if isinstance(m.get("id"), str)]
            ids += [
                f"status:{s.get('id')}:{s.get('status')}"
                for s in dicts(value.get("statuses"))
                if isinstance(s.get("id"), str)
            ]
        for event in dicts(entry.get("messaging")):
            message = obj(event.get("message"))
            if isinstance(message.get("mid"), str):
                ids.append(f"mid:{message['mid']}")
            elif "delivery" in event:
                ids += [
                    f"delivered:{mid}"
                    for mid in obj(event["delivery"]).get("mids") or []
                    if isinstance(mid, str)
                ]
            elif "read" in event:
                read = obj(event["read"])
                ids.append(
                    f"read:{obj(event.get('sender')).get('id')}:{read.get('watermark') or read.get('mid')}"
                )
    return Delivery(payload=payload, ids=ids)


def items(payload: dict[str, Any], channel: MetaChannel) -> list[Item]:
    kind = OBJECTS.get(payload.get("object", ""))
    if kind != channel.kind:
        return [Skipped(f"a {payload.get('object')!r} delivery on a {channel.get_kind_display()} channel")]
    found: list[Item] = []
    for entry in dicts(payload.get("entry")):
        if kind == MetaKind.WHATSAPP:
            found += _whatsapp_items(entry, channel.account_id)
        else:
            found += _messaging_items(entry, channel.account_id, kind)
    return found


def _whatsapp_items(entry: dict[str, Any], phone_number_id: str) -> list[Item]:
    found: list[Item] = []
    for change in dicts(entry.get("changes")):
        if change.get("field") != "messages":
            found.append(Skipped(f"whatsapp {change.get('field')!r} change"))
            continue
        value = obj(change.get("value"))
        if str(obj(value.get("metadata")).get("phone_number_id")) != phone_number_id:
            found.append(Skipped("for another WhatsApp phone number"))
            continue
        names = {
            str(contact.get("wa_id")): text_of(obj(contact.get("profile")).get("name"), 200)
            for contact in dicts(value.get("contacts"))
        }
        for message in dicts(value.get("messages")):
            found.append(_whatsapp_message(message, names))
        for status in dicts(value.get("statuses")):
            mapped = STATUSES.get(status.get("status", ""))
            if mapped is None or not isinstance(status.get("id"), str):
                found.append(Skipped(f"whatsapp status {status.get('status')!r}"))
                continue
            errors = "; ".join(
                f"{error.get('code')}: {text_of(error.get('title') or error.get('message'), 200)}"
                for error in dicts(status.get("errors"))
            )
            found.append(StatusChange(status=mapped, provider_message_id=status["id"], detail=errors))
    return found


def _whatsapp_message(message: dict[str, Any], names: dict[str, str]) -> Item:
    kind = message.get("type")
    sender = message.get("from")
    if not isinstance(message.get("id"), str) or not isinstance(sender, str) or not sender.isdigit():
        return Skipped("whatsapp message without id or sender")
    text = ""
    media: tuple[MediaRef, ...] = ()
    if kind == "text":
        text = text_of(obj(message.get("text")).get("body"))
    elif kind in WHATSAPP_MEDIA_TYPES:
        part = obj(message.get(kind))
        if not isinstance(part.get("id"), str):
            return Skipped(f"whatsapp {kind} without a media id")
        text = text_of(part.get("caption"))
        media = (
            MediaRef(
                ref=part["id"],
                declared_type=text_of(part.get("mime_type"), 100),
                filename=text_of(part.get("filename"), 255),
            ),
        )
    elif kind == "location":
        where = obj(message.get("location"))
        place = text_of(where.get("name"), 200)
        text = f"Location: {where.get('latitude')}, {where.get('longitude')} {place}".strip()
    elif kind == "button":
        text = text_of(obj(message.get("button")).get("text"))
    elif kind == "interactive":
        interactive = obj(message.get("interactive"))
        reply = obj(interactive.get("button_reply")) or obj(interactive.get("list_reply"))
        text = text_of(reply.get("title"))
    else:
        return Skipped(f"whatsapp {kind!r} message")
    return InboundText(
        provider_message_id=message["id"],
        handle=sender,
        sender_name=names.get(sender) or f"+{sender}",
        text=text,
        media=media,
    )


def _messaging_items(entry: dict[str, Any], account_id: str, kind: str) -> list[Item]:
    if str(entry.get("id")) != account_id:
        return [Skipped(f"for another {kind} account")]
    found: list[Item] = []
    for event in dicts(entry.get("messaging")):
        sender = str(obj(event.get("sender")).get("id") or "")
        message = obj(event.get("message"))
        if message:
            if message.get("is_echo"):
                found.append(Skipped(f"{kind} echo of a sent message"))
            elif not isinstance(message.get("mid"), str) or not sender.isdigit():
                found.append(Skipped(f"{kind} message without id or sender"))
            else:
                media = tuple(
                    MediaRef(
                        ref=str(obj(a.get("payload")).get("url")), declared_type=str(a.get("type") or "")
                    )
                    for a in dicts(message.get("attachments"))
                    if isinstance(obj(a.get("payload")).get("url"), str)
                )
                found.append(
                    InboundText(
                        provider_message_id=message["mid"],
                        handle=sender,
                        sender_name=sender,
                        text=text_of(message.get("text")),
                        media=media,
                    )
                )
        elif "delivery" in event:
            found += [
                StatusChange(status=Message.DeliveryStatus.DELIVERED, provider_message_id=mid)
                for mid in obj(event["delivery"]).get("mids") or []
                if isinstance(mid, str)
            ]
        elif "read" in event:
            read = obj(event["read"])
            if isinstance(read.get("mid"), str):
                found.append(
                    StatusChange(status=Message.DeliveryStatus.READ, provider_message_id=read["mid"])
                )
            elif isinstance(read.get("watermark"), int):
                found.append(
                    StatusChange(
                        status=Message.DeliveryStatus.READ, watermark_ms=read["watermark"], handle=sender
                    )
                )
        else:
            found.append(
                Skipped(f"{kind} {'/'.join(sorted(set(event) - {'sender', 'recipient', 'timestamp'}))}")
            )
    return found


# --- Graph API --------------------------------------------------------------------------


def _base(channel: MetaChannel) -> str:
    return (channel.api_base_url or settings.META_GRAPH_API_BASE_URL).rstrip("/")


def _auth(channel: MetaChannel) -> dict[str, str]:
    return {"Authorization": f"Bearer {channel.access_token}"}


def _raise_for(response: Response) -> None:
    if response.status < 400:
        return
    error: dict[str, Any] = {}
    with contextlib.suppress(ProviderError):  # an unreadable error body is still an error
        error = obj(obj(response.json()).get("error"))
    code = error.get("code")
    transient = provider_http.status_transient(response.status) or code in TRANSIENT_CODES
    message = text_of(error.get("message"), 300) or "no reason given"
    raise ProviderError(
        f"Meta refused (HTTP {response.status}, code {code}): {message}",
        transient=transient,
        retry_after=provider_http.retry_after(response),
    )


def text_send(channel: MetaChannel, recipient: str, text: str) -> str:
    """Send a text; returns the provider's id for it, as its status callbacks will name it."""
    if channel.kind == MetaKind.WHATSAPP:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": recipient,
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
    else:
        body = {"recipient": {"id": recipient}, "messaging_type": "RESPONSE", "message": {"text": text}}
    response = provider_http.request(
        "POST", f"{_base(channel)}/{channel.account_id}/messages", headers=_auth(channel), json_body=body
    )
    _raise_for(response)
    answer = obj(response.json())
    if channel.kind == MetaKind.WHATSAPP:
        message_id = obj((dicts(answer.get("messages")) or [{}])[0]).get("id")
    else:
        message_id = answer.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise ProviderError("Meta accepted the message but named no id", transient=False)
    return message_id


def media_fetch(channel: MetaChannel, media: MediaRef, max_bytes: int) -> bytes:
    """WhatsApp media is looked up by id, then downloaded with the token; Messenger and
    Instagram attachments are plain (signed) CDN URLs."""
    if channel.kind != MetaKind.WHATSAPP:
        response = provider_http.request("GET", media.ref, max_bytes=max_bytes, redirects=3)
        _raise_for(response)
        return response.content
    if not media.ref.isdigit():
        raise ProviderError("not a WhatsApp media id", transient=False)
    response = provider_http.request("GET", f"{_base(channel)}/{media.ref}", headers=_auth(channel))
    _raise_for(response)
    info = obj(response.json())
    size = info.get("file_size")
    if isinstance(size, int) and size > max_bytes:
        raise provider_http.TooLarge(max_bytes)
    if not isinstance(info.get("url"), str):
        raise ProviderError("Meta named no download URL for the media", transient=False)
    response = provider_http.request(
        "GET", info["url"], headers=_auth(channel), max_bytes=max_bytes, redirects=3
    )
    _raise_for(response)
    return response.content
