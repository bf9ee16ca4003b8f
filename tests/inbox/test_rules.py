"""Policy rules as data: each condition and effect, off / monitor / enforce, on every
surface (page, API, socket frame, live events, task, admin), their impact, and the
scenario of the issue — "Billing: deny outside 07:00-19:00 Europe/Berlin"."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts import roles
from accounts.models import ApiToken
from audit.models import RuleDecision, SecurityEvent
from inbox import policy
from inbox.models import Inbox, PolicyRule
from inbox.policy import AccessContext, Action, rules
from tests.inbox.conftest import Segments, ctx, grant_inbox

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


def closed_window_now() -> tuple[time, time]:
    """A one-hour window that does not contain the present moment in Berlin."""
    now = timezone.now().astimezone(BERLIN)
    start = (now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    return start, end


def open_window_now() -> tuple[time, time]:
    now = timezone.now().astimezone(BERLIN)
    return (
        (now - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        (now + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )


def rule(name: str = "rule", *, inboxes: list[Inbox] | None = None, **fields: Any) -> PolicyRule:
    created = PolicyRule.objects.create(name=name, **fields)
    if inboxes:
        created.inboxes.set(inboxes)
    return created


def billing_hours(segments: Segments, mode: str, *, window: tuple[time, time] | None = None) -> PolicyRule:
    start, end = window or closed_window_now()
    return rule(
        "Billing: deny outside hours",
        inboxes=[segments.billing],
        mode=mode,
        effect=PolicyRule.Effect.DENY,
        window_start=start,
        window_end=end,
        time_zone="Europe/Berlin",
    )


def billing_ids(agent: Any) -> set[int]:
    return set(policy.visible_conversations(ctx(agent)).values_list("pk", flat=True))


# --- Conditions ---------------------------------------------------------------------------


def compiled(**fields: Any) -> rules.CompiledRule:
    return rules.CompiledRule.compile(
        PolicyRule.objects.create(name=f"r{PolicyRule.objects.count()}", **fields), {}
    )


def test_a_time_window_in_its_time_zone_and_weekdays(make_user: Any) -> None:
    window = compiled(
        window_start=time(7), window_end=time(19), time_zone="Europe/Berlin", weekdays=[0, 1, 2, 3, 4]
    )
    context = AccessContext(user=make_user())
    monday_noon = datetime(2026, 11, 30, 11, 0, tzinfo=ZoneInfo("UTC"))  # 12:00 in Berlin
    assert window.unmet(rules.Moment(context, monday_noon)) == {}
    assert "time" in window.unmet(
        rules.Moment(context, monday_noon.replace(hour=18, minute=30))
    )  # 19:30 Berlin
    assert "time" in window.unmet(rules.Moment(context, monday_noon + timedelta(days=5)))  # Saturday
    overnight = compiled(window_start=time(22), window_end=time(6), time_zone="UTC")
    assert overnight.unmet(rules.Moment(context, monday_noon.replace(hour=23))) == {}
    assert overnight.unmet(rules.Moment(context, monday_noon.replace(hour=5))) == {}
    assert overnight.unmet(rules.Moment(context, monday_noon))["time"].startswith("Mon 11:00")


def test_networks_only_restrict(make_user: Any) -> None:
    user = make_user()
    office = compiled(allowed_networks="10.1.0.0/16\n2001:db8::/32", blocked_networks="10.1.9.0/24")
    now = timezone.now()
    assert office.unmet(rules.Moment(AccessContext(user=user, ip_address="10.1.2.3"), now)) == {}
    assert office.unmet(rules.Moment(AccessContext(user=user, ip_address="2001:db8::1"), now)) == {}
    assert office.unmet(rules.Moment(AccessContext(user=user, ip_address="10.1.9.9"), now)) == {
        "network": "10.1.9.9"
    }
    assert office.unmet(rules.Moment(AccessContext(user=user, ip_address="192.0.2.1"), now)) == {
        "network": "192.0.2.1"
    }
    assert office.unmet(rules.Moment(AccessContext(user=user), now)) == {"network": "absent"}


def test_session_age_authenticator_and_absent_signals(make_user: Any) -> None:
    user = make_user()
    now = timezone.now()
    young = AccessContext(user=user, session_started_at=now.timestamp() - 60, authenticator="totp")
    old = AccessContext(user=user, session_started_at=now.timestamp() - 7200, authenticator="backup")
    age = compiled(max_session_age_minutes=30)
    assert age.unmet(rules.Moment(young, now)) == {} and age.unmet(rules.Moment(old, now)) == {
        "session_age": "120 min"
    }
    totp = compiled(required_authenticator="totp")
    assert totp.unmet(rules.Moment(young, now)) == {} and totp.unmet(rules.Moment(old, now)) == {
        "authenticator": "backup"
    }
    # Signals no part of the product provides yet fail closed.
    assert compiled(required_authenticator="passkey").unmet(rules.Moment(young, now)) == {
        "authenticator": "totp"
    }
    assert compiled(min_device_trust="high").unmet(rules.Moment(young, now)) == {"device_trust": "absent"}
    assert compiled(max_risk_score=50).unmet(rules.Moment(young, now)) == {"risk_score": "absent"}
    assert compiled().unmet(rules.Moment(young, now)) == {"always": True}


def test_a_task_is_judged_on_time_not_on_the_request_it_does_not_have(segments: Segments) -> None:
    conversation = segments.billing_conversations[0]
    office = rule("office only", inboxes=[segments.billing], mode="enforce", allowed_networks="10.0.0.0/8")
    task = AccessContext.for_task(segments.billing_agent)
    assert policy.can(task, Action.REPLY, conversation)
    office.delete()
    billing_hours(segments, "enforce")
    assert not policy.can(task, Action.REPLY, conversation)


# --- Off, monitor, enforce ----------------------------------------------------------------


def test_off_monitor_and_enforce(segments: Segments) -> None:
    agent = segments.billing_agent
    everything = {c.pk for c in segments.billing_conversations}
    hours = billing_hours(segments, PolicyRule.Mode.OFF)
    assert billing_ids(agent) == everything
    assert not RuleDecision.objects.exists()

    hours.mode = PolicyRule.Mode.MONITOR
    hours.save()
    assert billing_ids(agent) == everything
    conversation = segments.billing_conversations[0]
    assert policy.can(ctx(agent), Action.REPLY, conversation)
    decisions = RuleDecision.objects.filter(rule_id=hours.pk)
    assert set(decisions.values_list("outcome", flat=True)) == {"would_deny"}
    assert all("time" in d.inputs for d in decisions)

    hours.mode = PolicyRule.Mode.ENFORCE
    hours.save()
    assert billing_ids(agent) == set()
    assert not policy.can(ctx(agent), Action.REPLY, conversation)
    assert RuleDecision.objects.filter(rule_id=hours.pk, outcome="denied").exists()
    # Inside its window the rule lets everything through again.
    start, end = open_window_now()
    PolicyRule.objects.filter(pk=hours.pk).update(window_start=start, window_end=end)
    rules.rules_changed()
    rules.forget()
    assert billing_ids(agent) == everything
    # Rules only narrow: the support agent never gained anything.
    assert billing_ids(segments.support_agent) == {c.pk for c in segments.support_conversations}


def test_deny_beats_step_up(segments: Segments) -> None:
    conversation = segments.billing_conversations[0]
    rule("step up", inboxes=[segments.billing], mode="enforce", effect="step_up", actions=["reply"])
    with pytest.raises(policy.StepUpRequired):
        policy.can(ctx(segments.billing_agent), Action.REPLY, conversation)
    rule("deny", inboxes=[segments.billing], mode="enforce", effect="deny", actions=["reply"])
    assert not policy.can(ctx(segments.billing_agent), Action.REPLY, conversation)


def test_rules_sharing_their_conditions_are_judged_together_and_each_recorded(
    segments: Segments,
) -> None:
    """The engine judges equal conditions once per group of rules; every rule of a group
    that fires is still applied and recorded, and one that does not cover the caller or
    the inbox is not."""
    conversation = segments.billing_conversations[0]
    start, end = closed_window_now()

    def hours(name: str, mode: str, effect: str, inbox: Inbox) -> PolicyRule:
        return rule(
            name,
            inboxes=[inbox],
            mode=mode,
            effect=effect,
            window_start=start,
            window_end=end,
            time_zone="Europe/Berlin",
        )

    watching = hours("watching", "monitor", "deny", segments.billing)
    stepping = hours("stepping", "enforce", "step_up", segments.billing)
    hours("another role's", "enforce", "deny", segments.billing).groups.set(
        [Group.objects.get(name=roles.SUPERVISOR)]
    )
    hours("another inbox's", "enforce", "deny", segments.support)
    (group,) = rules.ruleset().for_action("reply")
    assert len(group.rules) == 4 and group.denies

    with pytest.raises(policy.StepUpRequired):
        policy.can(ctx(segments.billing_agent), Action.REPLY, conversation)
    decided = RuleDecision.objects.filter(object_type="inbox.conversation")
    fired = set(decided.values_list("rule_id", "outcome"))
    assert fired == {(watching.pk, "would_deny"), (stepping.pk, "step_up")}


def test_roles_and_teams_narrow_who_a_rule_applies_to(segments: Segments, make_user: Any) -> None:
    conversation = segments.billing_conversations[0]
    deny = rule("billing agents only", inboxes=[segments.billing], mode="enforce", actions=["reply"])
    deny.groups.set([Group.objects.get(name=roles.BILLING_AGENT)])
    other = make_user(roles.AGENT)
    grant_inbox(segments.billing, other)
    assert policy.can(ctx(other), Action.REPLY, conversation)
    billing_role_holder = make_user(roles.BILLING_AGENT)
    grant_inbox(segments.billing, billing_role_holder)
    assert not policy.can(ctx(billing_role_holder), Action.REPLY, conversation)


# --- Every surface ------------------------------------------------------------------------


def test_pages_and_api_follow_an_enforced_rule(
    segments: Segments, verified_client: Any, make_user: Any
) -> None:
    conversation = segments.billing_conversations[0]
    page = verified_client(segments.billing_agent)
    assert page.get(f"/conversations/{conversation.pk}/").status_code == 200
    service = make_user(username="billing-bot", is_service_account=True, enrolled=False)
    grant_inbox(segments.billing, service)
    token_row = ApiToken(
        name="crm", user=service, can_write=True, expires_at=timezone.now() + timedelta(days=1)
    )
    from accounts import tokens

    plaintext = tokens.credential_assign(token_row)
    token_row.save()
    token_row.inboxes.set([segments.billing])
    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert api.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 200

    billing_hours(segments, "enforce")
    assert page.get(f"/conversations/{conversation.pk}/").status_code == 404
    assert conversation.subject.encode() not in page.get("/").content
    assert api.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 404
    assert api.get("/api/v1/conversations/").json()["results"] == []


def test_step_up_on_a_page_asks_inline_and_continues_the_post(
    segments: Segments, verified_client: Any, totp: Any
) -> None:
    conversation = segments.billing_conversations[0]
    rule(
        "fresh factor to reply",
        inboxes=[segments.billing],
        mode="enforce",
        effect="step_up",
        actions=["reply"],
    )
    client = verified_client(segments.billing_agent)
    session = client.session
    session["portcullis_otp_verified_at"] = timezone.now().timestamp() - 3600
    session.save()
    prompt = client.post(f"/conversations/{conversation.pk}/reply/", {"reply": "Here is your invoice."})
    assert prompt.status_code == 403
    assert b'name="reply"' in prompt.content and b"Here is your invoice." in prompt.content
    assert not conversation.messages.filter(text="Here is your invoice.").exists()
    code = totp(segments.billing_agent).now()
    response = client.post(
        "/accounts/step-up/",
        {
            "step_up_next": f"/conversations/{conversation.pk}/reply/",
            "step_up_method": "POST",
            "reply": "Here is your invoice.",
            "token": code,
        },
    )
    assert response.status_code == 307 and response["Location"] == f"/conversations/{conversation.pk}/reply/"
    # The browser sends the same body again (307 keeps method and body).
    again = client.post(response["Location"], {"reply": "Here is your invoice.", "token": code})
    assert again.status_code == 302
    assert conversation.messages.filter(text="Here is your invoice.").exists()
    assert RuleDecision.objects.filter(outcome="step_up").exists()


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/reply/", "/\\evil.example/"])
def test_the_step_up_continues_only_to_a_local_path(
    segments: Segments, verified_client: Any, totp: Any, target: str
) -> None:
    """A crafted step-up form cannot send the freshly verified session elsewhere."""
    client = verified_client(segments.billing_agent)
    code = totp(segments.billing_agent).now()
    response = client.post(
        "/accounts/step-up/", {"step_up_next": target, "step_up_method": "POST", "token": code}
    )
    assert response.status_code in (302, 303, 307) and response["Location"] == "/"


def test_step_up_on_the_api_is_a_machine_readable_403(segments: Segments, verified_client: Any) -> None:
    conversation = segments.billing_conversations[0]
    step = rule(
        "fresh factor to reply",
        inboxes=[segments.billing],
        mode="enforce",
        effect="step_up",
        actions=["reply"],
    )
    client = verified_client(segments.billing_agent)
    session = client.session
    session["portcullis_otp_verified_at"] = timezone.now().timestamp() - 3600
    session.save()
    response = client.post(
        f"/api/v1/conversations/{conversation.pk}/messages/", {"text": "hi"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "step_up_required" and response.json()["rules"] == [step.pk]


def test_an_admin_action_follows_a_manage_rule(
    segments: Segments, make_user: Any, verified_client: Any
) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    grant_inbox(segments.billing, supervisor, perms=("view_inbox", "manage_inbox"))
    client = verified_client(supervisor)
    assert client.get(f"/admin/inbox/inbox/{segments.billing.pk}/change/").status_code == 200
    rule("no billing supervision tonight", inboxes=[segments.billing], mode="enforce", actions=["manage"])
    assert client.get(f"/admin/inbox/inbox/{segments.billing.pk}/change/").status_code == 302
    assert not client.get("/admin/inbox/inbox/").context["cl"].result_list


def test_a_live_scope_asks_the_rules_on_every_event(segments: Segments) -> None:
    live = policy.live_scope(ctx(segments.billing_agent))
    assert live.allows(segments.billing.pk, None)
    billing_hours(segments, "enforce")
    assert not live.allows(segments.billing.pk, None)  # the same scope object, no re-check


# --- Changes reach other processes --------------------------------------------------------


def test_another_processs_change_is_seen_after_the_recheck_interval(
    segments: Segments, settings: Any
) -> None:
    settings.POLICY_RULES_RECHECK_SECONDS = 0
    agent = segments.billing_agent
    assert billing_ids(agent)
    # Written behind this process's back (no signal), then announced as another process would.
    PolicyRule.objects.bulk_create(
        [PolicyRule(name="elsewhere", mode="enforce", effect="deny", modules=["billing"], actions=["view"])]
    )
    assert billing_ids(agent)  # still the old rule set: nothing said it changed
    cache.set(rules.VERSION_KEY, {"version": "from another process", "active": 1}, timeout=None)
    assert billing_ids(agent) == set()


# --- The admin ----------------------------------------------------------------------------


def rule_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Billing: deny outside 07:00-19:00 Europe/Berlin",
        "description": "",
        "priority": 100,
        "mode": "monitor",
        "effect": "deny",
        "time_zone": "Europe/Berlin",
        "window_start": "07:00",
        "window_end": "19:00",
        "allowed_networks": "",
        "blocked_networks": "",
        "required_authenticator": "",
        "min_device_trust": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def administrator(make_user: Any, verified_client: Any) -> Client:
    return verified_client(make_user(roles.ADMINISTRATOR, is_staff=True))


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"window_end": ""}, "needs both a start and an end"),
        ({"window_end": "07:00"}, "The window is empty"),
        ({"time_zone": "Mars/Olympus"}, "is not a time zone"),
        ({"allowed_networks": "10.0.0.0/8\nnot-a-net"}, "is not a network in CIDR"),
        ({"window_start": "", "window_end": "", "weekdays": [5]}, "Weekdays belong to a time window"),
    ],
)
def test_a_rule_is_validated_with_clear_errors(
    administrator: Client, overrides: dict[str, Any], error: str
) -> None:
    response = administrator.post("/admin/inbox/policyrule/add/", rule_form(**overrides))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not PolicyRule.objects.exists()


def test_a_rule_that_would_lock_out_every_administrator_is_refused(administrator: Client) -> None:
    locking = rule_form(mode="enforce", confirm_enforce="on", window_start="", window_end="")
    response = administrator.post("/admin/inbox/policyrule/add/", locking)
    assert b"would deny every administrator" in response.content
    assert not PolicyRule.objects.exists()
    # Narrowed to the support role, it leaves administrators a way in.
    spared = {**locking, "groups": [Group.objects.get(name=roles.AGENT).pk]}
    assert administrator.post("/admin/inbox/policyrule/add/", spared).status_code == 302


def test_a_supervisors_rules_stay_inside_their_delegation(
    segments: Segments, make_user: Any, verified_client: Any
) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    grant_inbox(segments.support, supervisor, perms=("view_inbox", "manage_inbox"))
    client = verified_client(supervisor)
    response = client.post("/admin/inbox/policyrule/add/", rule_form(inboxes=[segments.billing.pk]))
    assert response.status_code == 200 and not PolicyRule.objects.exists()
    response = client.post("/admin/inbox/policyrule/add/", rule_form())  # no inbox: everyone's
    assert response.status_code == 200 and not PolicyRule.objects.exists()
    assert (
        client.post("/admin/inbox/policyrule/add/", rule_form(inboxes=[segments.support.pk])).status_code
        == 302
    )
    billing_rule = rule("admin's", inboxes=[segments.billing])
    listed = client.get("/admin/inbox/policyrule/").context["cl"].result_list
    assert billing_rule not in listed and len(listed) == 1


def test_the_impact_view_counts_against_a_known_fixture(segments: Segments, administrator: Client) -> None:
    hours = billing_hours(segments, "monitor")
    now = timezone.now()
    agent, other = segments.billing_agent, segments.support_agent
    rows = [
        (agent, 1, timedelta(hours=1)),
        (agent, 1, timedelta(hours=2)),
        (agent, 2, timedelta(days=3)),
        (other, 3, timedelta(days=3)),
        (other, 3, timedelta(days=20)),
        (other, 4, timedelta(days=40)),  # outside every window
    ]
    for user, session_id, age in rows:
        # Written as if at that time: the trail itself is append-only, even for tests.
        with mock.patch("django.utils.timezone.now", return_value=now - age):
            RuleDecision.objects.create(
                rule_id=hours.pk,
                outcome="would_deny",
                user_id=user.pk,
                session_id=session_id,
                object_type="inbox.conversation",
                object_id=1,
                action="view",
            )
    from audit.selectors import rule_impact

    day, week, month = (rule_impact(hours.pk, timedelta(days=d)) for d in (1, 7, 30))
    assert (day.decisions, day.users, day.sessions) == (2, 1, 1)
    assert (week.decisions, week.users, week.sessions) == (4, 2, 3)
    assert (month.decisions, month.users, month.sessions) == (5, 2, 3)
    assert month.top_users[0][:3] == (agent.pk, agent.username, 3)
    page = administrator.get(f"/admin/inbox/policyrule/{hours.pk}/change/").content.decode()
    assert f"rule_id={hours.pk}&amp;user_id={agent.pk}" in page


def test_the_issues_scenario_monitor_then_impact_then_enforce(
    segments: Segments, make_user: Any, verified_client: Any
) -> None:
    """A supervisor creates "Billing: deny outside 07:00-19:00 Europe/Berlin" in monitor
    mode, sees who it would have blocked, switches it to enforce, and it applies at once."""
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    grant_inbox(segments.billing, supervisor, perms=("view_inbox", "manage_inbox"))
    admin_client = verified_client(supervisor)
    start, end = closed_window_now()  # "07:00-19:00" made to exclude this moment
    form = rule_form(
        inboxes=[segments.billing.pk], window_start=start.strftime("%H:%M"), window_end=end.strftime("%H:%M")
    )
    assert admin_client.post("/admin/inbox/policyrule/add/", form).status_code == 302
    created = PolicyRule.objects.get()
    agent_page = verified_client(segments.billing_agent)
    conversation = segments.billing_conversations[0]
    assert agent_page.get(f"/conversations/{conversation.pk}/").status_code == 200  # monitor: let through
    page = admin_client.get(f"/admin/inbox/policyrule/{created.pk}/change/").content.decode()
    assert segments.billing_agent.username in page  # who it would have blocked
    refused = admin_client.post(f"/admin/inbox/policyrule/{created.pk}/change/", {**form, "mode": "enforce"})
    assert refused.status_code == 200 and "would have applied to" in refused.content.decode()
    assert (
        admin_client.post(
            f"/admin/inbox/policyrule/{created.pk}/change/",
            {**form, "mode": "enforce", "confirm_enforce": "on"},
        ).status_code
        == 302
    )
    assert agent_page.get(f"/conversations/{conversation.pk}/").status_code == 404
    change = SecurityEvent.objects.filter(kind="policy_rule_changed").order_by("-pk").first()
    assert (
        change is not None
        and change.detail["mode_from"] == "monitor"
        and change.detail["mode_to"] == "enforce"
    )


def test_a_supervisor_cannot_change_or_delete_a_rule_someone_else_wrote(
    segments: Segments, make_user: Any, verified_client: Any
) -> None:
    """Switching off an administrator's restriction on their own inbox would widen the
    supervisor's own access: they read it, and change only the rules they wrote."""
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    grant_inbox(segments.support, supervisor, perms=("view_inbox", "manage_inbox"))
    client = verified_client(supervisor)
    theirs = rule(
        "Support: reply from the office",
        inboxes=[segments.support],
        mode=PolicyRule.Mode.ENFORCE,
        actions=["reply"],
        allowed_networks="10.0.0.0/8",
        created_by=make_user(roles.ADMINISTRATOR, is_staff=True),
    )
    assert (
        client.post("/admin/inbox/policyrule/add/", rule_form(inboxes=[segments.support.pk])).status_code
        == 302
    )
    own = PolicyRule.objects.get(created_by=supervisor)

    listed = client.get("/admin/inbox/policyrule/").context["cl"].result_list
    assert set(listed) == {theirs, own}
    assert client.get(f"/admin/inbox/policyrule/{theirs.pk}/change/").status_code == 200  # read-only view
    edited = rule_form(inboxes=[segments.support.pk], mode="off", name=theirs.name)
    assert client.post(f"/admin/inbox/policyrule/{theirs.pk}/change/", edited).status_code == 403
    assert client.post(f"/admin/inbox/policyrule/{theirs.pk}/delete/", {"post": "yes"}).status_code == 403
    theirs.refresh_from_db()
    assert theirs.mode == PolicyRule.Mode.ENFORCE

    assert (
        client.post(f"/admin/inbox/policyrule/{own.pk}/change/", {**edited, "name": own.name}).status_code
        == 302
    )
    own.refresh_from_db()
    assert own.mode == PolicyRule.Mode.OFF
