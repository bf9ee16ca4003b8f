"""The catalogue of live events: every event a sender may publish, and every message the
channel layer carries to sockets. Senders build these, never dicts of their own shape, and
mypy checks each against its entry here (as Zulip's event_types.py does).

Inbox events go to the pages of everyone who sees the inbox (`events.publish_after_commit`);
live chat frames go to a visitor's widget sockets; access rechecks to an agent's sockets.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

InboxEventName = Literal[
    "conversation.created",
    "conversation.assigned",
    "conversation.status",
    "conversation.priority",
    "conversation.labels",
    "conversation.read",
    "message.created",
    "message.updated",
    "message.delivery",
    "note.created",
]


# --- Inbox events' payloads --------------------------------------------------------------


class MessageRef(TypedDict):
    """conversation.created, message.created, message.updated"""

    conversation_id: int
    message_id: int


class NoteRef(TypedDict):
    """note.created"""

    conversation_id: int
    note_id: int


class Assignment(TypedDict):
    """conversation.assigned"""

    conversation_id: int
    assignee_id: int | None


class StatusChange(TypedDict):
    """conversation.status"""

    conversation_id: int
    status: str


class PriorityChange(TypedDict):
    """conversation.priority"""

    conversation_id: int
    priority: int


class LabelsChange(TypedDict):
    """conversation.labels"""

    conversation_id: int
    label_ids: list[int]


class ReadMark(TypedDict):
    """conversation.read: an agent has seen the contact's messages up to message_id."""

    conversation_id: int
    message_id: int
    by: int


class Delivery(TypedDict):
    """message.delivery: what became of an outbound message (or a visitor's read mark)."""

    conversation_id: int
    message_id: int
    status: str


InboxEventPayload = (
    MessageRef | NoteRef | Assignment | StatusChange | PriorityChange | LabelsChange | ReadMark | Delivery
)


# --- Live chat: frames to a visitor's widget sockets --------------------------------------


class WidgetAttachment(TypedDict):
    name: str
    size: int
    type: str


class WidgetMessage(TypedDict):
    """A message as the widget shows it: no notes, no internal fields."""

    id: int
    direction: str
    text: str
    author: str
    created_at: str
    status: str
    attachments: list[WidgetAttachment]


class LiveChatMessage(TypedDict):
    type: Literal["livechat.message"]
    message: WidgetMessage


class LiveChatTyping(TypedDict):
    type: Literal["livechat.typing"]
    name: str


class LiveChatRead(TypedDict):
    type: Literal["livechat.read"]
    up_to: int


class LiveChatChannelChanged(TypedDict):
    """The widget's channel changed: its sockets check their page's origin again."""

    type: Literal["livechat.channel_changed"]


LiveChatFrame = LiveChatMessage | LiveChatTyping | LiveChatRead | LiveChatChannelChanged


# --- What the channel layer carries -------------------------------------------------------


class AccessRecheck(TypedDict):
    type: Literal["access.recheck"]


class SecurityAlert(TypedDict):
    """To the sockets of the supervisors who manage the alert's user (audit.alerts)."""

    type: Literal["security.alert"]
    alert_id: int
    kind: str
    severity: str
    summary: str


# An inbox event on the layer: {"type": "inbox.event", "event": <name>, "inbox_id": ...} and
# the payload's keys beside them (a TypedDict cannot spread a union, hence the mapping).
InboxLayerMessage = dict[str, Any]

LayerMessage = LiveChatFrame | AccessRecheck | SecurityAlert | InboxLayerMessage
