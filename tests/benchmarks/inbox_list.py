"""Benchmark: the permission-filtered inbox list and counters at 1,000,000 conversations.

Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/portcullis_bench .venv/bin/python
tests/benchmarks/inbox_list.py [--conversations N]` (defaults to the issue's sizes). It
(re)creates its own database, bulk-loads it server-side, then times, on the same data:

- the policy-filtered list (first page of 50, and a filtered page) and the counters (mine,
  unassigned, all and their unread counts, as the pages show them), at
  the selector (database) level and through the API endpoint (full server time);
- the floor: the very same selector queries with the permission filter removed;
- stock django-guardian: `get_objects_for_user` over generic object-permission rows.

Prints one JSON line with p50/p95 in milliseconds and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_bench")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "YmVuY2htYXJrLW9ubHktZmllbGQta2V5LTAwMDAwMDA=")
os.environ.setdefault("HTTPS", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import OperationalError, connection, transaction  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.test import Client  # noqa: E402

from tests.benchmarks import report  # noqa: E402

VOCABULARY = (
    "invoice refund printer login password delivery parcel broken screen battery charger order "
    "cancel subscription upgrade plan billing address shipping tracking late damaged replace "
    "warranty return label account locked reset email phone update payment card declined "
    "discount coupon question thanks urgent please help error crash slow install setup"
).split()

N_INBOXES = 50
N_TEAMS = 100
N_AGENTS = 500
INBOXES_PER_TEAM = 5


def recreate_database() -> None:
    name = settings.DATABASES["default"]["NAME"]
    admin = {k: settings.DATABASES["default"][k] for k in ("HOST", "PORT", "USER")}
    with psycopg.connect(
        host=admin["HOST"], port=admin["PORT"] or 5432, user=admin["USER"], dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def load(n_conversations: int) -> dict[str, Any]:
    """Server-side bulk load with generate_series: minutes, not hours, for millions of rows."""
    from accounts.models import User
    from inbox.models import Inbox, Team

    started = time.perf_counter()
    Inbox.objects.bulk_create(
        Inbox(name=f"Inbox {i:02d}", channel_kind="email", module="billing" if i % 10 == 0 else "support")
        for i in range(N_INBOXES)
    )
    for i in range(N_TEAMS):  # multi-table inheritance: no bulk_create
        Team.objects.create(name=f"Team {i:03d}")
    User.objects.bulk_create(
        User(username=f"agent{i:03d}", password="!", is_active=True) for i in range(N_AGENTS)
    )
    sql = f"""
        INSERT INTO accounts_user_groups (user_id, group_id)
        SELECT u.id, t.group_ptr_id FROM
          (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM accounts_user) u
          JOIN (SELECT group_ptr_id, row_number() OVER (ORDER BY group_ptr_id) - 1 AS n FROM inbox_team) t
            ON t.n = u.n %% {N_TEAMS};
        -- Team t holds view/reply/assign on inboxes (t*5 .. t*5+4) mod 50.
        INSERT INTO inbox_inboxgroupobjectpermission (group_id, permission_id, content_object_id, reason, granted_at)
        SELECT t.group_ptr_id, p.id, i.id, 'benchmark', now()
        FROM (SELECT group_ptr_id, row_number() OVER (ORDER BY group_ptr_id) - 1 AS n FROM inbox_team) t
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM inbox_inbox) i
          ON (i.n - (t.n * {INBOXES_PER_TEAM}) %% {N_INBOXES} + {N_INBOXES}) %% {N_INBOXES} < {INBOXES_PER_TEAM}
        JOIN auth_permission p ON p.codename IN ('view_inbox', 'reply_inbox', 'assign_inbox')
          AND p.content_type_id = (SELECT id FROM django_content_type WHERE app_label='inbox' AND model='inbox');
        INSERT INTO inbox_contact (name, created_at)
        SELECT 'Customer ' || g, now() FROM generate_series(1, {n_conversations}) g;
        INSERT INTO inbox_conversation
          (inbox_id, contact_id, subject, status, assignee_id, priority, created_at, last_activity_at)
        SELECT
          (SELECT min(id) FROM inbox_inbox) + (g %% {N_INBOXES}),
          (SELECT min(id) FROM inbox_contact) + g - 1,
          'Conversation ' || g,
          CASE WHEN r < 0.20 THEN 'open' WHEN r < 0.30 THEN 'pending'
               WHEN r < 0.35 THEN 'snoozed' ELSE 'resolved' END,
          CASE WHEN random() < 0.3 THEN NULL
               ELSE (SELECT min(id) FROM accounts_user) + floor(random() * {N_AGENTS})::int END,
          1,
          now() - (g || ' seconds')::interval,
          now() - ({n_conversations} - g || ' seconds')::interval - (random() * 3600 || ' seconds')::interval
        FROM (SELECT g, random() AS r FROM generate_series(1, {n_conversations}) g) s;
        INSERT INTO inbox_message
          (conversation_id, inbox_id, direction, sender_name, text, html, delivery_status, delivery_detail, created_at)
        SELECT c.id, c.inbox_id, CASE WHEN k = 2 THEN 'out' ELSE 'in' END, 'Customer',
          v[1 + floor(random() * {len(VOCABULARY)})::int] || ' ' || v[1 + floor(random() * {len(VOCABULARY)})::int]
          || ' ' || v[1 + floor(random() * {len(VOCABULARY)})::int] || ' ' || v[1 + floor(random() * {len(VOCABULARY)})::int]
          || ' ' || v[1 + floor(random() * {len(VOCABULARY)})::int] || ' order ' || c.id,
          '', CASE WHEN k = 2 THEN 'sent' ELSE 'received' END, '', c.last_activity_at - ((3 - k) || ' minutes')::interval
        FROM inbox_conversation c, generate_series(1, 3) k, (SELECT %s::text[] AS v) vocab;
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [VOCABULARY])
    # What autovacuum does to a live table: statistics, and the visibility map that lets
    # counts be answered from an index alone.
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"load_seconds": round(time.perf_counter() - started, 1)}


