"""Throttling of the password step, per account and per source address, on Django's cache.

Not django-axes: axes counts inside `authenticate()` and answers a lockout with its own
response, so the second-factor lock (`User.locked_at`) and the throttle would answer in two
voices; it has no check for many usernames failing from one address; and it measures its
cool-off with the real clock. Here the cache (Redis in production) holds failure counts and
the time of the last failure; decisions compare them with `clock`, which tests move.

A throttled attempt is refused before the password is looked at, never delayed by sleeping:
a sleeping worker would hand the attacker a denial of service.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

# The time source of every decision; tests replace it to step past a delay or a block.
clock: Callable[[], float] = time.time

_PREFIX = "login-throttle"
# Beyond 2**20 base delays every setting is capped by the block; the cap keeps the float finite.
_MAX_DOUBLINGS = 20


@dataclass(frozen=True)
class _Budget:
    key: str
    delay_after: int
    block_after: int


def _username_digest(username: str) -> str:
    # Case and Unicode variants of a name share one budget, so they cannot multiply it; the
    # digest keeps attacker-chosen text out of cache keys.
    normalised = unicodedata.normalize("NFKC", username).casefold().strip()
    return hashlib.sha256(normalised.encode()).hexdigest()


def _network(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # One IPv6 client is usually given a whole /64: per address it would get 2**64 budgets.
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _account_key(username: str) -> str:
    return f"{_PREFIX}:account:{_username_digest(username)}"


def _budgets(username: str, address: str | None) -> list[_Budget]:
    # Keyed on the name alone, known or not: a per-account budget that only existing accounts
    # had would tell which names exist. The price is that anyone can make a name wait out a
    # block; the block is temporary and a supervisor sees the events.
    budgets = [
        _Budget(
            _account_key(username),
            settings.LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER,
            settings.LOGIN_THROTTLE_ACCOUNT_BLOCK_AFTER,
        )
    ]
    if address:
        budgets.append(
            _Budget(
                f"{_PREFIX}:address:{_network(address)}",
                settings.LOGIN_THROTTLE_ADDRESS_DELAY_AFTER,
                settings.LOGIN_THROTTLE_ADDRESS_BLOCK_AFTER,
            )
        )
    return budgets


def _forget_after() -> float:
    # A block outlasting the memory of its failures would end early.
    return max(settings.LOGIN_THROTTLE_FORGET_AFTER, settings.LOGIN_THROTTLE_BLOCK).total_seconds()


def _delay(budget: _Budget, failures: int) -> float:
    block = settings.LOGIN_THROTTLE_BLOCK.total_seconds()
    if failures >= budget.block_after:
        return block
    if failures < budget.delay_after:
        return 0.0
    doublings = min(failures - budget.delay_after, _MAX_DOUBLINGS)
    return min(settings.LOGIN_THROTTLE_BASE_DELAY.total_seconds() * 2**doublings, block)


def _wait(budget: _Budget, now: float) -> float:
    state = cache.get_many([f"{budget.key}:count", f"{budget.key}:last"])
    last = state.get(f"{budget.key}:last")
    if last is None or now - last >= _forget_after():
        return 0.0
    return last + _delay(budget, state.get(f"{budget.key}:count", 0)) - now


def _count_failure(budget: _Budget, now: float) -> None:
    count_key, last_key = f"{budget.key}:count", f"{budget.key}:last"
    # The real-time expiry only clears out old keys; decisions compare `last` with `clock`.
    ttl = math.ceil(_forget_after())
    last = cache.get(last_key)
    if last is None or now - last >= _forget_after():
        cache.set(count_key, 1, ttl)
    else:
        # INCR, not read-and-write: concurrent failures must not count as one.
        try:
            cache.incr(count_key)
        except ValueError:  # expired between the two reads
            cache.set(count_key, 1, ttl)
        cache.touch(count_key, ttl)
    cache.set(last_key, now, ttl)


def login_retry_after(*, username: str, address: str | None) -> int | None:
    """Whole seconds until this name may try a password from this address, or None if now."""
    now = clock()
    longest = max(_wait(budget, now) for budget in _budgets(username, address))
    return math.ceil(longest) if longest > 0 else None


def login_failure_record(*, username: str, address: str | None) -> bool:
    """Count a refused password against the name and the address.

    True when this failure brings the different names refused from the address within the
    current stuffing window to the threshold, which happens once per address and window.
    """
    now = clock()
    for budget in _budgets(username, address):
        _count_failure(budget, now)
    if not address:
        return False
    window = settings.LOGIN_STUFFING_WINDOW.total_seconds()
    # Fixed windows make "once per window" exact and need nothing but ADD and INCR.
    bucket = f"{_PREFIX}:stuffing:{_network(address)}:{int(now // window)}"
    ttl = math.ceil(window)
    if not cache.add(f"{bucket}:{_username_digest(username)}", True, ttl):
        return False
    cache.add(f"{bucket}:names", 0, ttl)
    return cache.incr(f"{bucket}:names") == settings.LOGIN_STUFFING_USERNAMES


def login_success_record(*, username: str) -> None:
    """Forget the name's failures. The address keeps its own: one known password must not
    clear the way for guesses at every other account from there."""
    key = _account_key(username)
    cache.delete_many([f"{key}:count", f"{key}:last"])
