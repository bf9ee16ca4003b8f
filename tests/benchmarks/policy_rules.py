"""Benchmark: what 200 active policy rules add to the inbox list and to a socket's check.

Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/portcullis_bench_rules .venv/bin/python
tests/benchmarks/policy_rules.py [--conversations N] [--reuse]`. It loads the inbox_list
benchmark's data (1,000,000 conversations by default) into its own database, then times in
one run, interleaved so load on the machine falls on both alike:

- the inbox list (first page of 50) with no rules — the baseline — and with 200 active
  rules (half monitor, half enforce; time windows, networks, session age, authenticator,
  roles, inboxes, modules, actions), none of which closes the agent's inboxes, so both
  lists return the same rows and the difference is the rules' cost alone;
- a socket's per-event check (`LiveScope.allows`) with and without the rules;
- the memory of the compiled rule set.

Prints one JSON line; the targets are ≤ 0.5 ms p95 added to the list and ≤ 0.2 ms p95 for
the socket check.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import time as clock_time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portcullis_bench_rules")

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from tests.benchmarks.inbox_list import load, recreate_database  # noqa: E402  # sets Django up

N_RULES = 200


def paired_timings(
    first: Callable[[], Any],
    second: Callable[[], Any],
    *,
    runs: int,
    clock: Callable[[], float] = time.perf_counter,
    settle: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Both functions timed in alternation, after a warm-up, in milliseconds of `clock`
    (wall time unless told); `settle` runs untimed before each call."""
    for _ in range(5):
        first(), second()
    a: list[float] = []
    b: list[float] = []
    for run in range(runs):
        # Which goes first alternates, so neither always runs on the other's warm caches.
        order = ((first, a), (second, b)) if run % 2 else ((second, b), (first, a))
        for fn, samples in order:
            if settle is not None:
                settle()
            started = clock()
            fn()
            samples.append((clock() - started) * 1000)

    def summary(samples: list[float]) -> dict[str, float]:
        ordered = sorted(samples)
        return {
            "p50_ms": round(statistics.median(ordered), 3),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 3),
        }

    return {"without": summary(a), "with": summary(b)}


