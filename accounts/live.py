"""Open sockets learn at once that their user's access may have changed.

Every agent socket joins its user's group. Whatever can withdraw access (a session ended,
an account locked or deactivated, a grant or team membership changed) asks the sockets to
verify again; each then re-runs the same checks as on connect, so nothing here decides
anything. The request goes out after the commit, so the sockets see the new state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

RECHECK_MESSAGE = {"type": "access.recheck"}


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def sockets_recheck(*, user_ids: Iterable[int]) -> None:
    """After the current transaction commits, make the users' open sockets verify again."""
    targets = sorted(set(user_ids))
    if not targets:
        return

    async def fan_out() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for user_id in targets:
            await layer.group_send(user_group(user_id), dict(RECHECK_MESSAGE))

    def send() -> None:
        try:
            async_to_sync(fan_out)()
        except Exception:
            # The sockets' own deadline timers and periodic sweep still catch the change.
            logger.warning("socket re-check for %d user(s) not delivered", len(targets), exc_info=True)

    transaction.on_commit(send)
