"""Passkeys in the supervisors' admin: listed for the accounts they manage, removed one by
one through the owner's removal service with a fresh factor; never their own, never an
administrator's, never another segment's."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts import roles, services
from accounts.models import Passkey, User
from audit.models import SecurityEvent
from tests.accounts.test_supervision import supervisor_of
from tests.conftest import start_session
from tests.inbox.conftest import Segments
from tests.passkeys.authenticator import SoftAuthenticator
from tests.passkeys.conftest import age_verification, register

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/passkey/"


def remove(client: Client, passkeys: list[Passkey]) -> Any:
    return client.post(CHANGELIST, {"action": "remove", "_selected_action": [p.pk for p in passkeys]})


@pytest.fixture
def scene(segments: Segments, make_user: Any, verified_client: Any) -> dict[str, Any]:
    """Bea supervises Billing; passkeys of a Billing agent, a support agent, an
    administrator and her own."""
    bea = supervisor_of(make_user, "bea", segments.billing, segments.billing_team)
    administrator = make_user(roles.ADMINISTRATOR, username="root", is_staff=True)
    passkeys = {
        name: register(verified_client(user), SoftAuthenticator(**flags), name=f"{name}'s key")
        for name, user, flags in (
            ("bill", segments.billing_agent, {}),
            ("sue", segments.support_agent, {}),
            ("root", administrator, {}),
            ("bea", bea, {"backup_eligible": True, "backed_up": True}),
        )
    }
    return {"bea": bea, "admin": verified_client(bea), "passkeys": passkeys}


def test_a_supervisor_lists_the_passkeys_of_her_segment_only(scene: dict[str, Any], settings: Any) -> None:
    settings.PASSKEY_AUTHENTICATOR_NAMES = {"00000000-0000-0000-0000-000000000000": "Test key model"}
    admin, passkeys = scene["admin"], scene["passkeys"]
    page = admin.get(CHANGELIST)
    assert list(page.context["cl"].result_list) == [passkeys["bill"]]
    html = page.content.decode()
    assert "Test key model" in html and "device-bound" in html and "bill&#x27;s key" in html
    # Another segment's, an administrator's and her own are as if they did not exist.
    for name in ("sue", "root", "bea"):
        assert admin.get(f"{CHANGELIST}{passkeys[name].pk}/change/").status_code == 302
    assert admin.get(f"{CHANGELIST}{passkeys['bill'].pk}/change/").status_code == 200


def test_a_supervisor_removes_one_in_her_segment_and_nothing_else(scene: dict[str, Any]) -> None:
    admin, passkeys, bea = scene["admin"], scene["passkeys"], scene["bea"]
    assert remove(admin, list(passkeys.values())).status_code == 302
    assert set(Passkey.objects.values_list("name", flat=True)) == {"sue's key", "root's key", "bea's key"}
    (event,) = SecurityEvent.objects.filter(kind="factor_reset", detail__factor="passkey")
    assert event.user == passkeys["bill"].user
    assert event.detail == {"by": bea.username, "factor": "passkey", "name": "bill's key"}


def test_a_stolen_supervisor_session_removes_nothing_until_she_steps_up(
    scene: dict[str, Any], totp: Any
) -> None:
    admin, passkeys, bea = scene["admin"], scene["passkeys"], scene["bea"]
    age_verification(admin)
    prompt = remove(admin, [passkeys["bill"]])
    assert prompt.status_code == 403 and b"Confirm it is you" in prompt.content
    assert Passkey.objects.filter(pk=passkeys["bill"].pk).exists()
    continued = admin.post(
        "/accounts/step-up/",
        {
            "token": totp(bea).now(),
            "step_up_next": CHANGELIST,
            "step_up_method": "POST",
            "action": "remove",
            "_selected_action": [passkeys["bill"].pk],
        },
    )
    assert continued.status_code == 307 and continued["Location"] == CHANGELIST
    assert remove(admin, [passkeys["bill"]]).status_code == 302
    assert not Passkey.objects.filter(pk=passkeys["bill"].pk).exists()


def test_nothing_is_added_edited_or_bulk_deleted_here(scene: dict[str, Any]) -> None:
    admin, bill = scene["admin"], scene["passkeys"]["bill"]
    assert admin.get(f"{CHANGELIST}add/").status_code == 403
    edit = admin.post(f"{CHANGELIST}{bill.pk}/change/", {"name": "renamed", "user": scene["bea"].pk})
    assert edit.status_code == 403
    bill.refresh_from_db()
    assert bill.name == "bill's key" and bill.user.username == "bill"
    assert admin.post(f"{CHANGELIST}{bill.pk}/delete/").status_code == 403
    deleting = admin.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [bill.pk], "post": "yes"}
    )
    # Not offered: the admin answers "no action" and deletes nothing.
    assert deleting.status_code == 302 and Passkey.objects.filter(pk=bill.pk).exists()


def test_an_agent_has_no_passkey_admin(segments: Segments, verified_client: Any) -> None:
    client = verified_client(segments.billing_agent)
    assert client.get(CHANGELIST).status_code in (302, 403)


def test_the_list_costs_the_same_for_one_passkey_or_many(
    scene: dict[str, Any], segments: Segments, make_user: Any, verified_client: Any
) -> None:
    admin = scene["admin"]

    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin.get(CHANGELIST).status_code == 200
        return len(queries)

    list_queries()  # the first request compiles the policy rule set: not the list's cost
    one = list_queries()
    for _ in range(4):
        agent: User = make_user(roles.AGENT, roles.BILLING_AGENT)
        agent.groups.add(segments.billing_team)
        register(verified_client(agent), SoftAuthenticator())
    assert len(admin.get(CHANGELIST).context["cl"].result_list) == 5
    assert list_queries() == one


def test_an_approved_factor_reset_removes_the_persons_passkeys_too(scene: dict[str, Any]) -> None:
    """The reset's enrollment code is for a new factor: a passkey of the lost phone must
    not still sign in beside it."""
    bill = scene["passkeys"]["bill"].user
    services.second_factor_reset(user=bill, by=scene["bea"])
    assert not Passkey.objects.filter(user=bill).exists()
    signing_in = Client()
    start_session(signing_in, bill, verified=False)
    assert signing_in.post("/accounts/passkeys/assertion-options/").status_code == 404
