"""Open sockets learn at once that their user's access may have changed.

Every agent socket joins its user's group. Whatever can withdraw access (a session ended,
an account locked or deactivated, a grant or team membership changed) asks the sockets to
verify again; each then re-runs the same checks as on connect, so nothing here decides
anything. The request goes out after the commit, so the sockets see the new state.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from inbox.events import send_to_groups

RECHECK_MESSAGE = {"type": "access.recheck"}


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def sockets_recheck(*, user_ids: Iterable[int]) -> None:
    """After the current transaction commits, make the users' open sockets verify again."""
    groups = [user_group(user_id) for user_id in sorted(set(user_ids))]
    if not groups:
        return
    # Not delivered is logged by the sender; the sockets' own deadline timers and periodic
    # sweep still catch the change.
    transaction.on_commit(lambda: send_to_groups(groups, dict(RECHECK_MESSAGE)))


# Every agent socket also follows this group: a change that may touch anyone (a policy
# rule) asks them all to verify again.
EVERY_SOCKET_GROUP = "agents.all"


def sockets_recheck_all() -> None:
    """After the current transaction commits, make every open agent socket verify again."""
    transaction.on_commit(lambda: send_to_groups([EVERY_SOCKET_GROUP], dict(RECHECK_MESSAGE)))
