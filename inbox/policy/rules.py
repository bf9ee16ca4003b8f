"""Policy rules: data that narrows what grants allow, staged off → monitor → enforce.

A rule applies to some roles or teams, inboxes or modules, and actions (each empty: all).
Its conditions say what a request must meet — a time window in a time zone, a network,
a session age, a second factor, a device trust level, a risk ceiling. A request that does
not meet one of them gets the rule's effect: deny, or require a fresh second factor. A
condition on a signal the request does not carry (a device, a risk score: later parts
provide them) is not met, so it fails closed. Network location can only restrict.

The rule set is compiled once per process and evaluated in memory, so a decision costs
no query. A version in the cache (Redis in production) says when another process changed
a rule; it is read at most every `POLICY_RULES_RECHECK_SECONDS`, and this process sees its
own changes at once.

Deny beats step-up beats allow. In monitor mode nothing is refused, and what would have
been is recorded; every firing is recorded with the rule and the inputs that decided it.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from accounts.live import sockets_recheck_all
from audit.models import RuleDecision
from audit.services import access_record_add
from inbox.models import Inbox, PolicyRule, RuleAction
from inbox.policy.context import AccessContext

VERSION_KEY = "policy:rules:version"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEVICE_TRUST_ORDER = {"": 0, "low": 1, "medium": 2, "high": 3}
# Conditions that describe the request itself; a task acting for a user carries none of
# them (they were judged on the request that queued it), so they are not checked there.
REQUEST_CONDITIONS = frozenset({"network", "session_age", "authenticator", "device_trust"})
SCOPE_MEMO_SECONDS = 1.0


def _networks(text: str) -> tuple[Network, ...]:
    return tuple(
        ipaddress.ip_network(line.strip(), strict=False) for line in text.splitlines() if line.strip()
    )


@dataclass
class Moment:
    """One evaluation's view of the request and the clock, computed once and shared by
    every rule: the local time per zone, the parsed address."""

    ctx: AccessContext
    now: datetime = field(default_factory=timezone.now)
    _local: dict[ZoneInfo, datetime] = field(default_factory=dict)
    _address: Any = None
    # Answers per condition and its parameters: rules that share business hours or an
    # office network are judged once per evaluation, not once each.
    answers: dict[Hashable, Any] = field(default_factory=dict)

    def local(self, zone: ZoneInfo) -> datetime:
        if zone not in self._local:
            self._local[zone] = self.now.astimezone(zone)
        return self._local[zone]

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        if self._address is None and self.ctx.ip_address:
            self._address = ipaddress.ip_address(self.ctx.ip_address)
        return self._address


@dataclass(frozen=True)
class Window:
    start: clock_time
    end: clock_time
    zone: ZoneInfo
    weekdays: frozenset[int]

    def contains(self, local: datetime) -> bool:
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        now = local.time()
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end  # across midnight


def _time_failed(rule: CompiledRule, moment: Moment) -> Any:
    assert rule.window is not None  # noqa: S101  # only checked where set
    local = moment.local(rule.window.zone)
    return None if rule.window.contains(local) else local.strftime("%a %H:%M %Z")


def _network_failed(rule: CompiledRule, moment: Moment) -> Any:
    address = moment.address
    if address is None:
        return "absent"
    outside = rule.allowed_networks and not any(address in net for net in rule.allowed_networks)
    blocked = any(address in net for net in rule.blocked_networks)
    return str(address) if outside or blocked else None


def _session_age_failed(rule: CompiledRule, moment: Moment) -> Any:
    assert rule.max_session_age is not None  # noqa: S101  # only checked where set
    started = moment.ctx.session_started_at
    if started is None:
        return "absent"
    age = moment.now.timestamp() - float(started)
    return f"{int(age // 60)} min" if age > rule.max_session_age.total_seconds() else None


def _authenticator_failed(rule: CompiledRule, moment: Moment) -> Any:
    ctx = moment.ctx
    return None if _authenticator_meets(ctx.authenticator, rule.authenticator) else ctx.authenticator_input


def _device_trust_failed(rule: CompiledRule, moment: Moment) -> Any:
    trust = moment.ctx.device_trust
    if trust is not None and DEVICE_TRUST_ORDER.get(trust, 0) >= DEVICE_TRUST_ORDER[rule.min_device_trust]:
        return None
    return trust or "absent"


def _risk_failed(rule: CompiledRule, moment: Moment) -> Any:
    assert rule.max_risk_score is not None  # noqa: S101  # only checked where set
    risk = moment.ctx.risk_score
    if risk is None:
        return "absent"
    return risk if risk > rule.max_risk_score else None


def _authenticator_meets(used: str | None, required: str) -> bool:
    strength = {"backup": 1, "other": 1, "totp": 2, "passkey": 3, "passkey_bound": 4}
    return strength.get(used or "", 0) >= strength[required]


@dataclass(frozen=True)
class Condition:
    """One kind of condition: whether a rule sets it, and what in a request fails it."""

    name: str
    is_set: Callable[[PolicyRule], bool]
    failed: Callable[[CompiledRule, Moment], Any]
    # The rule's settings the answer depends on.
    parameters: Callable[[PolicyRule], Hashable]


CONDITIONS = (
    Condition(
        "time",
        lambda rule: rule.window_start is not None,
        _time_failed,
        lambda rule: (rule.window_start, rule.window_end, rule.time_zone, tuple(sorted(rule.weekdays))),
    ),
    Condition(
        "network",
        lambda rule: bool(rule.allowed_networks or rule.blocked_networks),
        _network_failed,
        lambda rule: (rule.allowed_networks.strip(), rule.blocked_networks.strip()),
    ),
    Condition(
        "session_age",
        lambda rule: bool(rule.max_session_age_minutes),
        _session_age_failed,
        lambda rule: rule.max_session_age_minutes,
    ),
    Condition(
        "authenticator",
        lambda rule: bool(rule.required_authenticator),
        _authenticator_failed,
        lambda rule: rule.required_authenticator,
    ),
    Condition(
        "device_trust",
        lambda rule: bool(rule.min_device_trust),
        _device_trust_failed,
        lambda rule: rule.min_device_trust,
    ),
    Condition(
        "risk_score",
        lambda rule: rule.max_risk_score is not None,
        _risk_failed,
        lambda rule: rule.max_risk_score,
    ),
)


@dataclass(frozen=True)
class CompiledRule:
    id: int
    name: str
    mode: str
    effect: str
    group_ids: frozenset[int]
    inbox_ids: frozenset[int] | None  # None: every inbox
    actions: frozenset[str]
    window: Window | None
    allowed_networks: tuple[Network, ...]
    blocked_networks: tuple[Network, ...]
    max_session_age: timedelta | None
    authenticator: str
    min_device_trust: str
    max_risk_score: int | None
    # The conditions this rule sets, decided once when it is compiled.
    checks: tuple[Condition, ...]
    # Per check, what its answer depends on besides the request: equal keys, equal answers.
    check_keys: tuple[Hashable, ...]

    @classmethod
    def compile(cls, rule: PolicyRule, inbox_modules: dict[int, str]) -> CompiledRule:
        inbox_ids: set[int] = {inbox.pk for inbox in rule.inboxes.all()}
        modules = set(rule.modules or ())
        inbox_ids |= {pk for pk, module in inbox_modules.items() if module in modules}
        checks = tuple(condition for condition in CONDITIONS if condition.is_set(rule))
        window = None
        if rule.window_start is not None and rule.window_end is not None:
            zone = ZoneInfo(rule.time_zone)
            window = Window(rule.window_start, rule.window_end, zone, frozenset(rule.weekdays))
        return cls(
            id=rule.pk,
            name=rule.name,
            mode=rule.mode,
            effect=rule.effect,
            group_ids=frozenset(group.pk for group in rule.groups.all()),
            inbox_ids=frozenset(inbox_ids) if inbox_ids or modules else None,
            actions=frozenset(rule.actions or ()),
            window=window,
            allowed_networks=_networks(rule.allowed_networks),
            blocked_networks=_networks(rule.blocked_networks),
            max_session_age=timedelta(minutes=rule.max_session_age_minutes)
            if rule.max_session_age_minutes
            else None,
            authenticator=rule.required_authenticator,
            min_device_trust=rule.min_device_trust,
            max_risk_score=rule.max_risk_score,
            checks=checks,
            check_keys=tuple((condition.name, condition.parameters(rule)) for condition in checks),
        )

    def covers_inbox(self, inbox_id: int | None) -> bool:
        return self.inbox_ids is None or inbox_id in self.inbox_ids

    def covers_person(self, ctx: AccessContext) -> bool:
        # Asked last, once the rule would fire: the caller's groups cost a query.
        return not self.group_ids or bool(self.group_ids & ctx.group_ids)

    def unmet(self, moment: Moment) -> dict[str, Any]:
        """The conditions the request does not meet, with the input that decided each. A
        rule without conditions always applies its effect."""
        if not self.checks:
            return {"always": True}
        task = moment.ctx.surface == "task"
        unmet: dict[str, Any] = {}
        answers = moment.answers
        for condition, key in zip(self.checks, self.check_keys, strict=True):
            if task and condition.name in REQUEST_CONDITIONS:
                continue
            if key in answers:
                failed = answers[key]
            else:
                failed = answers[key] = condition.failed(self, moment)
            if failed is not None:
                unmet[condition.name] = failed
        return unmet


@dataclass(frozen=True)
class RuleGroup:
    """Rules that set the same conditions with the same parameters (the same business
    hours, the same office network): a request meets all of them or none, so they are
    judged once and, when met — the common case — passed over together."""

    rules: tuple[CompiledRule, ...]
    denies: bool  # whether any of them denies (lists and live scopes ask only those)

    def unmet(self, moment: Moment) -> dict[str, Any]:
        return self.rules[0].unmet(moment)


def _grouped(rules: Iterable[CompiledRule]) -> tuple[RuleGroup, ...]:
    """Groups in the order of their first rule, rules in priority order within each."""
    members: dict[tuple[Hashable, ...], list[CompiledRule]] = {}
    for rule in rules:
        members.setdefault(rule.check_keys, []).append(rule)
    return tuple(
        RuleGroup(tuple(group), any(rule.effect == PolicyRule.Effect.DENY for rule in group))
        for group in members.values()
    )


@dataclass(frozen=True)
class RuleSet:
    version: object
    rules: tuple[CompiledRule, ...]
    inbox_modules: dict[int, str] = field(default_factory=dict)
    # The rules that can apply to each action (rules naming no action are in every list),
    # grouped by their conditions, so a decision judges each distinct condition once.
    by_action: dict[str, tuple[RuleGroup, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, version: object, rules: tuple[CompiledRule, ...], inbox_modules: dict[int, str]
    ) -> RuleSet:
        actions = {action for rule in rules for action in rule.actions} | set(RuleAction.values)
        by_action = {
            action: _grouped(rule for rule in rules if not rule.actions or action in rule.actions)
            for action in actions
        }
        return cls(version, rules, inbox_modules, by_action)

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def for_action(self, action: str) -> tuple[RuleGroup, ...]:
        found = self.by_action.get(action)
        if found is None:
            return _grouped(rule for rule in self.rules if not rule.actions)
        return found


_EMPTY = RuleSet(version=None, rules=())
_state: dict[str, Any] = {"ruleset": None, "checked": 0.0, "changed_here": False}


def _load(version: object) -> RuleSet:
    inbox_modules = dict(Inbox.objects.values_list("pk", "module"))
    rules = (
        PolicyRule.objects.exclude(mode=PolicyRule.Mode.OFF)
        .prefetch_related("groups", "inboxes")
        .order_by("priority", "pk")
    )
    return RuleSet.build(
        version, tuple(CompiledRule.compile(rule, inbox_modules) for rule in rules), inbox_modules
    )


def ruleset() -> RuleSet:
    """The compiled rules, reloaded when any process changed one. The cache holds the
    version and how many rules are active, so that without rules nothing is read from the
    database at all."""
    cached: RuleSet | None = _state["ruleset"]
    now = time.monotonic()
    if cached is not None and now - _state["checked"] < settings.POLICY_RULES_RECHECK_SECONDS:
        return cached
    marker = cache.get(VERSION_KEY)
    if cached is None or marker is None or marker.get("version") != cached.version:
        if _state["changed_here"]:
            # Changed in this process and not yet announced (the transaction is open):
            # the database, which this connection sees, is the truth, not the marker.
            cached = _load(("unpublished", time.time_ns()))
        elif marker is not None and marker.get("active") == 0:
            cached = RuleSet(marker["version"], ())
        else:
            cached = _load(marker["version"] if marker is not None else None)
            if marker is None:
                _publish_version(active=len(cached.rules), version=cached.version)
        _state["ruleset"] = cached
    _state["checked"] = now
    return cached


def rules_changed() -> None:
    """Every process reloads its rules: this one now, others at their next version check;
    open sockets verify again at once."""
    forget()
    _state["changed_here"] = True
    # After the commit: a process reloading earlier would cache the old rules under the
    # new version and keep them.
    transaction.on_commit(_publish_new_version)
    sockets_recheck_all()


def _publish_new_version() -> None:
    _publish_version(active=PolicyRule.objects.exclude(mode=PolicyRule.Mode.OFF).count())
    forget()
    _state["changed_here"] = False


def _publish_version(*, active: int, version: object = None) -> None:
    cache.set(VERSION_KEY, {"version": version or time.time_ns(), "active": active}, timeout=None)


def forget() -> None:
    _state["ruleset"] = None
    _state["checked"] = 0.0


def reset() -> None:
    """Forget everything this process knew, unannounced changes included (a test's
    rolled-back transaction takes its rules along)."""
    forget()
    _state["changed_here"] = False


@dataclass(frozen=True)
class Verdict:
    effect: str  # "allow", "step_up" or "deny"
    rule_ids: tuple[int, ...] = ()
    # For a step-up: the strongest second factor its rules ask for that the session lacks
    # ("" when any fresh one will do), so the prompt asks for the right one.
    factor: str = ""


ALLOW = Verdict("allow")
_STRENGTH = {"allow": 0, "step_up": 1, "deny": 2}


def _fired(
    ctx: AccessContext, action: str, inbox_id: int | None, groups: Iterable[RuleGroup]
) -> Iterable[tuple[CompiledRule, dict[str, Any]]]:
    moment = Moment(ctx)
    for group in groups:
        unmet: dict[str, Any] | None = None
        for rule in group.rules:
            if not rule.covers_inbox(inbox_id):
                continue
            if unmet is None:
                unmet = group.unmet(moment)
            if not unmet:
                break  # met by one, met by all
            if not rule.covers_person(ctx):
                continue
            if (
                rule.effect == PolicyRule.Effect.STEP_UP
                and ctx.step_up_fresh
                and "authenticator" not in unmet
            ):
                # The fresh second factor is what the rule asks for — unless it asks for a
                # stronger kind than the one just given (a code for a device-bound passkey).
                continue
            yield rule, unmet


def evaluate(
    ctx: AccessContext, action: str, *, inbox_id: int | None, object_type: str, object_id: int | None
) -> Verdict:
    """What the rules say about one decision; every rule that fired is recorded."""
    current = ruleset()
    if not current.active:
        return ALLOW
    effect, deciding, factor = "allow", list[int](), ""
    for rule, unmet in _fired(ctx, action, inbox_id, current.for_action(action)):
        enforced = rule.mode == PolicyRule.Mode.ENFORCE
        _record(ctx, rule, enforced, action, object_type, object_id, unmet)
        if enforced and _STRENGTH[rule.effect] >= _STRENGTH[effect]:
            if _STRENGTH[rule.effect] > _STRENGTH[effect]:
                deciding, factor = [], ""
            effect = rule.effect
            deciding.append(rule.id)
            if "authenticator" in unmet and not _authenticator_meets(factor, rule.authenticator):
                factor = rule.authenticator
    return Verdict(effect, tuple(deciding), factor) if deciding else ALLOW


def denied_inboxes(ctx: AccessContext, action: str, *, record: bool = True) -> frozenset[int] | None:
    """The inboxes enforced deny rules close to the caller for `action` now, for lists and
    live scopes (None: none). Step-up rules leave lists alone: an item is listed, and
    opening it asks for the second factor.

    The answer is kept on the context for `SCOPE_MEMO_SECONDS`: a page asks for its list
    and its counters, and a socket asks for every event it forwards — a time window that
    closes meanwhile reaches them within that second. Firings are recorded when the
    answer is computed, except for a socket's per-event check (`record=False`), which is
    delivery, not access."""
    current = ruleset()
    if not current.active:
        return None
    key = ("denied_inboxes", action)
    now = time.monotonic()
    memo = ctx._memo.get(key)
    if isinstance(memo, tuple) and memo[0] == current.version and now - memo[1] < SCOPE_MEMO_SECONDS:
        closed_memo: frozenset[int] | None = memo[2]
        return closed_memo
    closed: set[int] = set()
    moment = Moment(ctx)
    for group in current.for_action(action):
        if not group.denies:
            continue
        unmet = group.unmet(moment)
        if not unmet:
            continue
        for rule in group.rules:
            if rule.effect != PolicyRule.Effect.DENY or not rule.covers_person(ctx):
                continue
            enforced = rule.mode == PolicyRule.Mode.ENFORCE
            if record:
                _record(ctx, rule, enforced, action, "inbox.inbox", None, {**unmet, "list": True})
            if enforced:
                closed |= set(current.inbox_modules) if rule.inbox_ids is None else set(rule.inbox_ids)
    answer = frozenset(closed) if closed else None
    ctx._memo[key] = (current.version, now, answer)
    return answer


def _record(
    ctx: AccessContext,
    rule: CompiledRule,
    enforced: bool,
    action: str,
    object_type: str,
    object_id: int | None,
    unmet: dict[str, Any],
) -> None:
    if rule.effect == PolicyRule.Effect.DENY:
        outcome = RuleDecision.Outcome.DENIED if enforced else RuleDecision.Outcome.WOULD_DENY
    else:
        outcome = RuleDecision.Outcome.STEP_UP if enforced else RuleDecision.Outcome.WOULD_STEP_UP
    access_record_add(
        RuleDecision(
            rule_id=rule.id,
            outcome=outcome,
            user_id=ctx.user.pk,
            session_id=ctx.session_id,
            api_token_id=ctx.api_token.pk if ctx.api_token else None,
            ip_address=ctx.ip_address,
            object_type=object_type,
            object_id=object_id,
            action=action,
            inputs={"surface": ctx.surface, **unmet},
        ),
        # A page asks about the same thing many times (a list and its counters): once.
        once_key=("rule", rule.id, object_type, object_id, action),
    )


@receiver(post_save, sender=PolicyRule)
@receiver(post_delete, sender=PolicyRule)
def _rule_saved(sender: type[Any], **kwargs: Any) -> None:
    rules_changed()


@receiver(post_save, sender=Inbox)
@receiver(post_delete, sender=Inbox)
def _inbox_saved(sender: type[Any], **kwargs: Any) -> None:
    # Rules naming modules cover the inboxes of those modules, new ones included.
    if PolicyRule.objects.exclude(modules=[]).exists():
        rules_changed()


@receiver(m2m_changed, sender=PolicyRule.groups.through)
@receiver(m2m_changed, sender=PolicyRule.inboxes.through)
def _rule_scope_changed(sender: type[Any], action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        rules_changed()
