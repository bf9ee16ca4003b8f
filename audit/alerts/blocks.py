"""Address blocks: the rows are the record and the truth; one cache entry listing the
active blocks is the request gate's fast path. The entry is rebuilt from the rows whenever
it is missing (a Redis restart or flush lifts nothing), after every change, and at least
every BLOCKS_CACHE_SECONDS (a block lapsing, or a change a racing rebuild overwrote)."""

from __future__ import annotations

import functools
import ipaddress
import time
from datetime import datetime

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.alerts.models import AlertResponse, BlockedAddress

BLOCKS_KEY = "monitor:blocks"
BLOCKS_CACHE_SECONDS = 300

# What the cache holds: each active block's network and end (epoch seconds).
ActiveBlocks = list[tuple[str, float]]


def blocks_cache_rebuild() -> ActiveBlocks:
    rows = BlockedAddress.objects.filter(lifted_at=None, until__gt=timezone.now()).values_list(
        "network", "until"
    )
    active = [(network, until.timestamp()) for network, until in rows]
    cache.set(BLOCKS_KEY, active, timeout=BLOCKS_CACHE_SECONDS)
    return active


@functools.lru_cache(maxsize=4096)
def _network(network: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(network, strict=False)


def block_holding(address: str, active: ActiveBlocks | None) -> str | None:
    """The blocked network the address lies in, if any. `active` is the cache entry as the
    request read it (with its other keys, in one round trip); None rebuilds it."""
    if active is None:
        active = blocks_cache_rebuild()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    now = time.time()
    for network, until in active:
        if until > now and ip in _network(network):
            return network
    return None


def _blocks_changed() -> None:
    transaction.on_commit(blocks_cache_rebuild)


def block_create(
    *, response: AlertResponse, ip_address: str, reason: str, until: datetime, created_by: User | None = None
) -> BlockedAddress:
    block = BlockedAddress.objects.create(
        ip_address=ip_address,
        network=str(_network(ip_address)),
        reason=reason[:300],
        until=until,
        created_by=created_by,
        alert=response.alert,
        response=response,
    )
    _blocks_changed()
    return block


def block_lift(*, response: AlertResponse, by: User) -> BlockedAddress | None:
    """Lift the block a response made, if it is still on (saved, not updated in bulk, so
    the audit log records who lifted it)."""
    block = BlockedAddress.objects.filter(response=response, lifted_at=None).first()
    if block is None:
        return None
    block.lifted_at, block.lifted_by = timezone.now(), by
    block.save(update_fields=["lifted_at", "lifted_by"])
    _blocks_changed()
    return block
