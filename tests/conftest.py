"""Shared fixtures: users in roles, enrolled authenticators, verified sessions."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pyotp
import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import roles
from accounts.models import User, UserSession
from accounts.services import (
    OTP_VERIFIED_AT_KEY,
    SESSION_LAST_SEEN_KEY,
    SESSION_STARTED_KEY,
)
from audit.services import SESSION_ID_KEY

PASSWORD = "correct horse battery staple 9"
_counter = itertools.count(1)


def totp_of(device: TOTPDevice) -> pyotp.TOTP:
    """An independent generator for the device's codes."""
    from base64 import b32encode

    return pyotp.TOTP(b32encode(device.bin_key).decode(), interval=device.step, digits=device.digits)


@functools.cache
def _password_hash() -> str:
    # Hashed once: argon2 is slow on purpose, and hundreds of test users share one password.
    return make_password(PASSWORD)


@pytest.fixture
def role_groups(transactional_db: Any) -> None:
    """The role groups, which a transactional test's flush removed with the migrations' data."""
    for role in roles.ROLE_PERMISSIONS:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def make_user(db: Any) -> Callable[..., User]:
    def make(*roles: str, username: str | None = None, enrolled: bool = True, **fields: Any) -> User:
        user = User.objects.create(
            username=username or f"user{next(_counter)}", password=_password_hash(), **fields
        )
        for role in roles:
            user.groups.add(Group.objects.get(name=role))
        if enrolled:
            TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        return user

    return make


@pytest.fixture
def totp() -> Callable[[User], pyotp.TOTP]:
    def generator(user: User) -> pyotp.TOTP:
        return totp_of(TOTPDevice.objects.get(user=user, confirmed=True))

    return generator


def start_session(client: Client, user: User, *, verified: bool) -> UserSession:
    """Put the client in the state the sign-in flow leaves it in, without its timing.

    The flow itself is exercised in test_login_flow; other tests need many sessions and a
    TOTP code is accepted once per 30 s step.
    """
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    record = UserSession.objects.create(user=user, user_agent_hash=_empty_ua_hash())
    session = client.session
    now = timezone.now().timestamp()
    session[SESSION_ID_KEY] = record.pk
    session[SESSION_STARTED_KEY] = now
    session[SESSION_LAST_SEEN_KEY] = now
    if verified:
        device = TOTPDevice.objects.get(user=user, confirmed=True)
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session[OTP_VERIFIED_AT_KEY] = now
    session.save()
    return record


def _empty_ua_hash() -> str:
    import hashlib

    return hashlib.sha256(b"").hexdigest()


@pytest.fixture
def verified_client(make_user: Callable[..., User]) -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        start_session(client, user, verified=True)
        return client

    return make


@pytest.fixture
def delegate_new_inboxes() -> Iterator[Callable[[User], None]]:
    """Make a supervisor the delegated manager (not a reader) of every inbox the test
    creates from then on: for tests about a channel's configuration, not delegation."""
    from django.db.models.signals import post_save
    from guardian.shortcuts import assign_perm

    from inbox.models import Inbox

    delegated: list[User] = []

    def on_inbox_created(sender: type[Inbox], instance: Inbox, created: bool, **kwargs: Any) -> None:
        if created:
            for user in delegated:
                assign_perm("manage_inbox", user, instance)

    post_save.connect(on_inbox_created, sender=Inbox, dispatch_uid="delegate_new_inboxes")
    try:
        yield delegated.append
    finally:
        post_save.disconnect(sender=Inbox, dispatch_uid="delegate_new_inboxes")


@pytest.fixture(scope="session", autouse=True)
def redis_emptied() -> None:
    """The suite starts on an empty Redis database. Its keys are by user id (step-up
    markers, per-minute counters, baselines, presence), and a new test database counts ids
    from 1 again: a marker an earlier run left for user 42 would ask this run's user 42 for
    a second factor."""
    import redis
    from django.conf import settings

    if settings.REDIS_URL:
        redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def no_policy_rules_cached() -> None:
    """Each test starts with no policy rules, as its database does: a rule compiled in an
    earlier test (rolled back, so no signal said it was gone) must not linger."""
    import time

    from django.core.cache import cache

    from inbox.policy import rules

    cache.set(rules.VERSION_KEY, {"version": time.time_ns(), "active": 0}, timeout=None)
    rules.reset()
