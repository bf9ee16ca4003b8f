"""Supervisors inside zero trust: one stolen supervisor session reaches no segment beyond
its delegation and cannot create, take over or widen any account without a second person.

Each test is an attack tried through the admin the way a person (or a script holding the
session) would, and the outcome is read back from the database, not from the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from guardian.shortcuts import assign_perm

from accounts import roles
from accounts.models import ApprovalRule, ChangeKind, ChangeRequest, EnrollmentCode, User, UserSession
from audit.models import SecurityEvent
from channels_app.models import LiveChatChannel
from inbox.models import (
    ChannelKind,
    Conversation,
    Inbox,
    InboxUserObjectPermission,
    Module,
    Team,
)
from tests.conftest import PASSWORD
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = pytest.mark.django_db

SUPERVISE = ("view_inbox", "reply_inbox", "manage_inbox")


@dataclass
class Org:
    support: Inbox
    billing: Inbox
    support_team: Team
    billing_team: Team
    sam: User  # supervisor of Support: the stolen session
    sue: User  # a second supervisor of Support: the other pair of eyes
    bill: User  # supervisor of Billing
    agent: User  # support agent
    billing_agent: User
    administrator: User
    billing_conversation: Conversation


def supervisor_of(make_user: Any, username: str, inbox: Inbox, team: Team) -> User:
    user = make_user(roles.SUPERVISOR, username=username, is_staff=True)
    grant_inbox(inbox, user, perms=SUPERVISE)
    assign_perm("manage_team", user, team)
    return user


@pytest.fixture
def org(make_user: Any) -> Org:
    support = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    billing = Inbox.objects.create(name="Billing", channel_kind=ChannelKind.EMAIL, module=Module.BILLING)
    support_team = Team.objects.create(name="Support team")
    billing_team = Team.objects.create(name="Billing team")
    grant_inbox(support, support_team)
    grant_inbox(billing, billing_team)
    agent = make_user(roles.AGENT, username="alice")
    agent.groups.add(support_team)
    billing_agent = make_user(roles.AGENT, roles.BILLING_AGENT, username="carol")
    billing_agent.groups.add(billing_team)
    return Org(
        support=support,
        billing=billing,
        support_team=support_team,
        billing_team=billing_team,
        sam=supervisor_of(make_user, "sam", support, support_team),
        sue=supervisor_of(make_user, "sue", support, support_team),
        bill=supervisor_of(make_user, "bill", billing, billing_team),
        agent=agent,
        billing_agent=billing_agent,
        administrator=make_user(roles.ADMINISTRATOR, username="ada", is_staff=True),
        billing_conversation=make_conversation(billing, text="invoice"),
    )


def refusals(user: User) -> int:
    return SecurityEvent.objects.filter(kind="privilege_denied", user=user).count()


def inline_grant(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in ("user_grants", "group_grants"):
        data[f"{name}-TOTAL_FORMS"] = 1 if name == prefix else 0
        data[f"{name}-INITIAL_FORMS"] = 0
    data.update({f"{prefix}-0-{key}": value for key, value in row.items()})
    return data


def inbox_form(inbox: Inbox, prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": inbox.name,
        "channel_kind": inbox.channel_kind,
        "module": inbox.module,
        **inline_grant(prefix, row),
    }


def expiry_fields(delta: timedelta | None) -> dict[str, str]:
    if delta is None:
        return {"expires_at_0": "", "expires_at_1": ""}
    when = timezone.localtime(timezone.now() + delta)
    return {"expires_at_0": when.strftime("%Y-%m-%d"), "expires_at_1": when.strftime("%H:%M:%S")}


def perm(codename: str) -> int:
    return Permission.objects.get(content_type__app_label="inbox", codename=codename).pk


def request_change(client: Client, **fields: Any) -> Any:
    return client.post("/admin/accounts/changerequest/add/", fields, follow=True)


def approve(client: Client, change: ChangeRequest) -> Any:
    return client.post(f"/admin/accounts/changerequest/{change.pk}/change/", {"_approve": "1"}, follow=True)


def page_messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- No self-widening ---------------------------------------------------------------------


def test_a_supervisor_cannot_grant_themselves_another_segment(org: Org, verified_client: Any) -> None:
    client = verified_client(org.sam)
    assert verified_client(org.sam).get(f"/conversations/{org.billing_conversation.pk}/").status_code == 404
    # Billing is not delegated to sam: its page, and so its grants, do not exist for him.
    response = client.post(
        f"/admin/inbox/inbox/{org.billing.pk}/change/",
        inbox_form(
            org.billing,
            "user_grants",
            {"user": org.sam.pk, "permission": perm("view_inbox"), "reason": "mine", **expiry_fields(None)},
        ),
    )
    assert response.status_code == 302 and "/admin/" in response["Location"]
    assert not InboxUserObjectPermission.objects.filter(user=org.sam, content_object=org.billing).exists()
    assert client.get(f"/conversations/{org.billing_conversation.pk}/").status_code == 404


def test_a_supervisor_cannot_grant_themselves_or_their_team_in_their_own_segment(
    org: Org, verified_client: Any
) -> None:
    client = verified_client(org.sam)
    response = client.post(
        f"/admin/inbox/inbox/{org.support.pk}/change/",
        inbox_form(
            org.support,
            "user_grants",
            {
                "user": org.sam.pk,
                "permission": perm("export_inbox"),
                "reason": "me",
                **expiry_fields(timedelta(hours=1)),
            },
        ),
    )
    # The picker does not even offer oneself; a forged post is a form error, not a grant.
    assert response.status_code == 200
    assert not InboxUserObjectPermission.objects.filter(
        user=org.sam, permission_id=perm("export_inbox")
    ).exists()

    org.sam.groups.add(org.support_team)
    response = client.post(
        f"/admin/inbox/inbox/{org.support.pk}/change/",
        inbox_form(
            org.support,
            "group_grants",
            {
                "group": org.support_team.pk,
                "permission": perm("export_inbox"),
                "reason": "for us",
                **expiry_fields(timedelta(hours=1)),
            },
        ),
    )
    assert response.status_code == 200
    assert not org.support_team.inboxgroupobjectpermission_set.filter(
        permission_id=perm("export_inbox")
    ).exists()


def test_a_grant_to_the_supervisors_own_team_is_shown_and_stays_fixed(org: Org, verified_client: Any) -> None:
    """The picker for new grants leaves out one's own team; an existing grant to it still
    names it (it showed a blank row), and its holder and action cannot be changed there."""
    org.sam.groups.add(org.support_team)
    page = verified_client(org.sam).get(f"/admin/inbox/inbox/{org.support.pk}/change/")
    formset = next(
        inline.formset
        for inline in page.context["inline_admin_formsets"]
        if inline.formset.prefix == "group_grants"
    )
    team = org.support_team.pk
    own = [form for form in formset.forms if form.instance.pk and form.instance.group_id == team]
    assert own
    for form in own:
        assert form.fields["group"].disabled and form.fields["permission"].disabled
        assert f'<option value="{org.support_team.pk}" selected>Support team</option>' in str(form["group"])
    # A new row still offers only teams the supervisor is not in.
    assert org.support_team not in formset.empty_form.fields["group"].queryset


def test_the_service_refuses_self_grants_with_a_security_event(org: Org) -> None:
    from accounts import supervision
    from inbox.policy import AccessContext

    before = refusals(org.sam)
    with pytest.raises(supervision.SupervisionRefused, match="own privileges"):
        supervision.change_request(
            ctx=AccessContext(user=org.sam),
            request=None,
            kind=ChangeKind.GRANT,
            summary="self",
            reason="because",
            subject=org.sam,
            payload={
                "object": "inbox",
                "object_id": org.support.pk,
                "holder": "user",
                "holder_id": org.sam.pk,
                "permission": "export_inbox",
                "expires_at": None,
            },
        )
    assert refusals(org.sam) == before + 1
    assert not ChangeRequest.objects.exists()


def test_a_supervisor_cannot_join_a_team(org: Org, verified_client: Any) -> None:
    client = verified_client(org.sam)
    # Their own account's teams and roles are read-only to them.
    client.post(
        f"/admin/accounts/user/{org.sam.pk}/change/",
        {
            "username": "sam",
            "is_active": "on",
            "groups": [org.billing_team.pk, org.support_team.pk],
            "change_reason": "want in",
        },
    )
    assert not org.sam.groups.filter(pk__in=[org.billing_team.pk, org.support_team.pk]).exists()
    # The Billing team is not theirs: its page does not exist for them.
    assert client.get(f"/admin/inbox/team/{org.billing_team.pk}/change/").status_code == 302
    # Their own team does not offer them as a member.
    response = client.post(
        f"/admin/inbox/team/{org.support_team.pk}/change/",
        {
            "name": org.support_team.name,
            "members": [org.agent.pk, org.sam.pk],
            "change_reason": "me too",
            "user_grants-TOTAL_FORMS": 0,
            "user_grants-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert not org.sam.groups.filter(pk=org.support_team.pk).exists()
    # And a request for it is refused too.
    response = request_change(
        client, kind="add_to_group", subjects=[org.sam.pk], group=org.support_team.pk, reason="me"
    )
    assert not ChangeRequest.objects.exists()


# --- Delegated scope ----------------------------------------------------------------------


def test_lists_show_only_the_delegation(org: Org, verified_client: Any) -> None:
    LiveChatChannel.objects.create(
        inbox=Inbox.objects.create(
            name="Billing chat", channel_kind=ChannelKind.LIVECHAT, module=Module.BILLING
        ),
        allowed_origins="https://billing.example.com",
    )
    client = verified_client(org.sam)
    users = {u.username for u in client.get("/admin/accounts/user/").context["cl"].result_list}
    assert users == {"sam", "sue", "alice"}
    teams = {t.name for t in client.get("/admin/inbox/team/").context["cl"].result_list}
    assert teams == {"Support team"}
    inboxes = {i.name for i in client.get("/admin/inbox/inbox/").context["cl"].result_list}
    assert inboxes == {"Support"}
    grants = client.get("/admin/inbox/inboxgroupobjectpermission/").context["cl"].result_list
    assert {g.content_object_id for g in grants} == {org.support.pk}
    assert not client.get("/admin/channels_app/livechatchannel/").context["cl"].result_list
    sessions = client.get("/admin/accounts/usersession/").context["cl"].result_list
    assert {s.user_id for s in sessions} <= {org.sam.pk, org.sue.pk, org.agent.pk}
    # Another segment's account is "not found", like another segment's conversation.
    assert client.get(f"/admin/accounts/user/{org.billing_agent.pk}/change/").status_code == 302
    assert client.get(f"/admin/accounts/user/{org.bill.pk}/change/").status_code == 302


def test_an_account_reaching_outside_the_delegation_is_out_of_scope(org: Org, verified_client: Any) -> None:
    # alice is in Support, but a direct Billing grant puts her account beyond sam's reach:
    # taking it over would open Billing.
    grant_inbox(org.billing, org.agent, perms=("view_inbox",))
    client = verified_client(org.sam)
    assert client.get(f"/admin/accounts/user/{org.agent.pk}/change/").status_code == 302


def test_guardians_object_permission_pages_are_gone(org: Org, verified_client: Any) -> None:
    client = verified_client(org.sam)
    for url in (
        f"/admin/inbox/inbox/{org.support.pk}/permissions/",
        f"/admin/inbox/inbox/{org.billing.pk}/permissions/",
    ):
        response = client.get(url)
        assert response.status_code in (302, 404)


def test_nobody_reads_another_persons_authenticator_key(org: Org, verified_client: Any) -> None:
    device = TOTPDevice.objects.get(user=org.agent)
    for viewer in (org.sam, org.administrator):
        client = verified_client(viewer)
        assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/").status_code in (302, 403, 404)
        assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/config/").status_code in (302, 403, 404)
        page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/")
        assert device.key.encode() not in page.content


# --- Four eyes ----------------------------------------------------------------------------


def test_peer_takeover_needs_a_second_supervisor_and_an_enrollment_code(
    org: Org, verified_client: Any, make_user: Any
) -> None:
    sam = verified_client(org.sam)
    # The password page of someone else's account is a request for a reset, not a form.
    assert (
        "/admin/accounts/changerequest/add/"
        in sam.get(f"/admin/accounts/user/{org.sue.pk}/password/")["Location"]
    )
    # Billing's supervisor is not sam's to touch at all.
    request_change(sam, kind="reset_factor", subjects=[org.bill.pk], reason="takeover")
    assert not ChangeRequest.objects.exists()
    # His peer is, but only with a second person.
    response = request_change(sam, kind="reset_factor", subjects=[org.sue.pk], reason="lost phone")
    change = ChangeRequest.objects.get()
    assert change.state == ChangeRequest.State.PENDING, page_messages(response)
    assert TOTPDevice.objects.filter(user=org.sue, confirmed=True).exists()
    # Neither the requester nor the subject approves.
    approve(sam, change)
    approve(verified_client(org.sue), change)
    change.refresh_from_db()
    assert change.state == ChangeRequest.State.PENDING
    assert TOTPDevice.objects.filter(user=org.sue, confirmed=True).exists()
    # A third supervisor of the segment does.
    third = supervisor_of(make_user, "tom", org.support, org.support_team)
    response = approve(verified_client(third), change)
    change.refresh_from_db()
    assert change.state == ChangeRequest.State.APPLIED and change.decided_by == third
    assert not TOTPDevice.objects.filter(user=org.sue).exists()
    code_messages = [m for m in page_messages(response) if "enrollment code" in m]
    assert len(code_messages) == 1
    code = code_messages[0].split("expires: ")[1].split()[0]
    assert not EnrollmentCode.objects.filter(code_hash=code).exists()  # only its hash is kept

    # Whoever knows sue's password (sam set none, but say he guessed it) cannot enroll a phone.
    thief = Client()
    thief.post("/accounts/login/", {"username": "sue", "password": PASSWORD})
    assert thief.get("/accounts/enroll/")["Location"].startswith("/accounts/activate/")
    assert thief.post("/accounts/activate/", {"username": "sue", "code": "guessed"}).status_code == 400
    assert not TOTPDevice.objects.filter(user=org.sue).exists()
    # Sue, with the code handed to her, enrolls; the code works once.
    sue = Client()
    sue.post("/accounts/login/", {"username": "sue", "password": PASSWORD})
    assert sue.post("/accounts/activate/", {"username": "sue", "code": code})["Location"].startswith(
        "/accounts/enroll/"
    )
    assert sue.get("/accounts/enroll/").status_code == 200
    assert Client().post("/accounts/activate/", {"username": "sue", "code": code}).status_code == 400
    kinds = set(SecurityEvent.objects.values_list("kind", flat=True))
    assert {"change_requested", "change_applied", "enrollment_code_issued", "enrollment_code_used"} <= kinds
    assert "enrollment_code_refused" in kinds


def test_a_sock_puppet_cannot_be_created(org: Org, verified_client: Any) -> None:
    sam = verified_client(org.sam)
    # The old add form is gone: adding goes to the request form.
    response = sam.post(
        "/admin/accounts/user/add/",
        {"username": "puppet", "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302 and not User.objects.filter(username="puppet").exists()
    billing_roles = [org.billing_team.pk, Group.objects.get(name=roles.BILLING_AGENT).pk]
    request_change(sam, kind="create_account", username="puppet", groups=billing_roles, reason="helper")
    staff = [Group.objects.get(name=roles.ADMINISTRATOR).pk]
    request_change(sam, kind="create_account", username="puppet", groups=staff, reason="helper")
    assert not ChangeRequest.objects.exists() and not User.objects.filter(username="puppet").exists()

    request_change(
        sam,
        kind="create_account",
        username="newbie",
        email="newbie@example.com",
        groups=[org.support_team.pk, Group.objects.get(name=roles.AGENT).pk],
        reason="new hire",
    )
    change = ChangeRequest.objects.get()
    assert change.state == ChangeRequest.State.PENDING and not User.objects.filter(username="newbie").exists()
    response = approve(verified_client(org.sue), change)
    newbie = User.objects.get(username="newbie")
    assert not newbie.has_usable_password() and not newbie.is_staff
    assert set(newbie.groups.values_list("name", flat=True)) == {"Support team", roles.AGENT}
    # The new person sets their own password with the code; nobody else ever knew one.
    code = next(m for m in page_messages(response) if "enrollment code" in m).split("expires: ")[1].split()[0]
    client = Client()
    weak = client.post("/accounts/activate/", {"username": "newbie", "code": code, "new_password": "123"})
    assert weak.status_code == 400  # validators apply; the code is not spent
    ok = client.post(
        "/accounts/activate/",
        {"username": "newbie", "code": code, "new_password": "a long new passphrase 42"},
    )
    assert ok["Location"].startswith("/accounts/enroll/")
    newbie.refresh_from_db()
    assert newbie.check_password("a long new passphrase 42")


def test_an_open_ended_grant_waits_for_four_eyes_and_a_short_one_does_not(
    org: Org, verified_client: Any
) -> None:
    sam = verified_client(org.sam)
    row = {"user": org.agent.pk, "permission": perm("export_inbox"), "reason": "quarterly report"}
    sam.post(
        f"/admin/inbox/inbox/{org.support.pk}/change/",
        inbox_form(org.support, "user_grants", {**row, **expiry_fields(None)}),
    )
    assert not InboxUserObjectPermission.objects.filter(user=org.agent).exists()
    change = ChangeRequest.objects.get(kind=ChangeKind.GRANT)
    assert change.state == ChangeRequest.State.PENDING and change.subject == org.agent
    # A grant within the maximum applies at once.
    short = {**row, "permission": perm("assign_inbox"), **expiry_fields(timedelta(hours=2))}
    sam.post(f"/admin/inbox/inbox/{org.support.pk}/change/", inbox_form(org.support, "user_grants", short))
    assert InboxUserObjectPermission.objects.filter(
        user=org.agent, permission_id=perm("assign_inbox")
    ).exists()
    # So does a long one, once a second supervisor agrees.
    approve(verified_client(org.sue), change)
    grant = InboxUserObjectPermission.objects.get(user=org.agent, permission_id=perm("export_inbox"))
    assert grant.expires_at is None and grant.granted_by == org.sam and grant.reason == "quarterly report"


def test_a_request_expires_unapproved(org: Org, verified_client: Any) -> None:
    from accounts.supervision import change_requests_expire

    request_change(verified_client(org.sam), kind="reset_password", subjects=[org.agent.pk], reason="forgot")
    change = ChangeRequest.objects.get()
    ChangeRequest.objects.filter(pk=change.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    approve(verified_client(org.sue), change)
    change.refresh_from_db()
    assert change.state == ChangeRequest.State.EXPIRED
    assert org.agent.has_usable_password()
    # The beat task closes the rest.
    request_change(verified_client(org.sam), kind="reset_password", subjects=[org.agent.pk], reason="again")
    ChangeRequest.objects.filter(state="pending").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert change_requests_expire() == 1


def test_a_password_reset_ends_sessions_and_keeps_the_second_factor(org: Org, verified_client: Any) -> None:
    agent_client = verified_client(org.agent)
    request_change(verified_client(org.sam), kind="reset_password", subjects=[org.agent.pk], reason="forgot")
    response = approve(verified_client(org.sue), ChangeRequest.objects.get())
    org.agent.refresh_from_db()
    assert not org.agent.has_usable_password()
    assert not UserSession.objects.filter(user=org.agent, ended_at__isnull=True).exists()
    assert agent_client.get("/").status_code == 302
    code = next(m for m in page_messages(response) if "enrollment code" in m).split("expires: ")[1].split()[0]
    client = Client()
    done = client.post(
        "/accounts/activate/", {"username": "alice", "code": code, "new_password": "a long new passphrase 42"}
    )
    # A new password still leads to the second factor, never past it.
    assert done["Location"].startswith("/accounts/verify/")
    assert client.get("/").status_code == 302


def test_administrators_decide_which_changes_need_four_eyes(org: Org, verified_client: Any) -> None:
    sam = verified_client(org.sam)
    assert sam.get("/admin/accounts/approvalrule/").status_code == 403
    rule = ApprovalRule.objects.get(kind=ChangeKind.RESET_PASSWORD)
    ada = verified_client(org.administrator)
    ada.post(
        "/admin/accounts/approvalrule/",
        {
            "form-TOTAL_FORMS": 1,
            "form-INITIAL_FORMS": 1,
            "form-0-id": rule.pk,
            "form-0-requires_second_approval": "",
            "_save": "Save",
        },
    )
    rule.refresh_from_db()
    assert not rule.requires_second_approval
    request_change(sam, kind="reset_password", subjects=[org.agent.pk], reason="forgot")
    assert ChangeRequest.objects.get().state == ChangeRequest.State.APPLIED
    # A supervisor's account still needs a second person.
    request_change(sam, kind="reset_password", subjects=[org.sue.pk], reason="forgot")
    assert ChangeRequest.objects.get(subject=org.sue).state == ChangeRequest.State.PENDING


def test_the_queue_shows_only_changes_in_scope(org: Org, verified_client: Any) -> None:
    request_change(
        verified_client(org.bill), kind="reset_password", subjects=[org.billing_agent.pk], reason="x"
    )
    request_change(verified_client(org.sam), kind="reset_password", subjects=[org.agent.pk], reason="y")
    listed = verified_client(org.sue).get("/admin/accounts/changerequest/").context["cl"].result_list
    assert [c.subject for c in listed] == [org.agent]
    billing_change = ChangeRequest.objects.get(subject=org.billing_agent)
    approve(verified_client(org.sue), billing_change)
    billing_change.refresh_from_db()
    assert billing_change.state == ChangeRequest.State.PENDING


def test_every_admin_page_answers_without_error(org: Org, verified_client: Any) -> None:
    """Each registered model's list, add and change pages, for a supervisor and for an
    administrator: shown, redirected or refused — never a server error."""
    from django.contrib import admin

    request_change(verified_client(org.sam), kind="reset_password", subjects=[org.agent.pk], reason="forgot")
    for viewer in (org.sam, org.administrator):
        client = verified_client(viewer)
        for model in admin.site._registry:
            meta = model._meta
            base = f"/admin/{meta.app_label}/{meta.model_name}/"
            first = model._default_manager.order_by("pk").first()
            urls = [base, f"{base}add/"] + ([f"{base}{first.pk}/change/"] if first is not None else [])
            for url in urls:
                status = client.get(url).status_code
                assert status in (200, 302, 403), f"{viewer.username} {url}: {status}"


# --- The console: grants in the product's words, the dashboard -----------------------------


def test_grant_forms_offer_the_products_actions_with_presets_and_the_time_zone(
    org: Org, verified_client: Any
) -> None:
    page = verified_client(org.sam).get(f"/admin/inbox/inbox/{org.support.pk}/change/").content.decode()
    assert "Reply: answer, add notes, change status and labels" in page
    assert "Export: download the inbox&#x27;s conversations" in page
    assert "Can reply in the inbox" not in page and "Can add" not in page
    assert "Ends at (UTC)" in page and "8 hours (a shift)" in page


def test_a_duration_preset_sets_the_end_and_a_preset_with_a_date_is_refused(
    org: Org, verified_client: Any
) -> None:
    sam = verified_client(org.sam)
    row = {"user": org.agent.pk, "permission": perm("assign_inbox"), "reason": "cover for Bo"}
    both = {**row, "duration": "8h", **expiry_fields(timedelta(days=2))}
    refused = sam.post(
        f"/admin/inbox/inbox/{org.support.pk}/change/", inbox_form(org.support, "user_grants", both)
    )
    assert "Pick a duration or an end date, not both." in refused.content.decode()
    assert not InboxUserObjectPermission.objects.filter(user=org.agent).exists()

    preset = {**row, "duration": "8h", **expiry_fields(None)}
    sam.post(f"/admin/inbox/inbox/{org.support.pk}/change/", inbox_form(org.support, "user_grants", preset))
    grant = InboxUserObjectPermission.objects.get(user=org.agent, permission_id=perm("assign_inbox"))
    # Within the maximum, so applied at once: without the preset it would be open-ended and wait.
    assert grant.expires_at is not None
    assert abs(grant.expires_at - (timezone.now() + timedelta(hours=8))) < timedelta(minutes=1)


def _alert_about(user: User, severity: int) -> None:
    from audit.alerts.models import Alert, AlertKind

    Alert.objects.create(
        kind=AlertKind.BULK_READS, severity=severity, score=50, user=user, pattern="p", summary="s"
    )


def test_the_dashboard_counts_only_the_supervisors_delegation(org: Org, verified_client: Any) -> None:
    from accounts.models import BrowserDevice
    from audit.alerts.models import AlertSeverity

    _alert_about(org.agent, AlertSeverity.HIGH)
    _alert_about(org.billing_agent, AlertSeverity.HIGH)
    _alert_about(org.sam, AlertSeverity.HIGH)  # about herself: never shown to her
    for user in (org.agent, org.billing_agent):
        BrowserDevice.objects.create(
            user=user, name="Chrome", binding="key", key_thumbprint=f"t{user.pk}", approval="pending"
        )
    soon = timezone.now() + timedelta(days=2)
    assign_perm("assign_inbox", org.agent, org.support)
    assign_perm("assign_inbox", org.billing_agent, org.billing)
    InboxUserObjectPermission.objects.filter(permission_id=perm("assign_inbox")).update(
        expires_at=soon, reason="holiday cover"
    )

    page = verified_client(org.sam).get("/admin/")
    overview = page.context["overview"]
    assert (overview.open_alerts, overview.high_alerts, overview.devices_waiting) == (1, 1, 1)
    assert [(g.holder, g.target) for g in overview.grants_ending] == [("alice", "Support")]
    html = page.content.decode()
    assert "1 high or critical" in html and "carol" not in html

    everything = verified_client(org.administrator).get("/admin/").context["overview"]
    assert (everything.open_alerts, everything.devices_waiting, len(everything.grants_ending)) == (3, 2, 2)


def test_the_grant_list_reads_the_same_number_of_queries_for_more_rows(
    org: Org, verified_client: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = verified_client(org.administrator)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/admin/inbox/inboxuserobjectpermission/").status_code == 200
        return len(captured)

    assign_perm("view_inbox", org.agent, org.billing)
    queries()  # the first request fills per-process caches (content types)
    few = queries()
    for n in range(5):
        extra = User.objects.create_user(username=f"extra{n}")
        assign_perm("view_inbox", extra, org.support)
    assert queries() == few <= 20
