"""Benchmark: the agent workspace's in-place responses at 1,000,000 conversations.

Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/portcullis_bench .venv/bin/python
tests/benchmarks/workspace_panes.py [--conversations N] [--reuse]`. On the data of
tests/benchmarks/inbox_list.py (its loader; --reuse keeps a database it filled), with the
agent holding read marks on 2,000 conversations, times through the whole server stack
(middleware, gate, policy, template) as htmx asks for them:

- the list pane (`GET /`, HX-Request) with its unread counters;
- the conversation pane (`GET /conversations/<id>/`, HX-Request), which also marks it read;
- the floor: the same list pane with the permission filter removed.

The issue's target: p95 <= 25 ms server time for each pane. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# The device proof a browser attaches has a benchmark of its own (device_proof.py).
os.environ.setdefault("DEVICE_BINDING", "off")

from django.core.management import call_command
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.utils import timezone

from tests.benchmarks import inbox_list, report  # sets up Django first

HTMX = {"HTTP_HX_REQUEST": "true"}
TARGET_P95_MS = 25.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--reuse", action="store_true", help="skip the load if the database is filled")
    args = parser.parse_args()

    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import User
    from inbox import policy
    from inbox.models import Conversation, ConversationRead
    from inbox.policy import AccessContext
    from tests.conftest import start_session

    figures: dict[str, Any] = {"benchmark": "workspace_panes", "conversations": args.conversations}
    if not args.reuse:
        inbox_list.recreate_database()
        connection.close()
        call_command("migrate", verbosity=0)
        figures.update(inbox_list.load(args.conversations))
    agent = User.objects.get(username="agent000")
    visible = policy.visible_conversations(AccessContext(user=agent)).order_by("-last_activity_at")
    now = timezone.now()
    ConversationRead.objects.filter(user=agent).delete()
    ConversationRead.objects.bulk_create(
        ConversationRead(user=agent, conversation_id=pk, read_at=now)
        for pk in visible.values_list("id", flat=True)[:2000]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inbox_conversationread")
    TOTPDevice.objects.get_or_create(user=agent, confirmed=True, defaults={"name": "benchmark"})
    client = Client()
    start_session(client, agent, verified=True)
    open_one = visible.filter(status="open").values_list("id", flat=True).first()
    assert client.get("/", **HTMX).status_code == 200
    assert client.get(f"/conversations/{open_one}/", **HTMX).status_code == 200

    panes = {
        "list_pane": inbox_list.timings(lambda: client.get("/", **HTMX), runs=args.runs),
        "conversation_pane": inbox_list.timings(
            lambda: client.get(f"/conversations/{open_one}/", **HTMX), runs=args.runs
        ),
    }
    original = policy.conversation_scope
    policy.conversation_scope = lambda ctx, action=None, prune=False, inbox_id=None: policy.ConversationScope(  # type: ignore[assignment]  # the floor: no permission filter
        Q(), None
    )
    try:
        floor = {"list_pane": inbox_list.timings(lambda: client.get("/", **HTMX), runs=args.runs)}
    finally:
        policy.conversation_scope = original
    figures["messages"] = Conversation.objects.count() * 3
    figures["target_p95_ms"] = TARGET_P95_MS
    figures["within_target"] = {name: timing["p95_ms"] <= TARGET_P95_MS for name, timing in panes.items()}
    figures["panes"] = panes
    report.emit(
        figures,
        floor=floor,
        ratio={
            "list_pane_p95": round(panes["list_pane"]["p95_ms"] / max(floor["list_pane"]["p95_ms"], 0.01), 2)
        },
    )


if __name__ == "__main__":
    main()
