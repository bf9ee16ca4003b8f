"""Property: whatever the grants, the API shows and lets write exactly what they say.

Hypothesis draws inboxes, teams, memberships, inbox and conversation grants to users and
teams (some expired) and conversations. The expected answers are computed here, in plain
Python over the drawn spec, independently of inbox.policy; the API is then asked as each
user, over a verified session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from guardian.shortcuts import assign_perm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from inbox.models import ChannelKind, Conversation, Inbox, Team
from tests.api.conftest import api_url
from tests.conftest import start_session
from tests.inbox.conftest import make_conversation

pytestmark = pytest.mark.django_db

Perm = Literal["view", "reply"]
Expiry = Literal["none", "future", "past"]
ALL_STATUSES = ",".join(Conversation.Status.values)


@dataclass(frozen=True)
class Holder:
    kind: Literal["user", "team"]
    index: int


@dataclass(frozen=True)
class Spec:
    inbox_count: int
    team_count: int
    memberships: tuple[frozenset[int], ...]  # per user: the teams they belong to
    conversations: tuple[tuple[int, str], ...]  # (inbox index, status)
    # (holder, target index, perm) -> expiry; one row per key, as in guardian's tables.
    inbox_grants: dict[tuple[Holder, int, Perm], Expiry]
    conversation_grants: dict[tuple[Holder, int, Perm], Expiry]

    def _holds(
        self, grants: dict[tuple[Holder, int, Perm], Expiry], user: int, target: int, perm: Perm
    ) -> bool:
        return any(
            expiry != "past"
            and (
                (holder.kind == "user" and holder.index == user)
                or (holder.kind == "team" and holder.index in self.memberships[user])
            )
            for (holder, grant_target, grant_perm), expiry in grants.items()
            if grant_target == target and grant_perm == perm
        )

    def may(self, user: int, conversation: int, perm: Perm) -> bool:
        inbox = self.conversations[conversation][0]
        holds = self._holds(self.inbox_grants, user, inbox, perm) or self._holds(
            self.conversation_grants, user, conversation, perm
        )
        # Every action also needs sight of the conversation.
        return holds and (perm == "view" or self.may(user, conversation, "view"))

    def sees_inbox(self, user: int, inbox: int) -> bool:
        return self._holds(self.inbox_grants, user, inbox, "view")


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    inbox_count = draw(st.integers(2, 5))
    team_count = draw(st.integers(0, 2))
    user_count = draw(st.integers(1, 3))
    memberships = tuple(
        draw(st.frozensets(st.integers(0, team_count - 1), max_size=team_count))
        if team_count
        else frozenset()
        for _ in range(user_count)
    )
    conversations = tuple(
        draw(
            st.lists(
                st.tuples(st.integers(0, inbox_count - 1), st.sampled_from(Conversation.Status.values)),
                min_size=1,
                max_size=6,
            )
        )
    )
    holders = st.builds(Holder, st.just("user"), st.integers(0, user_count - 1))
    if team_count:
        holders = holders | st.builds(Holder, st.just("team"), st.integers(0, team_count - 1))
    perms = st.sampled_from(["view", "reply"])
    expiries = st.sampled_from(["none", "future", "past"])

    def grants(target_count: int, max_size: int) -> dict[tuple[Holder, int, Perm], Expiry]:
        keys = st.tuples(holders, st.integers(0, target_count - 1), perms)
        return draw(st.dictionaries(keys, expiries, max_size=max_size))  # type: ignore[arg-type]

    return Spec(
        inbox_count=inbox_count,
        team_count=team_count,
        memberships=memberships,
        conversations=conversations,
        inbox_grants=grants(inbox_count, 8),
        conversation_grants=grants(len(conversations), 5),
    )


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each example writes inside a transaction that is always undone."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


@dataclass
class Built:
    inboxes: list[Inbox]
    conversations: list[Conversation]
    clients: list[Client]


def build(spec: Spec) -> Built:
    now = timezone.now()
    # Far from now on purpose: the policy compares with the database clock, which inside
    # the test's transaction stands at the transaction's start, before every example.
    when = {"none": None, "future": now + timedelta(days=1), "past": now - timedelta(days=1)}
    inboxes = [
        Inbox.objects.create(name=f"inbox {i}", channel_kind=ChannelKind.EMAIL)
        for i in range(spec.inbox_count)
    ]
    teams = [Team.objects.create(name=f"team {i}") for i in range(spec.team_count)]
    users = []
    for i, teams_of_user in enumerate(spec.memberships):
        # No password: hashing one per example would dominate the run time.
        user = User.objects.create(username=f"agent{i}")
        TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        user.groups.add(*(teams[t] for t in teams_of_user))
        users.append(user)
    conversations = [
        make_conversation(
            inboxes[inbox], handle=f"c{i}@example.com", status=status, when=now - timedelta(seconds=i)
        )
        for i, (inbox, status) in enumerate(spec.conversations)
    ]

    def grant(holder: Holder, perm: str, target: Any, expiry: Expiry) -> None:
        who = users[holder.index] if holder.kind == "user" else teams[holder.index]
        row = assign_perm(perm, who, target)
        row.expires_at = when[expiry]
        row.save()

    for (holder, target, perm), expiry in spec.inbox_grants.items():
        grant(holder, f"{perm}_inbox", inboxes[target], expiry)
    for (holder, target, perm), expiry in spec.conversation_grants.items():
        grant(holder, f"{perm}_conversation", conversations[target], expiry)

    clients = []
    for user in users:
        client = Client()
        start_session(client, user, verified=True)
        clients.append(client)
    return Built(inboxes, conversations, clients)


@settings(
    max_examples=25,
    deadline=None,
    database=None,  # no example files written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=specs())
def test_api_answers_exactly_what_the_grants_say(db: Any, spec: Spec) -> None:
    with rolled_back():
        built = build(spec)
        for user, client in enumerate(built.clients):
            expected = {
                built.conversations[c].pk for c in range(len(spec.conversations)) if spec.may(user, c, "view")
            }
            listed = client.get(api_url(f"conversations/?status={ALL_STATUSES}&limit=100"))
            assert listed.status_code == 200
            listed_ids = [row["id"] for row in listed.json()["results"]]
            assert len(listed_ids) == len(set(listed_ids))
            assert set(listed_ids) == expected

            inbox_ids = {row["id"] for row in client.get(api_url("inboxes/")).json()["results"]}
            assert inbox_ids == {
                built.inboxes[i].pk for i in range(spec.inbox_count) if spec.sees_inbox(user, i)
            }

            for index, conversation in enumerate(built.conversations):
                visible = spec.may(user, index, "view")
                detail = client.get(api_url(f"conversations/{conversation.pk}/"))
                assert detail.status_code == (200 if visible else 404)
                reply = client.post(
                    api_url(f"conversations/{conversation.pk}/messages/"),
                    {"text": "hello"},
                    content_type="application/json",
                )
                if spec.may(user, index, "reply"):
                    assert reply.status_code == 201
                else:
                    assert reply.status_code == (403 if visible else 404)