def timings(fn: Callable[[], Any], *, runs: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--guardian-runs", type=int, default=3, help="stock guardian is slow: few runs")
    parser.add_argument(
        "--guardian-timeout", type=int, default=120, help="seconds before a stock-guardian query is given up"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="skip the load if the database is already filled"
    )
    args = parser.parse_args()

    from accounts.models import User
    from inbox import policy, selectors
    from inbox.models import Conversation
    from inbox.policy import AccessContext
    from tests.conftest import start_session

    figures: dict[str, Any] = {"benchmark": "inbox_list", "conversations": args.conversations}
    if not args.reuse:
        recreate_database()
        connection.close()
        call_command("migrate", verbosity=0)
        figures.update(load(args.conversations))
    figures["messages"] = Conversation.objects.count() * 3

    agent = User.objects.get(username="agent000")
    ctx = AccessContext(user=agent)
    visible_inboxes = list(policy.visible_inboxes(ctx).values_list("id", flat=True))
    figures["agent_inboxes"] = len(visible_inboxes)
    default = selectors.ConversationFilters()
    filtered = selectors.ConversationFilters(inbox_id=visible_inboxes[0], scope="unassigned")

    def list_page(filters: selectors.ConversationFilters) -> Callable[[], Any]:
        return lambda: selectors.conversation_list(ctx=ctx, filters=filters).rows

    def counters(filters: selectors.ConversationFilters) -> Callable[[], Any]:
        return lambda: selectors.list_counters(ctx=ctx, filters=filters)

    runs = args.runs
    policy_figures = {
        "list": timings(list_page(default), runs=runs),
        "list_filtered": timings(list_page(filtered), runs=runs),
        "counters": timings(counters(default), runs=runs),
    }

    # The floor: identical queries without any permission filter.
    original = policy.visible_conversations, policy.conversation_scope
    policy.visible_conversations = lambda ctx: Conversation.objects.all()  # type: ignore[assignment]
    policy.conversation_scope = lambda ctx, action=None, prune=False, inbox_id=None: policy.ConversationScope(
        Q(), None
    )  # type: ignore[assignment]
    try:
        floor = {
            "list": timings(list_page(default), runs=runs),
            "list_filtered": timings(list_page(filtered), runs=runs),
            "counters": timings(counters(default), runs=runs),
        }
    finally:
        policy.visible_conversations, policy.conversation_scope = original

    figures["guardian_stock"] = guardian_baseline(
        agent, visible_inboxes, runs=args.guardian_runs, timeout=args.guardian_timeout
    )

    # Full server time through the API, when the API is there.
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.get_or_create(user=agent, confirmed=True, defaults={"name": "benchmark"})
    client = Client()
    start_session(client, agent, verified=True)
    api: dict[str, Any] = {}
    if client.get("/api/v1/conversations/").status_code == 200:
        api["list"] = timings(lambda: client.get("/api/v1/conversations/"), runs=runs)
        api["list_filtered"] = timings(
            lambda: client.get(f"/api/v1/conversations/?inbox={visible_inboxes[0]}&scope=unassigned"),
            runs=runs,
        )
    figures.update({"policy": policy_figures, "api": api})
    stock = figures["guardian_stock"]
    timed_out = [key for key in ("list", "counters") if stock[key].get("timed_out")]
    if timed_out:
        # A speedup over a query that never finished would be made up.
        report.fail(
            "inbox_list",
            f"the stock-guardian baseline timed out after {args.guardian_timeout} s ({', '.join(timed_out)})",
            **figures,
        )
    figures["speedup_vs_guardian_p95"] = {
        key: round(stock[key]["p95_ms"] / max(policy_figures[key]["p95_ms"], 0.01), 1)
        for key in ("list", "counters")
    }
    report.emit(
        figures,
        floor=floor,
        ratio={
            f"{key}_p95": round(policy_figures[key]["p95_ms"] / max(floor[key]["p95_ms"], 0.01), 2)
            for key in policy_figures
        },
    )


def guardian_baseline(agent: Any, inbox_ids: list[int], *, runs: int, timeout: int) -> dict[str, Any]:
    """Stock guardian: a generic (content type + text object id) row per conversation."""
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import Count, Q
    from guardian.shortcuts import get_objects_for_user

    from inbox.models import Conversation, ConversationGroupObjectPermission, ConversationUserObjectPermission

    team_id = agent.groups.values_list("id", flat=True).first()
    content_type = ContentType.objects.get_for_model(Conversation)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM guardian_groupobjectpermission")
        cursor.execute(
            """
            INSERT INTO guardian_groupobjectpermission (group_id, permission_id, content_type_id, object_pk)
            SELECT %s, p.id, %s, c.id::text FROM inbox_conversation c
            JOIN auth_permission p ON p.codename = 'view_conversation' AND p.content_type_id = %s
            WHERE c.inbox_id = ANY(%s)
            """,
            [team_id, content_type.pk, content_type.pk, inbox_ids],
        )
        rows = cursor.rowcount
        cursor.execute("ANALYZE guardian_groupobjectpermission")
    # Make guardian ignore the direct foreign-key tables, as a stock install would not have them.
    ConversationUserObjectPermission.enabled = False  # type: ignore[attr-defined]
    ConversationGroupObjectPermission.enabled = False  # type: ignore[attr-defined]

    def visible() -> Any:
        return get_objects_for_user(
            agent,
            "inbox.view_conversation",
            klass=Conversation.objects.filter(status="open"),
            with_superuser=False,
            accept_global_perms=False,
        )

    def page() -> Any:
        return list(
            visible().select_related("inbox", "contact", "assignee").order_by("-last_activity_at", "-id")[:51]
        )

    def counts() -> Any:
        return visible().aggregate(
            mine=Count("id", filter=Q(assignee_id=agent.pk)),
            unassigned=Count("id", filter=Q(assignee__isnull=True)),
            all=Count("id"),
        )

    result: dict[str, Any] = {"generic_rows": rows}
    for key, fn in (("list", page), ("counters", counts)):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {timeout * 1000}")
                result[key] = timings(fn, runs=runs, warmup=1)
        except OperationalError:
            result[key] = {"timed_out": True}
    ConversationUserObjectPermission.enabled = True  # type: ignore[attr-defined]
    ConversationGroupObjectPermission.enabled = True  # type: ignore[attr-defined]
    return result


if __name__ == "__main__":
    main()