def make_rules(agent_inbox_ids: set[int]) -> None:
    """200 rules of every shape, none of which closes the agent's own inboxes now."""
    from django.contrib.auth.models import Group

    from inbox.models import Inbox, PolicyRule

    rng = random.Random(7)  # a fixed mix, not a secret
    other_inboxes = list(Inbox.objects.exclude(pk__in=agent_inbox_ids).values_list("pk", flat=True))
    roles = list(Group.objects.filter(name__in=["Billing agent", "Supervisor"]))
    for number in range(N_RULES):
        shape = number % 5
        rule = PolicyRule.objects.create(
            name=f"rule {number:03d}",
            mode=PolicyRule.Mode.MONITOR if number % 2 else PolicyRule.Mode.ENFORCE,
            effect=PolicyRule.Effect.DENY if number % 3 else PolicyRule.Effect.STEP_UP,
            actions=["view"] if shape != 4 else ["export", "reply"],
            # Time windows that are open now (the whole day) cost a check, not a firing.
            window_start=clock_time(0, 0) if shape in (0, 1) else None,
            window_end=clock_time(23, 59) if shape in (0, 1) else None,
            time_zone=rng.choice(["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]),
            allowed_networks="127.0.0.0/8\n10.0.0.0/8" if shape == 2 else "",
            max_session_age_minutes=720 if shape == 3 else None,
            modules=["sales"] if shape == 4 else [],
        )
        if shape in (0, 2):
            rule.inboxes.set(rng.sample(other_inboxes, 3))
        if shape == 1:
            rule.groups.set(roles)  # roles the agent does not hold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="skip the load if the database is filled")
    args = parser.parse_args()

    from accounts.models import User
    from inbox import policy, selectors
    from inbox.models import PolicyRule
    from inbox.policy import AccessContext, rules

    figures: dict[str, Any] = {
        "benchmark": "policy_rules",
        "conversations": args.conversations,
        "rules": N_RULES,
    }
    if not args.reuse:
        recreate_database()
        connection.close()
        call_command("migrate", verbosity=0)
        figures.update(load(args.conversations))
    PolicyRule.objects.all().delete()

    agent = User.objects.get(username="agent000")
    started = time.time()

    def request_context() -> AccessContext:
        # A new one per request, as the pages make: nothing carries over between requests.
        return AccessContext(
            user=agent,
            session_id=1,
            ip_address="127.0.0.1",
            session_started_at=started,
            verified_at=started,
            authenticator="totp",
        )

    ctx = request_context()
    inbox_ids = set(policy.visible_inboxes(ctx).values_list("pk", flat=True))
    rules.reset()
    live_without = policy.live_scope(ctx)
    first_inbox = min(inbox_ids)
    default = selectors.ConversationFilters()

    def page() -> Any:
        return selectors.conversation_list(ctx=request_context(), filters=default).rows

    empty = rules.RuleSet(version="bench-empty", rules=())

    def use(ruleset: rules.RuleSet) -> None:
        # The process's cached rule set, as `rules.ruleset()` keeps it between version checks.
        rules._state["ruleset"] = ruleset
        rules._state["checked"] = time.monotonic()

    def without_rules() -> Any:
        use(empty)
        return page()

    make_rules(inbox_ids)
    rules.reset()
    tracemalloc.start()
    compiled = rules._load("bench")
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    figures["active_rules"] = len(compiled.rules)
    figures["ruleset_memory_kib"] = round(size / 1024, 1)

    def with_rules() -> Any:
        use(compiled)
        return page()

    assert [c.pk for c in without_rules()] == [c.pk for c in with_rules()], "the rules changed the rows"
    listing = paired_timings(without_rules, with_rules, runs=args.runs)
    listing["added_p50_ms"] = round(listing["with"]["p50_ms"] - listing["without"]["p50_ms"], 3)
    listing["added_p95_ms"] = round(listing["with"]["p95_ms"] - listing["without"]["p95_ms"], 3)
    listing["ratio_p95"] = round(listing["with"]["p95_ms"] / max(listing["without"]["p95_ms"], 0.001), 3)
    figures["inbox_list"] = listing

    live_with = policy.live_scope(ctx)

    def frame_without() -> Any:
        use(empty)
        return live_without.allows(first_inbox, None)

    def frame_with() -> Any:
        use(compiled)
        return live_with.allows(first_inbox, None)

    assert frame_with(), "the rules closed the agent's inbox"
    frames = paired_timings(frame_without, frame_with, runs=args.runs * 10)
    frames["with_p95_us"] = round(frames["with"]["p95_ms"] * 1000, 1)
    figures["socket_check"] = frames

    # The engine alone, with nothing remembered: a fresh context per call, as a new request
    # or a socket's first check after a re-check sees it.
    def engine_without() -> Any:
        use(empty)
        return rules.denied_inboxes(request_context(), "view", record=False)

    def engine_with() -> Any:
        use(compiled)
        return rules.denied_inboxes(request_context(), "view", record=False)

    engine = paired_timings(engine_without, engine_with, runs=args.runs * 10)
    engine["with_p95_us"] = round(engine["with"]["p95_ms"] * 1000, 1)
    figures["rules_evaluation_uncached"] = engine
    figures["targets_met"] = {
        "list_added_p95_le_0_5_ms": listing["added_p95_ms"] <= 0.5,
        "socket_check_p95_le_0_2_ms": frames["with"]["p95_ms"] <= 0.2,
        "uncached_evaluation_p95_le_0_2_ms": engine["with"]["p95_ms"] <= 0.2,
    }
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    PolicyRule.objects.all().delete()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
