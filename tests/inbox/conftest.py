"""Two segments (support, billing) with their teams and agents, and a few conversations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts import roles
from accounts.models import User
from inbox.models import ChannelKind, Contact, ContactIdentity, Conversation, Inbox, Message, Module, Team
from inbox.policy import AccessContext

AGENT_INBOX_PERMS = ("view_inbox", "reply_inbox", "assign_inbox")


def grant_inbox(
    inbox: Inbox, who: User | Group, perms: tuple[str, ...] = AGENT_INBOX_PERMS, **fields: Any
) -> None:
    for perm in perms:
        grant = assign_perm(perm, who, inbox)
        if fields:
            for key, value in fields.items():
                setattr(grant, key, value)
            grant.save()


def make_conversation(
    inbox: Inbox, *, handle: str = "", text: str = "Hello", when: datetime | None = None, **fields: Any
) -> Conversation:
    handle = handle or f"customer{Contact.objects.count() + 1}@example.com"
    contact = Contact.objects.create(name=handle.split("@")[0])
    ContactIdentity.objects.create(contact=contact, channel_kind=inbox.channel_kind, handle=handle)
    conversation = Conversation.objects.create(
        inbox=inbox,
        contact=contact,
        subject=f"About {text}",
        last_activity_at=when or timezone.now(),
        **fields,
    )
    Message.objects.create(
        conversation=conversation,
        inbox=inbox,
        direction=Message.Direction.INBOUND,
        sender_name=contact.name,
        text=text,
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    return conversation


@dataclass
class Segments:
    support: Inbox
    billing: Inbox
    support_team: Team
    billing_team: Team
    support_agent: User
    billing_agent: User
    support_conversations: list[Conversation]
    billing_conversations: list[Conversation]


@pytest.fixture
def segments(make_user: Callable[..., User]) -> Segments:
    support = Inbox.objects.create(
        name="Email support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT
    )
    billing = Inbox.objects.create(name="Billing", channel_kind=ChannelKind.EMAIL, module=Module.BILLING)
    support_team = Team.objects.create(name="Support team")
    billing_team = Team.objects.create(name="Billing team")
    grant_inbox(support, support_team)
    grant_inbox(billing, billing_team)
    support_agent = make_user(roles.AGENT, username="sue")
    billing_agent = make_user(roles.AGENT, roles.BILLING_AGENT, username="bill")
    support_agent.groups.add(support_team)
    billing_agent.groups.add(billing_team)
    now = timezone.now()
    support_conversations = [
        make_conversation(support, text=f"printer jam {i}", when=now - timedelta(minutes=i)) for i in range(3)
    ]
    billing_conversations = [
        make_conversation(billing, text=f"invoice question {i}", when=now - timedelta(minutes=i))
        for i in range(2)
    ]
    return Segments(
        support,
        billing,
        support_team,
        billing_team,
        support_agent,
        billing_agent,
        support_conversations,
        billing_conversations,
    )


def ctx(user: User) -> AccessContext:
    return AccessContext(user=user)
